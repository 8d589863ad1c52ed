"""Solving: the MILP (HiGHS), the LP with the binaries fixed at the optimum (for shadow prices), and the elastic
re-solve that measures the smallest top-up when the policy cannot be met."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from risk_models.errors import PmoptError

from .formulation import Decision, Term, build_terms, make_decision, objective
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


def _problem(data: ProblemData, x: Decision, extra: list[cp.Constraint] | None = None
             ) -> tuple[cp.Problem, list[Term], cp.Expression, dict[str, cp.Expression]]:
    terms = build_terms(data, x)
    obj, parts = objective(data, x)
    cons = [c for t in terms for c in t.constraints] + (extra or [])
    return cp.Problem(cp.Minimize(obj), cons), terms, obj, parts


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


def _run(prob: cp.Problem, time_limit: float, mip_gap: float) -> float:
    t0 = time.perf_counter()
    try:
        with _quiet_stdout():
            prob.solve(solver=SOLVER, time_limit=time_limit, mip_rel_gap=mip_gap, output_flag=False)
    except cp.error.SolverError as exc:
        raise SolverError(f"the solver failed: {exc}") from None
    return time.perf_counter() - t0


def solve(data: ProblemData, time_limit: float = 120.0, mip_gap: float = 1e-6) -> Solution:
    """Solve the MILP, then the LP with the binaries fixed (duals); infeasible → elastic top-up."""
    x = make_decision(data)
    prob, _, _, _ = _problem(data, x)
    seconds = _run(prob, time_limit, mip_gap)
    if prob.status in ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded"):
        return _elastic(data, time_limit, seconds)
    if x.value.value is None:
        raise SolverError(f"the solver returned no solution (status {prob.status})")
    gap = _mip_gap(prob)
    z = np.round(np.asarray(x.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
    status = "optimal" if prob.status == "optimal" else ("time_limit" if "inaccurate" in prob.status else prob.status)
    # LP with the binaries fixed at the optimum: the same allocation, and meaningful duals
    xf = make_decision(data, fixed_z=z)
    fixed_modes = [var == _mode_value(x, acct) for acct, var in xf.mode.items()]
    lp, terms, _, parts = _problem(data, xf, fixed_modes)
    seconds += _run(lp, time_limit, mip_gap)
    if lp.status != "optimal":
        raise SolverError(f"the fixed-mode LP did not solve (status {lp.status})")
    return Solution(
        status=status, objective=float(lp.value) * data.scale, isolated=z,
        value=np.asarray(xf.value.value) * data.scale, wallet=np.asarray(xf.wallet.value) * data.scale,
        inflow=np.asarray(xf.inflow.value) * data.scale, outflow=np.asarray(xf.outflow.value) * data.scale,
        parts={k: float(v.value) * data.scale for k, v in parts.items()}, mip_gap=gap, seconds=seconds,
        bindings=_bindings(terms), conservation_prices=_conservation_prices(terms, len(data.assets)),
    )


class CompiledProblem:
    """The MILP built once; policy numbers live in :class:`~optimizer.formulation.Knobs` Parameters, so that
    re-solving after changing them reuses cvxpy's compiled problem (sweeps)."""

    def __init__(self, data: ProblemData) -> None:
        self.data = data
        self.x = make_decision(data)
        self.problem, self.terms, _, self.parts = _problem(data, self.x)

    def solve(self, time_limit: float = 120.0, mip_gap: float = 1e-6) -> Solution | None:
        """The MILP optimum at the current knob values (no duals), or None when infeasible."""
        data, x = self.data, self.x
        seconds = _run(self.problem, time_limit, mip_gap)
        if self.problem.status in ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded"):
            return None
        if x.value.value is None:
            raise SolverError(f"the solver returned no solution (status {self.problem.status})")
        z = np.round(np.asarray(x.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
        return Solution(
            status="optimal" if self.problem.status == "optimal" else self.problem.status,
            objective=float(self.problem.value) * data.scale, isolated=z,
            value=np.asarray(x.value.value) * data.scale, wallet=np.asarray(x.wallet.value) * data.scale,
            inflow=np.asarray(x.inflow.value) * data.scale, outflow=np.asarray(x.outflow.value) * data.scale,
            parts={k: float(v.value) * data.scale for k, v in self.parts.items()}, mip_gap=_mip_gap(self.problem),
            seconds=seconds)


def _mode_value(x: Decision, acct: tuple[str, str]) -> float:
    return float(np.round(x.mode[acct].value))


def _mip_gap(prob: cp.Problem) -> float:
    stats = prob.solver_stats
    extra = getattr(stats, "extra_stats", None)
    gap = getattr(extra, "mip_gap", None) if extra is not None else None
    return float(gap) if gap is not None and np.isfinite(gap) else 0.0


def _bindings(terms: list[Term]) -> list[Binding]:
    """Scalar requirement constraints with a non-zero dual (the ones that shape the answer)."""
    out = []
    for term in terms:
        if term.kind in ("conservation", "transfers", "haircut", "definition"):
            continue
        for con in term.constraints:
            dual = con.dual_value
            if dual is None:
                continue
            dual = np.atleast_1d(np.asarray(dual, dtype=float))
            if dual.size != 1 or abs(dual[0]) < 1e-9:
                continue
            value = con.expr.value  # cvxpy stores a >= b as b − a <= 0: the slack is −(b − a)
            slack = float(-np.max(value)) if value is not None else 0.0
            out.append(Binding(term.name, term.kind, slack, float(abs(dual[0]))))
            break
    out.sort(key=lambda b: -b.shadow_price)
    return out


def _conservation_prices(terms: list[Term], n_assets: int) -> np.ndarray:
    for term in terms:
        if term.kind == "conservation":
            dual = term.constraints[0].dual_value
            return np.zeros(n_assets) if dual is None else -np.asarray(dual, dtype=float)
    return np.zeros(n_assets)


def _elastic(data: ProblemData, time_limit: float, seconds: float) -> Solution:
    """Minimize the USD that must be added (per asset) for the policy to become feasible."""
    x = make_decision(data)
    top_up = cp.Variable(len(data.assets), nonneg=True, name="top_up")
    terms = build_terms(data, x)
    cons = []
    for term in terms:
        if term.kind == "conservation":
            cons.append(term.constraints[0].args[0] == data.holdings + top_up)
        else:
            cons.extend(term.constraints)
    obj, _ = objective(data, x)
    prob = cp.Problem(cp.Minimize(cp.sum(top_up) + 1e-6 * obj), cons)
    seconds += _run(prob, time_limit, 1e-6)
    if top_up.value is None:
        raise SolverError("the policy cannot be met even with unlimited top-ups: check the isolation and "
                          "mode constraints (pinned positions, Multi-Assets mode)")
    z = np.round(np.asarray(x.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
    return Solution(status="infeasible", objective=float("nan"), isolated=z,
                    value=np.asarray(x.value.value) * data.scale, wallet=np.asarray(x.wallet.value) * data.scale,
                    inflow=np.asarray(x.inflow.value) * data.scale, outflow=np.asarray(x.outflow.value) * data.scale,
                    parts={}, mip_gap=_mip_gap(prob), seconds=seconds,
                    top_up=np.asarray(top_up.value) * data.scale)
