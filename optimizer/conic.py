"""The conic path: delta-normal buffers are second-order cones, solved by Clarabel; with cross/isolated binaries,
a mixed-integer SOCP solved by outer approximation.

Outer approximation (Duran–Grossmann): the cone ``E_b >= c‖σ_b(x)‖ + k·MM_b`` is replaced in a MILP master by
its tangent cuts ``E_b >= c·uᵀσ_b(x) + k·MM_b`` for unit directions u (valid because uᵀσ <= ‖σ‖), solved by
HiGHS: its optimum is a lower bound.  The master's binaries are then fixed and the SOCP solved by Clarabel: a
feasible allocation, an upper bound, and the duals.  Cuts are added at both points where the cone is violated;
the loop stops when the gap (upper − lower) / upper is within the MIP gap, when no cut is added, or at the round
limit — the gap reached is reported.  The first cuts come from the continuous relaxation (binaries in [0, 1]),
itself an SOCP.  Amounts scaled as in :mod:`optimizer.problem`.
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np

from .decision import Decision, make_decision
from .elastic import top_up_problem
from .problem import ProblemData
from .solve import (
    Solution,
    SolverError,
    _bindings,
    _conservation_prices,
    _mip_gap,
    _problem,
    _quiet_stdout,
    _run,
)

CONIC_SOLVER = "CLARABEL"
CONIC_OPTIONS = {"tol_gap_abs": 1e-14, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "tol_ktratio": 1e-8}
"""Clarabel's tolerances.  The objective is a week's carry on capital scaled to 1, often near 1e-5: the default
absolute gap of 1e-8 would be a relative error of 1e-3 there."""
MAX_ROUNDS = 40
CUT_TOLERANCE = 1e-11
"""A cone under-estimated by less than this share of the desk's capital needs no cut (the objective moves about
1e-3 per unit of requirement over a week's carry, so this keeps the gap near 1e-6 of a small objective)."""

INFEASIBLE = ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded")


class _Build:
    """Builds the problem over a Decision: the policy's own (``top_up`` False) or the elastic one of
    :func:`optimizer.elastic.top_up_problem` (``top_up`` True); ``added`` is the last built top-up variable."""

    def __init__(self, top_up: bool) -> None:
        self.top_up = top_up
        self.added: cp.Variable | None = None

    def __call__(self, data: ProblemData, x: Decision, extra: list | None = None
                 ) -> tuple[cp.Problem, list, cp.Expression, dict[str, cp.Expression]]:
        if not self.top_up:
            return _problem(data, x, extra)
        prob, terms, parts, self.added = top_up_problem(data, x, extra)
        return prob, terms, prob.objective.expr, parts

    def top_up_value(self) -> np.ndarray | None:
        """The last solved top-up (scaled USD), None for the policy's own problem."""
        return np.asarray(self.added.value, dtype=float) if self.top_up and self.added is not None else None


def _run_conic(prob: cp.Problem, timing: dict[str, float]) -> float:
    t0 = time.perf_counter()
    try:
        with _quiet_stdout():
            prob.solve(solver=CONIC_SOLVER, ignore_dpp=True, **CONIC_OPTIONS)
    except cp.error.SolverError as exc:
        raise SolverError(f"the conic solver failed: {exc}") from None
    seconds = time.perf_counter() - t0
    timing["compile"] = timing.get("compile", 0.0) + (prob.compilation_time or 0.0)
    stats = prob.solver_stats.solve_time if prob.solver_stats is not None else None
    timing["solver"] = timing.get("solver", 0.0) + (float(stats) if stats is not None else 0.0)
    return seconds


def _has_binaries(data: ProblemData) -> bool:
    return any(not p.fixed for p in data.positions) or any(data.multi_asset_exclusive.values())


def _sigma_values(x: Decision) -> dict[int, np.ndarray]:
    return {b: np.atleast_1d(np.asarray(s.value, dtype=float)) for b, s in x.sigma.items() if s.value is not None}


def _add_cuts(cuts: dict[int, np.ndarray], sigmas: dict[int, np.ndarray]) -> int:
    """Add the tangent direction σ/‖σ‖ of every pool whose cone the current cuts under-estimate; count them."""
    added = 0
    for b, s in sigmas.items():
        norm = float(np.linalg.norm(s))
        if norm <= CUT_TOLERANCE:
            continue
        have = cuts.get(b)
        approx = float(np.max(have @ s)) if have is not None and len(have) else -np.inf
        if norm - approx > CUT_TOLERANCE:
            u = (s / norm)[None, :]
            cuts[b] = u if have is None or not len(have) else np.vstack([have, u])
            added += 1
    return added


def _fixed(data: ProblemData, z: np.ndarray, modes: dict[tuple[str, str], float], timing: dict[str, float],
           build: _Build) -> tuple[cp.Problem, Decision, list, dict[str, cp.Expression]]:
    """The SOCP with every binary fixed (Clarabel): a feasible allocation and its duals."""
    x = make_decision(data, fixed_z=z, fixed_modes=modes)
    prob, terms, _, parts = build(data, x)
    _run_conic(prob, timing)
    return prob, x, terms, parts


def _solution(data: ProblemData, prob: cp.Problem, x: Decision, terms: list, parts: dict[str, cp.Expression],
              z: np.ndarray, status: str, gap: float, seconds: float, timing: dict[str, float], rounds: int,
              top_up: np.ndarray | None = None) -> Solution:
    """The Solution of a solved fixed-mode SOCP (``top_up``: the elastic one, scaled USD per asset)."""
    name = "CLARABEL" if rounds == 0 else "HIGHS+CLARABEL (outer approximation)"
    s = data.scale
    if top_up is not None:
        return Solution(
            status="infeasible", objective=float("nan"), isolated=z, value=np.asarray(x.value.value) * s,
            wallet=np.asarray(x.wallet.value) * s, inflow=np.asarray(x.inflow.value) * s,
            outflow=np.asarray(x.outflow.value) * s, parts={}, mip_gap=gap, seconds=seconds, top_up=top_up * s,
            timing=timing, rounds=rounds, solver_name=name)
    value, wallet, inflow, outflow = _polish(data, x)
    return Solution(
        status=status, objective=float(prob.value) * s, isolated=z, value=value * s, wallet=wallet * s,
        inflow=inflow * s, outflow=outflow * s, parts={k: float(v.value) * s for k, v in parts.items()},
        mip_gap=gap, seconds=seconds, bindings=_bindings(terms),
        conservation_prices=_conservation_prices(terms, len(data.assets)), timing=timing, rounds=rounds,
        solver_name=name)


def solve_conic(data: ProblemData, time_limit: float = 120.0, mip_gap: float = 1e-6) -> Solution:
    """The optimum of a delta-normal problem: an SOCP (Clarabel), or with binaries a mixed-integer SOCP by outer
    approximation with its gap reported; infeasible → the smallest top-up, found the same way."""
    sol = _conic(data, time_limit, mip_gap, _Build(top_up=False))
    if sol is None:
        sol = _conic(data, time_limit, 1e-6, _Build(top_up=True))
        if sol is None:
            raise SolverError("the policy cannot be met even with unlimited top-ups: check the isolation and mode "
                              "constraints (pinned positions, Multi-Assets mode)")
    return sol


def _conic(data: ProblemData, time_limit: float, mip_gap: float, build: _Build) -> Solution | None:
    """One outer-approximation run; None when infeasible."""
    timing: dict[str, float] = {}
    start = time.perf_counter()
    z_now = np.array([1.0 if p.isolated_now else 0.0 for p in data.positions])

    if not _has_binaries(data):
        prob, x, terms, parts = _fixed(data, z_now, {}, timing, build)
        if prob.status in INFEASIBLE:
            return None
        _check(prob)
        return _solution(data, prob, x, terms, parts, z_now, "optimal", 0.0, time.perf_counter() - start, timing,
                         0, build.top_up_value())
    # the continuous relaxation: first cuts, and infeasibility (a relaxation) at once
    xr = make_decision(data, relax=True)
    relaxed, _, _, _ = build(data, xr)
    _run_conic(relaxed, timing)
    if relaxed.status in INFEASIBLE:
        return None
    _check(relaxed)
    cuts: dict[int, np.ndarray] = {}
    _add_cuts(cuts, _sigma_values(xr))
    lower, upper, best = -np.inf, np.inf, None
    rounds = 0
    while rounds < MAX_ROUNDS and time.perf_counter() - start < time_limit:
        rounds += 1
        xm = make_decision(data)
        xm.cuts = cuts
        master, _, _, _ = build(data, xm)
        _run(master, max(time_limit - (time.perf_counter() - start), 1.0), mip_gap / 100, timing)
        if master.status in INFEASIBLE:  # an outer approximation is infeasible: so is the problem
            return None
        if xm.value.value is None:
            raise SolverError(f"the MILP master returned no solution (status {master.status})")
        lower = max(lower, _dual_bound(master))
        z = np.round(np.asarray(xm.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
        modes = {acct: float(np.round(var.value)) for acct, var in xm.mode.items()}
        added = _add_cuts(cuts, _sigma_values(xm))
        prob, x, terms, parts = _fixed(data, z, modes, timing, build)
        if prob.status not in INFEASIBLE:
            _check(prob)
            if float(prob.value) < upper:
                upper = float(prob.value)
                best = (prob, x, terms, parts, z, build.top_up_value())
            added += _add_cuts(cuts, _sigma_values(x))
        if upper < np.inf and upper - lower <= mip_gap * max(abs(upper), 1e-12):
            break
        if not added:
            break
    if best is None:
        raise SolverError("outer approximation found no feasible assignment of margin modes within its round "
                          f"limit ({MAX_ROUNDS}) or time limit: raise --time-limit")
    gap = max(upper - lower, 0.0) / max(abs(upper), 1e-12)
    prob, x, terms, parts, z, top_up = best
    status = "optimal" if gap <= mip_gap else "optimal_within_gap"
    return _solution(data, prob, x, terms, parts, z, status, gap, time.perf_counter() - start, timing, rounds, top_up)


POLISH = 1e-8
"""Interior-point dust: slot changes below this share of the desk's capital are no change (the re-check, at 1e-6,
still judges the polished allocation)."""


def _polish(data: ProblemData, x: Decision) -> tuple[np.ndarray, ...]:
    """(value, wallet, inflow, outflow), scaled: an interior-point solution leaves dust in every slot and moves
    both ways at once; snap changes below POLISH to none and net each slot's move (books without new loans, whose
    proceeds the recommendation reads from the moves)."""
    value = np.asarray(x.value.value, dtype=float).copy()
    inflow, outflow = np.asarray(x.inflow.value, dtype=float), np.asarray(x.outflow.value, dtype=float)
    if len(data.loan_slots):
        return value, np.asarray(x.wallet.value, dtype=float), inflow, outflow
    now = np.array([s.current for s in data.slots])
    value[np.abs(value - now) < POLISH] = now[np.abs(value - now) < POLISH]
    value[value < POLISH] = 0.0
    held = np.zeros(len(data.assets))
    np.add.at(held, [s.asset for s in data.slots], value)
    wallet = np.clip(data.holdings - held, 0.0, None)
    change = value - now
    return value, wallet, np.clip(change, 0.0, None), np.clip(-change, 0.0, None)


def _dual_bound(prob: cp.Problem) -> float:
    """The MILP's proven lower bound (HiGHS's dual bound, with cvxpy's constant offset)."""
    info = getattr(prob.solver_stats, "extra_stats", None)
    primal, dual = getattr(info, "objective_function_value", None), getattr(info, "mip_dual_bound", None)
    if primal is None or dual is None or not np.isfinite(dual):
        return float(prob.value) * (1 - _mip_gap(prob))
    return float(prob.value) - (float(primal) - float(dual))


def _check(prob: cp.Problem) -> None:
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise SolverError(f"the conic solver returned status {prob.status}")
