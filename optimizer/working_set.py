"""Scenario constraint generation: solve over the scenarios that matter, add the violated ones until none is.

A cross pool's buffer survival over S scenarios is one row per scenario.  Kept over a working set W_b of
scenarios with their original probabilities,

    E_b >= t + 1/(1 − α) · Σ_{s ∈ W_b} p_s (T_{b,s} − t)+        (expected shortfall, Rockafellar–Uryasev)
    E_b >= T_{b,s}  for s ∈ W_b                                 (worst case)

is a relaxation of the full constraint (the dropped terms are non-negative), so the restricted optimum is a
lower bound of the full one.  The separation oracle evaluates every pool of the restricted optimum over *all*
scenarios with the formulation's own expressions evaluated numerically (:func:`optimizer.formulation.
evaluate_pools`), so it works for the continuous relaxation as well.  When every pool meets its full-set
requirement, the restricted optimum is feasible for the full problem and therefore optimal: the method is exact,
not a sample (and the recommendation is re-checked by risk_models' independent numpy path as always).  Otherwise
the scenarios that the relaxation missed are added — for expected shortfall every scenario above the restricted
problem's value at risk t_W (with them the restricted and full sums agree at t_W, which is what makes the full
requirement hold), for the worst case every scenario above equity — and the problem is solved again.  The
working set only grows, so the loop ends.  Amounts in USD.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from risk_models.compiled import compile_book
from risk_models.loading import LoadedBook
from risk_models.measures import RiskMeasure
from risk_models.revaluation import revalue
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.venue_margin import evaluate

from .conic import solve_conic
from .decision import Decision
from .formulation import evaluate_pools
from .linear_pools import Cuts, LinearPools, linear_pools, tail_size
from .problem import ProblemData
from .solve import Solution, solve

SEPARATION_TOLERANCE = 1e-7
"""Violations below this share of the desk's capital are solver round-off (the re-check allows 1e-6)."""
MAX_ADDED = 4
"""At most this many tails' worth of scenarios are added to a pool in one round (the most violating first)."""


def worth_it(data: ProblemData, min_scenarios: int = 200) -> bool:
    """Constraint generation pays when the working set is much smaller than the set: ES tails and worst cases
    over a few hundred scenarios or more.  Scanning grids (a worst case per risk unit) are small: solved whole."""
    return data.units is None and data.normal is None and data.returns.shape[0] >= min_scenarios and any(
        b.position is None for b in data.buckets)


@dataclass
class PoolTerms:
    """Every cross pool's counted scenario terms ``cover · (L_s + k·MM_s)`` (n, S) and equity now (n,), USD."""

    terms: np.ndarray
    equity: np.ndarray


class ScenarioOracle:
    """Exact full-set evaluation of the cross pools of a candidate allocation, and the scenarios to add."""

    def __init__(self, loaded: LoadedBook, data: ProblemData, scenarios: ScenarioSet) -> None:
        self.loaded = loaded
        self.data = data
        self.scenarios = scenarios
        pol = data.policy
        self.measure = RiskMeasure(data.measure, pol.risk_model.confidence)
        self.cross = [b for b, bk in enumerate(data.buckets) if bk.position is None]
        self.keys = [(data.buckets[b].venue, data.buckets[b].account) for b in self.cross]

    def pool_terms(self, book: Book) -> PoolTerms:
        """Full-set terms of every cross pool of ``book`` (risk_models' numpy path: exact tiers and haircuts)."""
        cb = compile_book(LoadedBook(self.loaded.file, book, self.loaded.rules))
        state = evaluate(cb)
        growth = self.scenarios.growth_of(cb.assets, tuple(self.data.policy.risk_model.pegged))
        rv = revalue(cb, growth)
        row = {(bk.venue, bk.account): i for i, bk in enumerate(cb.buckets) if bk.symbol is None}
        idx = np.array([row[k] for k in self.keys], dtype=int)
        term = (state.equity[idx, None] - rv.equity[idx]) + self.data.buffer * rv.maintenance[idx]
        return PoolTerms(self.scenarios.coverage[None, :] * term, state.equity[idx])

    def variants(self, book: Book) -> dict[int, list[np.ndarray]]:
        """Per pool, its counted terms today (S,) and the same with the pool's equity held in each non-stable
        asset it accepts (where the optimizer may move it: those scenarios would otherwise come in a second
        round)."""
        pt = self.pool_terms(book)
        r = self.data.returns
        moving = np.abs(r).max(axis=0) > 0 if r.size else np.zeros(0, dtype=bool)
        assets_of: dict[int, set[int]] = {}
        for s in self.data.slots:
            if moving[s.asset]:
                assets_of.setdefault(s.bucket, set()).add(s.asset)
        return {b: [pt.terms[j]] + [pt.terms[j] - max(pt.equity[j], 0.0) * r[:, a]
                                    for a in sorted(assets_of.get(b, set()))]
                for j, b in enumerate(self.cross)}

    def initial(self, book: Book) -> dict[int, np.ndarray]:
        """A first working set per pool: the worst scenarios of each of its :meth:`variants`, three times the
        tail's size (at least 20)."""
        n_s = self.data.returns.shape[0]
        m = min(n_s, max(20, math.ceil(3 * (1 - self.measure.alpha) * n_s) if self.measure.kind == "es" else 20))
        return {b: np.unique(np.concatenate([np.argsort(-v, kind="stable")[:m] for v in variants]))
                for b, variants in self.variants(book).items()}

    def separate(self, x: Decision, rows: dict[int, np.ndarray]) -> dict[int, np.ndarray] | None:
        """The working sets grown by the scenarios each pool must add; None when the solved Decision ``x`` meets
        every pool's full-set requirement, evaluated by the formulation's own numpy face over every scenario."""
        terms, equities = evaluate_pools(self.data, x)
        p = self.data.probabilities
        tol = SEPARATION_TOLERANCE
        out: dict[int, np.ndarray] = {}
        for j, b in enumerate(self.cross):
            term, equity = terms[j], equities[j]
            if self.measure.evaluate(term, p) <= equity + tol:  # the terms are counted already (cover applied)
                continue
            mine = np.zeros(term.size, dtype=bool)
            mine[rows[b]] = True
            level = equity if self.measure.kind == "worst" else _restricted_var(term[mine], p[mine],
                                                                                 self.measure.alpha)
            add = np.nonzero(~mine & (term > level - tol))[0]
            if self.measure.kind == "es":  # and the full tail itself, so that the next set can price it
                tail = np.nonzero(~mine & (self.measure.weights(term, p) > 0))[0]
                add = np.union1d(add, tail)
            if add.size:
                cap = max(50, math.ceil(MAX_ADDED * (1 - self.measure.alpha) * term.size))
                out[b] = np.sort(add[np.argsort(-term[add], kind="stable")[:cap]])
        if not out:
            return None
        return {b: np.union1d(r, out[b]) if b in out else r for b, r in rows.items()}


ROUND_OFF = 1e-6
"""A shortfall (share of the desk's capital) that a cut already held can show from solver round-off alone."""
MAX_CUT_ROUNDS = 60
"""Kelley's cutting plane ends, but can crawl; after this many checks the per-scenario working sets take over
(exact too).  The desks measured in benchmarks/ need 4 to 14."""


class TooManyCutRounds(Exception):
    """The cut loop passed MAX_CUT_ROUNDS, or a cut it holds is short by more than round-off (internal:
    solve_generated falls back to the working sets)."""


class CutOracle:
    """Scenario cuts for linear pools (:mod:`optimizer.linear_pools`): a first set from each pool's variants
    today, then Kelley's cutting plane — at a solved (x, t) whose Rockafellar–Uryasev value over all scenarios
    exceeds the pool's equity, the cut over the scenarios above t (violated there by construction) and the one
    over the tail at x's own value at risk.  The cuts only grow and there are finitely many, so the loop ends; when
    no pool is violated, the full constraint holds with the solved t: the method is exact."""

    def __init__(self, loaded: LoadedBook, data: ProblemData, scenarios: ScenarioSet, pools: LinearPools) -> None:
        self.oracle = ScenarioOracle(loaded, data, scenarios)
        self.pools = pools
        self.data = data
        self.tail = tail_size(data.alpha, data.returns.shape[0])
        self.checks = 0

    def initial(self, book: Book) -> Cuts:
        pool, rows = [], []
        row_of = {b: j for j, b in enumerate(self.pools.buckets)}
        for b, variants in self.oracle.variants(book).items():
            for v in variants:
                top = _largest(v, self.tail if self.data.measure == "es" else 20)
                if self.data.measure == "es":
                    pool.append(row_of[b])
                    rows.append(top)
                else:
                    pool += [row_of[b]] * len(top)
                    rows += [np.array([s]) for s in top]
        return Cuts(self.pools).grown(pool, rows)

    def separate(self, x: Decision, cuts: Cuts) -> Cuts | None:
        self.checks += 1
        if self.checks > MAX_CUT_ROUNDS:
            raise TooManyCutRounds(f"{MAX_CUT_ROUNDS} rounds of scenario cuts")
        terms, equity = self.pools.values(x)
        tol = SEPARATION_TOLERANCE
        p = self.data.probabilities
        t = np.asarray(x.at_risk.value, dtype=float) if x.at_risk is not None else np.zeros(len(equity))
        pool: list[int] = []
        rows: list[np.ndarray] = []
        seen = {(j, r.tobytes()) for j, r in zip(cuts.pool, cuts.rows, strict=True)}
        worst_gap = 0.0  # the largest shortfall found, scaled USD
        for j in range(len(equity)):
            term = terms[j]
            if self.data.measure == "worst":
                gap = term.max(initial=-math.inf) - equity[j]
                worst_gap = max(worst_gap, gap)
                if gap <= tol:
                    continue
                add = np.nonzero(term > equity[j] - tol)[0]
                add = add[np.argsort(-term[add], kind="stable")[:50]]
                pool += [j] * len(add)
                rows += [np.array([s]) for s in add]
                continue
            excess = term - t[j]
            gap = t[j] + (p @ np.maximum(excess, 0.0)) / (1 - self.data.alpha) - equity[j]
            worst_gap = max(worst_gap, gap)
            if gap <= tol:
                continue
            above = np.nonzero(excess > 0)[0]
            pool.append(j)
            rows.append(above)
            top = _largest(term, self.tail)
            if top.size != above.size or not np.array_equal(top, above):
                pool.append(j)
                rows.append(top)
        # a cut the problem holds already is violated by solver round-off only: nothing new to add, as long as the
        # shortfall is round-off indeed (within the re-check's 1e-6 of capital); else the working sets take over
        fresh = [(j, r) for j, r in zip(pool, rows, strict=True) if (j, r.tobytes()) not in seen]
        if not fresh:
            if worst_gap > ROUND_OFF:
                raise TooManyCutRounds(f"a held cut is short by {worst_gap:.3g} of capital")
            return None
        return cuts.grown([j for j, _ in fresh], [r for _, r in fresh])


def _largest(term: np.ndarray, m: int) -> np.ndarray:
    """The indices of the ``m`` largest entries of ``term``, ascending (all of them when it has no more)."""
    if m >= term.size:
        return np.arange(term.size)
    return np.sort(np.argpartition(-term, m - 1)[:m])


def _restricted_var(term: np.ndarray, p: np.ndarray, alpha: float) -> float:
    """The minimizer t of t + 1/(1 − α) Σ p_s (T_s − t)+ over a subset: the largest T at which the mass at or
    above it first reaches 1 − α; −inf when the subset holds less mass than the tail (then it is unbounded)."""
    order = np.argsort(-term, kind="stable")
    mass = np.cumsum(p[order])
    reached = np.nonzero(mass >= (1 - alpha) * (1 - 1e-12))[0]
    return float(term[order[reached[0]]]) if reached.size else -math.inf


def solve_generated(loaded: LoadedBook, data: ProblemData, scenarios: ScenarioSet, time_limit: float = 120.0,
                    mip_gap: float = 1e-6, relax: bool = False, cuts: bool = True,
                    on_round: Callable[[str], None] | None = None) -> Solution:
    """:func:`optimizer.solve.solve` with scenario constraint generation where it pays (:func:`worth_it`), the
    whole scenario set otherwise.  The same optimum either way.  ``relax``: the continuous relaxation."""
    if data.normal is not None:  # the closed-form delta-normal buffer: a cone, no scenario rows
        return solve_conic(data, time_limit=time_limit, mip_gap=mip_gap)
    if not worth_it(data):
        return solve(data, time_limit=time_limit, mip_gap=mip_gap, relax=relax)
    pools = linear_pools(data) if cuts else None
    if pools is not None:
        cut_oracle = CutOracle(loaded, data, scenarios, pools)
        try:
            return solve(data, time_limit=time_limit, mip_gap=mip_gap, rows=cut_oracle.initial(loaded.book),
                         separate=cut_oracle.separate, relax=relax, on_round=on_round)
        except TooManyCutRounds:
            pass  # the working sets below
    oracle = ScenarioOracle(loaded, data, scenarios)
    return solve(data, time_limit=time_limit, mip_gap=mip_gap, rows=oracle.initial(loaded.book),
                 separate=oracle.separate, relax=relax, on_round=on_round)
