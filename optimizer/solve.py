"""Solving: the MILP (HiGHS), the LP with the binaries fixed at the optimum (for shadow prices), and the elastic
re-solve that measures the smallest top-up when the policy cannot be met."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from risk_models.errors import PmoptError

from .decision import Decision, Term, make_decision
from .formulation import build_terms, objective
from .linear_pools import Cuts
from .problem import ProblemData

SOLVER = "HIGHS"


class SolverError(PmoptError):
    """The solver failed for a reason other than infeasibility (exit code 1)."""


@dataclass(frozen=True)
class Binding:
    name: str
    kind: str
    slack: float  # scaled USD
    shadow_price: float  # objective USD per USD of requirement


@dataclass(frozen=True)
class Solution:
    status: str  # optimal | optimal_within_gap | time_limit | infeasible
    objective: float  # USD over the carry horizon
    isolated: np.ndarray  # (P,) 0/1
    value: np.ndarray  # (n_slots,) USD
    wallet: np.ndarray  # (A,) USD
    inflow: np.ndarray
    outflow: np.ndarray
    parts: dict[str, float]
    mip_gap: float
    seconds: float
    bindings: list[Binding] = field(default_factory=list)
    conservation_prices: np.ndarray | None = None  # (A,) objective USD per USD of each asset
    top_up: np.ndarray | None = None  # (A,) USD, infeasible problems only
    timing: dict[str, float] = field(default_factory=dict)  # seconds: cvxpy compile, solver, separation
    rounds: int = 1  # MILP solves (constraint generation adds rounds)
    scenario_rows: int | None = None  # scenario rows kept over all pools (None: every scenario)
    working_sets: dict[int, np.ndarray] | Cuts | None = None  # the final working set (optimizer.working_set)
    solver_name: str = "HIGHS"


WorkingSet = dict[int, np.ndarray] | Cuts
"""Where buffer survival is kept: per cross bucket its scenario rows, or aggregated cuts over linear pools."""


def _problem(data: ProblemData, x: Decision, extra: list[cp.Constraint] | None = None,
             rows: WorkingSet | None = None
             ) -> tuple[cp.Problem, list[Term], cp.Expression, dict[str, cp.Expression]]:
    if isinstance(rows, Cuts):
        terms = build_terms(data, x, pool_terms=rows.pools.terms(x, rows))
    else:
        terms = build_terms(data, x, rows)
    obj, parts = objective(data, x)
    cons = [c for t in terms for c in t.constraints] + (extra or [])
    return cp.Problem(cp.Minimize(obj), cons), terms, obj, parts


def solver_options(time_limit: float, mip_gap: float) -> dict[str, float]:
    """HiGHS options.  Amounts are scaled by the desk's capital, so a small position in a large desk has
    requirements near 1e-6 and an objective near 1e-8: the gap is relative only (HiGHS's default absolute gap of
    1e-6 would accept any first incumbent) and integrality is checked to 1e-9 (at the default 1e-6 HiGHS can
    reject a feasible cross/isolated assignment whose margins are of that size)."""
    return {"time_limit": time_limit, "mip_rel_gap": mip_gap, "mip_abs_gap": 0.0, "mip_feasibility_tolerance": 1e-9}


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints a banner from C straight to file descriptor 1; keep stdout clean for ``--json``."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


CUT_TOLERANCE = 1e-9
"""Primal and dual feasibility tolerance of HiGHS over scenario cuts: a cut row's round-off is what a pool's equity
sees, so it is held well below the separation tolerance (the cut problems are small: this costs little)."""


def _run(prob: cp.Problem, time_limit: float, mip_gap: float, timing: dict[str, float] | None = None,
         reuse: bool = False, tight: bool = False) -> float:
    """Solve with HiGHS; returns wall seconds and adds cvxpy's compile and the solver's own seconds to ``timing``.

    ``reuse``: the problem is solved again with new Parameter values (sweeps), so cvxpy compiles it in its
    parametrized (DPP) form once; otherwise Parameters are taken as constants, which compiles several times
    faster."""
    t0 = time.perf_counter()
    try:
        with _quiet_stdout(), warnings.catch_warnings():
            # a time-limited solve makes cvxpy warn on stderr; the status says it (time_limit) instead
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            extra = {"primal_feasibility_tolerance": CUT_TOLERANCE, "dual_feasibility_tolerance": CUT_TOLERANCE} \
                if tight else {}
            prob.solve(solver=SOLVER, output_flag=False, ignore_dpp=not reuse, **solver_options(time_limit, mip_gap),
                       **extra)
    except cp.error.SolverError as exc:
        raise SolverError(f"the solver failed: {exc}") from None
    seconds = time.perf_counter() - t0
    if timing is not None:
        solver = prob.solver_stats.solve_time if prob.solver_stats is not None else None
        solver = float(solver) if solver is not None else 0.0
        timing["compile"] = timing.get("compile", 0.0) + (prob.compilation_time or 0.0)
        timing["solver"] = timing.get("solver", 0.0) + solver
    return seconds


Separator = Callable[[Decision, WorkingSet], WorkingSet | None]
"""Given a solved Decision and the working set, the working set grown by what the Decision violates, or None
when it violates nothing over the full scenario set."""


def solve(data: ProblemData, time_limit: float = 120.0, mip_gap: float = 1e-6,
          rows: WorkingSet | None = None, separate: Separator | None = None,
          relax: bool = False, on_round: Callable[[str], None] | None = None) -> Solution:
    """Solve the MILP, then the LP with the binaries fixed (duals); infeasible → elastic top-up.

    With ``rows`` and ``separate`` the buffer constraints are generated (:mod:`optimizer.working_set`): the MILP
    is solved over the working sets, the candidate is checked over every scenario, violated scenarios are added
    and the MILP solved again until none is.  ``relax``: the continuous relaxation (modes in [0, 1]).
    ``on_round`` hears a line after every check of constraint generation (progress).
    """
    timing: dict[str, float] = {}
    seconds, rounds = 0.0, 0
    while True:
        rounds += 1
        x = make_decision(data, relax=relax)
        prob, terms, _, parts = _problem(data, x, rows=rows)
        seconds += _run(prob, time_limit, mip_gap, timing, tight=isinstance(rows, Cuts))
        if prob.status in ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded"):
            # a relaxation is infeasible: so is the full problem
            return _elastic(data, time_limit, seconds, rows if isinstance(rows, Cuts) else None, separate)
        if x.value.value is None:
            raise SolverError(f"the solver returned no solution (status {prob.status})")
        z = np.asarray(x.isolated.value, dtype=float).clip(0, 1) if data.positions else np.zeros(0)
        z = z if relax else np.round(z)
        grown, spent = _grow(separate, x, rows, timing)
        seconds += spent
        _report(on_round, f"round {rounds}", grown)
        if grown is None:
            break
        rows = grown
    gap = _mip_gap(prob)
    status = _status(prob.status)
    # LP with the binaries fixed at the optimum: the same allocation, and meaningful duals.  Its optimum may be
    # another allocation of the same cost (ties within the solver's tolerance): it is checked over every scenario
    # too, and re-solved over the grown working sets until it holds (the MILP's optimum bounds it from above).
    lp, xf = prob, x  # the relaxation is an LP already: its duals are the shadow prices
    modes = {} if relax else {acct: _mode_value(x, acct) for acct in x.mode}
    while not relax:
        xf = make_decision(data, fixed_z=z, fixed_modes=modes)
        lp, terms, _, parts = _problem(data, xf, rows=rows)
        seconds += _run(lp, time_limit, mip_gap, timing, tight=isinstance(rows, Cuts))
        if lp.status != "optimal":
            raise SolverError(f"the fixed-mode LP did not solve (status {lp.status})")
        grown, spent = _grow(separate, xf, rows, timing)
        seconds += spent
        _report(on_round, "shadow prices", grown)
        if grown is None:
            break
        rows = grown
    return Solution(
        status=status, objective=float(lp.value) * data.scale, isolated=z,
        value=np.asarray(xf.value.value) * data.scale, wallet=np.asarray(xf.wallet.value) * data.scale,
        inflow=np.asarray(xf.inflow.value) * data.scale, outflow=np.asarray(xf.outflow.value) * data.scale,
        parts={k: float(v.value) * data.scale for k, v in parts.items()}, mip_gap=gap, seconds=seconds,
        bindings=_bindings(terms), conservation_prices=_conservation_prices(terms, len(data.assets)),
        timing=timing, rounds=rounds, scenario_rows=_kept(rows), working_sets=rows,
    )


def _report(on_round: Callable[[str], None] | None, what: str, grown: WorkingSet | None) -> None:
    """Tell ``on_round`` how constraint generation stands: what was solved and what it keeps now."""
    if on_round is None:
        return
    if grown is None:
        on_round(f"{what}: every scenario met")
    else:
        on_round(f"{what}: {_kept(grown):,} scenario {'cuts' if isinstance(grown, Cuts) else 'rows'}")


def _kept(rows: WorkingSet | None) -> int | None:
    """Cuts or scenario rows a working set keeps over all pools (None: every scenario)."""
    if rows is None:
        return None
    return len(rows) if isinstance(rows, Cuts) else int(sum(len(r) for r in rows.values()))


def _grow(separate: Separator | None, x: Decision, rows: WorkingSet | None, timing: dict[str, float]
          ) -> tuple[WorkingSet | None, float]:
    """The working set grown by what a solved Decision violates, or None when it violates nothing (or there is
    no working set); and the seconds the check took."""
    if rows is None or separate is None:
        return None, 0.0
    t0 = time.perf_counter()
    grown = separate(x, rows)
    spent = time.perf_counter() - t0
    timing["separation"] = timing.get("separation", 0.0) + spent
    return grown, spent


class CompiledProblem:
    """The MILP built once; policy numbers live in :class:`~optimizer.formulation.Knobs` Parameters, so that
    re-solving after changing them reuses cvxpy's compiled problem (sweeps)."""

    def __init__(self, data: ProblemData, rows: dict[int, np.ndarray] | None = None) -> None:
        """``rows``: the pools' working sets (:mod:`optimizer.working_set`), else every scenario."""
        self.data = data
        self.rows = rows
        self.x = make_decision(data)
        self.problem, self.terms, _, self.parts = _problem(data, self.x, rows=rows)

    def solve(self, time_limit: float = 120.0, mip_gap: float = 1e-6) -> Solution | None:
        """The MILP optimum at the current knob values (no duals), or None when infeasible."""
        data, x = self.data, self.x
        seconds = _run(self.problem, time_limit, mip_gap, reuse=True)
        if self.problem.status in ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded"):
            return None
        if x.value.value is None:
            raise SolverError(f"the solver returned no solution (status {self.problem.status})")
        z = np.round(np.asarray(x.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
        return Solution(
            status=_status(self.problem.status),
            objective=float(self.problem.value) * data.scale, isolated=z,
            value=np.asarray(x.value.value) * data.scale, wallet=np.asarray(x.wallet.value) * data.scale,
            inflow=np.asarray(x.inflow.value) * data.scale, outflow=np.asarray(x.outflow.value) * data.scale,
            parts={k: float(v.value) * data.scale for k, v in self.parts.items()}, mip_gap=_mip_gap(self.problem),
            seconds=seconds)


def _status(cvxpy_status: str) -> str:
    """cvxpy's status as the spec's: a solve stopped at a limit with a solution in hand ("user_limit", or
    "optimal_inaccurate" when HiGHS returns its time-limited incumbent) is ``time_limit``."""
    if cvxpy_status == "optimal":
        return "optimal"
    return "time_limit" if cvxpy_status == "user_limit" or "inaccurate" in cvxpy_status else cvxpy_status


def _mode_value(x: Decision, acct: tuple[str, str]) -> float:
    return float(np.round(x.mode[acct].value))


def _mip_gap(prob: cp.Problem) -> float:
    stats = prob.solver_stats
    extra = getattr(stats, "extra_stats", None)
    gap = getattr(extra, "mip_gap", None) if extra is not None else None
    return float(gap) if gap is not None and np.isfinite(gap) else 0.0


def _bindings(terms: list[Term]) -> list[Binding]:
    """Requirement constraints with a non-zero dual (the ones that shape the answer): per term its first scalar
    constraint with one; per element of a vectorized term its first; else a vector constraint's largest."""
    out = []
    for term in terms:
        if term.kind in ("conservation", "transfers", "haircut", "definition"):
            continue
        if term.elements is not None:
            out += _element_bindings(term)
            continue
        fallback = None
        for con in term.constraints:
            dual = con.dual_value
            if dual is None:
                continue
            dual = np.atleast_1d(np.asarray(dual, dtype=float))
            k = int(np.argmax(np.abs(dual))) if dual.size else 0
            if not dual.size or abs(dual[k]) < 1e-9:
                continue
            value = np.atleast_1d(con.expr.value) if con.expr.value is not None else None
            # cvxpy stores a >= b as b − a <= 0: the slack is −(b − a)
            slack = float(-value[k]) if value is not None else 0.0
            if dual.size == 1:
                out.append(Binding(term.name, term.kind, slack, float(abs(dual[k]))))
                fallback = None
                break
            if fallback is None:
                fallback = Binding(term.name, term.kind, slack, float(abs(dual[k])))
        if fallback is not None:
            out.append(fallback)
    out.sort(key=lambda b: -b.shadow_price)
    return out


def _element_bindings(term: Term) -> list[Binding]:
    """One binding per element name with a non-zero dual (several entries may share a name, e.g. every position
    of one Multi-Assets account): its largest."""
    assert term.elements is not None
    best: dict[str, Binding] = {}
    for con in term.constraints:
        if con.dual_value is None or con.expr.value is None:
            continue
        dual = np.atleast_1d(np.asarray(con.dual_value, dtype=float))
        value = np.atleast_1d(np.asarray(con.expr.value, dtype=float))
        for k in np.nonzero(np.abs(dual) >= 1e-9)[0]:
            name = term.elements[k]
            if name not in best or abs(dual[k]) > best[name].shadow_price:
                best[name] = Binding(name, term.kind, float(-value[k]), float(abs(dual[k])))
    return list(best.values())


def _conservation_prices(terms: list[Term], n_assets: int) -> np.ndarray:
    for term in terms:
        if term.kind == "conservation":
            dual = term.constraints[0].dual_value
            return np.zeros(n_assets) if dual is None else -np.asarray(dual, dtype=float)
    return np.zeros(n_assets)


def _elastic(data: ProblemData, time_limit: float, seconds: float, cuts: Cuts | None = None,
             separate: Separator | None = None) -> Solution:
    """The smallest top-up (:func:`optimizer.elastic.smallest_top_up`), over the scenario cuts when given."""
    from .elastic import smallest_top_up  # elastic builds on this module's solver helpers: imported when needed

    return smallest_top_up(data, time_limit, seconds, cuts, separate)
