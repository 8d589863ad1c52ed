"""When the policy cannot be met (spec §6, exit code 3): the smallest top-up, and the smallest position reductions.

**Top-up.**  The MILP with every asset's holdings raised by a non-negative top-up, minimizing the total top-up in
USD (the policy's objective as a 1e-6 tie-break).

**Reductions.**  With holdings as they are, each position p may be cut to a share λ_p = 1 − r_p of its size,
r_p ∈ [0, 1]; the smallest total reduced USD notional Σ r_p · notional_p that makes the policy feasible.  The
position terms enter the formulation through the cross share λ_p (1 − z_p) and the isolated share λ_p z_p of
each position (z_p = 1: isolated), both linearized exactly with the mode binaries:

    c_p + i_p = λ_p,   0 <= c_p <= 1 − z_p,   0 <= i_p <= z_p.

The cross-pool terms are :func:`optimizer.formulation.build_terms` itself, with the cross share ``c`` put where the
formulation reads ``1 − z``; the isolated-margin and Multi-Assets terms keep the binaries and take the isolated
share.  So the modes are chosen with the reductions (isolating a position may spare a cut).  What scales:

- PnL (now and in every scenario) is linear in the size: exact.  The realized part of a cut, r_p × uPnL_p, is
  booked in the position's settle asset (it adds to, or for a loss takes from, the desk's holdings).
- Tiered maintenance MM(λN) is convex with MM(0) = 0, so MM(λN) <= λ·MM(N): the model's λ·MM (now, in every
  scenario, and in the isolated need) is conservative, the cut suffices but may be slightly larger than needed.
- A portfolio-margined venue's requirement per risk unit (bucket, underlying) is convex piecewise linear in its
  members' sizes (the max of linear pieces, plus the risk matrix's roll shock |Σ face|): its epigraph, per unit and
  scenario, is exact, so that cutting one leg of a hedge is charged what it costs (see
  :func:`unit_requirements`).

The model's cuts are then verified independently: the reduced book (sizes cut, realized PnL booked in the
settle asset: cross positions in the account's collateral, isolated ones in their isolated margin) is optimized
afresh, the optimizer's own re-check included.  If it does not meet the policy (round-off, tier effects), the
cuts are enlarged by a common factor, bisected, until it does: a printed reduction is always sufficient.  Amounts
in the models are USD divided by ``ProblemData.scale``; outputs are USD and position units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cvxpy as cp
import numpy as np
from scipy import sparse

from risk_models.compiled import CompiledBook
from risk_models.loading import LoadedBook, check_book
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.venue_margin import MarginState

from .account_terms import _exclusive_terms
from .decision import Decision, Term, make_decision
from .formulation import build_terms, objective
from .linear_pools import Cuts
from .problem import ProblemData, alone_unit
from .solve import Solution, SolverError, _mip_gap, _run

INFEASIBLE = ("infeasible", "infeasible_inaccurate", "infeasible_or_unbounded")
TIE_BREAK = 1e-6
"""Weight of the policy's objective (scaled USD) beside the top-up or the reduced notional: picks one optimum."""
CUT_DUST = 1e-9
"""Cuts below this share of a position are solver noise: the position is kept whole."""
ENLARGE = (1e-6, 1e-4, 1e-2, 0.1, 0.5)
"""Relative enlargements of the model's cuts tried in turn when the reduced book does not verify."""
BISECTIONS = 4
"""Halvings of the bracket between the last insufficient and the first sufficient enlargement."""
REPLACED_KINDS = ("conservation", "isolated", "exclusive")
"""Formulation term kinds rebuilt here: they read the mode binaries or the holdings, not the cross share."""


# == top-up =========================================================================================================

def top_up_problem(data: ProblemData, x: Decision, extra: list[cp.Constraint] | None = None,
                   cuts: Cuts | None = None) -> tuple[cp.Problem, list[Term], dict[str, cp.Expression], cp.Variable]:
    """The elastic problem over ``x``: every constraint of the policy with each asset's holdings raised by a
    non-negative top-up (scaled USD), minimizing the total top-up with the policy's objective as a tie-break.
    ``cuts``: the pools' buffers over these scenario cuts (:mod:`optimizer.linear_pools`) instead of every
    scenario.  Returns the problem, its terms, the objective's parts and the top-up variable."""
    top_up = cp.Variable(len(data.assets), nonneg=True, name="top_up")
    pool_terms = cuts.pools.terms(x, cuts) if cuts is not None else None
    terms = build_terms(replace(data, slot_reach=None), x,  # a top-up can take a slot past today's reach
                        pool_terms=pool_terms)
    cons = list(extra or [])
    for term in terms:
        if term.kind == "conservation":
            cons.append(term.constraints[0].args[0] == data.holdings + top_up)
        else:
            cons.extend(term.constraints)
    obj, parts = objective(data, x)
    return cp.Problem(cp.Minimize(cp.sum(top_up) + TIE_BREAK * obj), cons), terms, parts, top_up


def smallest_top_up(data: ProblemData, time_limit: float, seconds: float, cuts: Cuts | None = None,
                    separate: Callable[[Decision, Cuts], Cuts | None] | None = None) -> Solution:
    """Minimize the USD that must be added (per asset) for the policy to become feasible.

    ``seconds`` already spent are carried into the solution's time.  With ``cuts`` and ``separate`` (linear pools
    with no USD-tiered collateral, whose value stays linear whatever the top-up) the buffers are generated as in
    :func:`optimizer.solve.solve`: the top-up over the cuts is a lower bound, and once no pool falls short over
    every scenario it is the smallest.  Raises SolverError when not even unlimited top-ups help (the modes cannot
    be arranged).
    """
    if cuts is not None and any(s.usd_tiers for s in data.slots if data.buckets[s.bucket].position is None):
        cuts = None  # a top-up may take tiered collateral past its first slice, where the cuts' line over-values it
    while True:
        x = make_decision(data)
        prob, _, _, top_up = top_up_problem(data, x, cuts=cuts)
        seconds += _run(prob, time_limit, 1e-6, tight=cuts is not None)
        if top_up.value is None:
            raise SolverError("the policy cannot be met even with unlimited top-ups: check the isolation and "
                              "mode constraints (pinned positions, Multi-Assets mode)")
        grown = separate(x, cuts) if cuts is not None and separate is not None else None
        if grown is None:
            break
        cuts = grown
    z = np.round(np.asarray(x.isolated.value, dtype=float)).clip(0, 1) if data.positions else np.zeros(0)
    return Solution(status="infeasible", objective=float("nan"), isolated=z,
                    value=np.asarray(x.value.value) * data.scale, wallet=np.asarray(x.wallet.value) * data.scale,
                    inflow=np.asarray(x.inflow.value) * data.scale, outflow=np.asarray(x.outflow.value) * data.scale,
                    parts={}, mip_gap=_mip_gap(prob), seconds=seconds,
                    top_up=np.asarray(top_up.value) * data.scale)


# == reductions =====================================================================================================

@dataclass(frozen=True)
class Reduction:
    """Cut one position from ``qty_before`` to ``qty_after`` (same sign, position units); ``notional_reduced`` is
    the USD notional at the mark that the cut removes."""

    venue: str
    account: str
    symbol: str
    qty_before: float
    qty_after: float
    notional_reduced: float

    @property
    def reduce_qty(self) -> float:
        """|qty_before| − |qty_after|: the size to cut (the trade is qty_after − qty_before)."""
        return abs(self.qty_before) - abs(self.qty_after)

    def to_dict(self) -> dict[str, Any]:
        return {"venue": self.venue, "account": self.account, "symbol": self.symbol,
                "qty_before": float(self.qty_before), "qty_after": float(self.qty_after),
                "reduce_qty": float(self.reduce_qty),
                "notional_reduced": self.notional_reduced}


@dataclass(frozen=True)
class Reductions:
    """The verified reductions (book order), or none and ``note`` saying why."""

    rows: list[Reduction]
    note: str = ""
    model_notional: float = 0.0  # USD the reduction model found, before verification enlarged it
    checks: int = 0  # optimizer re-runs spent verifying

    @property
    def notional(self) -> float:
        """Total reduced notional, USD."""
        return sum(r.notional_reduced for r in self.rows)


Sufficient = Callable[[LoadedBook], bool]
"""Whether a book meets the policy: the optimizer re-run on it, its re-check included."""


def smallest_reductions(loaded: LoadedBook, cb: CompiledBook, state: MarginState, data: ProblemData,
                        scenarios: ScenarioSet, sufficient: Sufficient, time_limit: float = 120.0,
                        max_checks: int = 16) -> Reductions:
    """The smallest total reduced notional (USD) that makes the policy feasible without a top-up, verified by
    ``sufficient`` on the reduced book and enlarged until it passes (at most ``max_checks`` re-runs)."""
    if not data.positions:
        return Reductions([], "the book holds no positions to reduce")
    status, model_cut = solve_cuts(data, cb, loaded, scenarios, time_limit)
    notional = np.array([p.notional for p in data.positions]) * data.scale
    checks = 0

    def passes(cut: np.ndarray) -> bool:
        nonlocal checks
        checks += 1
        return sufficient(reduced_book(loaded, cb, state, _by_row(data, cb, cut)))

    def bisect(lo: float, hi: float, make: Callable[[float], np.ndarray]) -> np.ndarray:
        """The smallest passing ``make(t)`` found in (lo, hi], ``make(hi)`` known to pass."""
        for _ in range(BISECTIONS):
            if checks >= max_checks:
                break
            mid = 0.5 * (lo + hi)
            if passes(make(mid)):
                hi = mid
            else:
                lo = mid
        return make(hi)

    found: np.ndarray | None = None
    chosen = model_cut > 0
    if status == "solved" and passes(model_cut):
        found = model_cut
    elif status == "solved" and chosen.any():
        top = 1.0 / model_cut[chosen].min() - 1.0  # the enlargement that closes every chosen position

        def grown(t: float) -> np.ndarray:
            return _tidy(np.minimum(1.0, model_cut * (1.0 + t)))

        lo = 0.0
        for t in (*(e for e in ENLARGE if e < top), top):
            if checks >= max_checks:
                break
            if passes(grown(t)):
                found = bisect(lo, t, grown)
                break
            lo = t
    if found is None and status != "infeasible" and checks < max_checks:
        # the chosen positions closed are not enough (or the model had no answer): cut every position by a common
        # further share θ, θ = 1 closing the book
        base = np.where(chosen, 1.0, 0.0) if status == "solved" else np.zeros(len(data.positions))

        def uniform(t: float) -> np.ndarray:
            return _tidy(base + t * (1.0 - base))

        if passes(uniform(1.0)):
            found = bisect(0.0, 1.0, uniform)
    model_usd = float(model_cut @ notional)
    if found is None:
        why = (f"verifying them took more than {max_checks} optimizer re-runs" if checks >= max_checks
               else closing_everything_fails(data))
        return Reductions([], why, model_usd, checks)
    if not found.any():
        return Reductions([], "the policy can be met as the book is: nothing to reduce", model_usd, checks)
    return Reductions(_rows(loaded, cb, data, found), "", model_usd, checks)


def solve_cuts(data: ProblemData, cb: CompiledBook, loaded: LoadedBook, scenarios: ScenarioSet, time_limit: float
               ) -> tuple[str, np.ndarray]:
    """The reduction model (module docstring): ("solved" | "infeasible" | "no_solution", r per data position)."""
    x = make_decision(data)
    n = len(data.positions)
    cut = cp.Variable(n, bounds=[0.0, 1.0], name="reduced share")
    cross = cp.Variable(n, nonneg=True, name="cross share")
    iso = cp.Variable(n, nonneg=True, name="isolated share")
    cons: list[cp.Constraint] = [cross + iso == 1 - cut, cross <= 1 - x.isolated, iso <= x.isolated]
    data, unit_cons = unit_requirements(data, cb, loaded, scenarios, cross)
    data = replace(data, slot_reach=None)  # realized gains can take a slot past today's reach
    cons += unit_cons
    # the formulation's 1 − z becomes the cross share
    shared = replace(x, isolated=1 - cross, extra=[],
                     iso_affine=(np.ones(n), -sparse.eye_array(n, format="csr"), cross))
    # a cut realizes its share of the uPnL in the settle asset
    upnl = np.array([p.upnl for p in data.positions])
    settle = np.array([p.settle for p in data.positions], dtype=int)
    realized = sparse.csr_array((upnl, (settle, np.arange(n))), shape=(len(data.assets), n))
    for term in build_terms(data, shared):
        if term.kind == "conservation":
            cons.append(term.constraints[0].args[0] == data.holdings + realized @ cut)
        elif term.kind not in REPLACED_KINDS:
            cons.extend(term.constraints)
    for term in _isolated_terms(data, x.value, x.isolated, iso):
        cons.extend(term.constraints)
    for term in _exclusive_terms(data, x):
        cons.extend(term.constraints)
    obj, _ = objective(data, x)
    notional = np.array([p.notional for p in data.positions])
    prob = cp.Problem(cp.Minimize(notional @ cut + TIE_BREAK * obj), cons)
    _run(prob, time_limit, 1e-6)
    if prob.status in INFEASIBLE:
        return "infeasible", np.zeros(n)
    if cut.value is None:
        return "no_solution", np.zeros(n)
    return "solved", _tidy(np.asarray(cut.value, dtype=float))


def _isolated_terms(data: ProblemData, value: cp.Variable, z: cp.Expression, iso: cp.Variable) -> list[Term]:
    """Isolated margin >= the need of the isolated share; nothing posted unless isolated (big-M: everything the
    desk could hold, realized gains included)."""
    gains = np.zeros(len(data.assets))
    for p in data.positions:
        gains[p.settle] += max(p.upnl, 0.0)
    out = []
    for b, bucket in enumerate(data.buckets):
        if bucket.position is None:
            continue
        j = next(i for i, ps in enumerate(data.positions) if ps.index == bucket.position)
        ps = data.positions[j]
        slot = next(i for i, s in enumerate(data.slots) if s.bucket == b)
        if not math.isfinite(ps.iso_need):
            out.append(Term(f"isolated {bucket.label}", "isolated", [z[j] == 0]))
            continue
        cap = max(data.holdings[ps.settle] + gains[ps.settle], ps.iso_need)
        out.append(Term(f"isolated margin {bucket.label}", "isolated",
                        [value[slot] >= ps.iso_need * iso[j], value[slot] <= cap * z[j]]))
    return out


def unit_requirements(data: ProblemData, cb: CompiledBook, loaded: LoadedBook, scenarios: ScenarioSet,
                      cross: cp.Expression) -> tuple[ProblemData, list[cp.Constraint]]:
    """The problem data with each cross pool's portfolio-margin requirement (risk units of a venue with a margin
    model) as a function of its members' cross shares ``cross`` (P,), now and in every scenario, and the
    constraints that define it.

    A unit's requirement is mm_mult × (max(0, max_j(a_j·x + b_j)) + κ) with the pieces a_j, b_j the sums of its
    members' own pieces (linear in their sizes) and κ = m·|Σ inverse USD face| (the risk matrix's roll shock): an
    epigraph per unit and scenario, exact, so that cutting one leg of a hedge is charged what it costs.  The
    requirement fields of the pools' :class:`~optimizer.problem.BucketSpec` carry these cvxpy expressions (the
    formulation only adds and scales them).
    """
    units = cb.units
    if not len(units):
        return data, []
    growth = scenarios.growth_of(cb.assets, tuple(data.policy.risk_model.pegged))
    now = units.maintenance(np.ones(len(units))) / data.scale
    paths = units.maintenance(growth[units.underlying]) / data.scale
    pa = cb.positions
    bucket_of = {(b.venue, b.account): i for i, b in enumerate(data.buckets) if b.position is None}
    buckets = list(data.buckets)
    cons: list[cp.Constraint] = []
    for u in range(len(units)):
        cbb = cb.buckets[units.bucket[u]]
        if cbb.symbol is not None:  # an isolated position's own unit: its isolated need covers it
            continue
        b = bucket_of[(cbb.venue, cbb.account)]
        members = [j for j, p in enumerate(data.positions) if p.cross_bucket == b
                   and pa.bucket[p.index] == units.bucket[u] and pa.underlying[p.index] == units.underlying[u]]
        if not members:
            continue
        alone = [alone_unit(cb, loaded, cbb.venue, data.positions[j].index) for j in members]
        slopes, intercepts = _extreme_pieces(np.stack([a.slopes[0] for a in alone], axis=1),
                                             np.stack([a.intercepts[0] for a in alone], axis=1))
        rows = [data.positions[j].index for j in members]
        face = np.where(pa.inverse[rows], pa.qty[rows] * pa.contract_size[rows] * cb.prices[pa.underlying[rows]]
                        / pa.mark[rows], 0.0)  # signed inverse USD face per member
        roll = np.array([a.const[0] for a in alone])  # m·|face| of each member alone
        rate = np.divide(roll, np.abs(face), out=np.zeros(len(members)), where=np.abs(face) > 0)
        mult = units.mm_mult[u] / data.scale
        share = cross[members]
        x = growth[units.underlying[u]]
        t_now = cp.Variable(name=f"unit requirement now {cbb.label} {cb.assets[units.underlying[u]]}")
        t_s = cp.Variable(len(x), name=f"unit requirement {cbb.label} {cb.assets[units.underlying[u]]}")
        kappa: cp.Expression | float = 0.0
        if roll.any():
            kappa = cp.Variable(nonneg=True, name=f"roll shock {cbb.label}")
            cons += [kappa >= (rate * face) @ share, kappa >= -(rate * face) @ share]
        cons += [t_now >= mult * kappa, t_s >= mult * kappa]
        for a, c in zip(slopes, intercepts, strict=True):
            cons += [t_now >= mult * ((a + c) @ share + kappa),
                     t_s >= mult * ((np.outer(x, a) + c) @ share + kappa)]
        bk = buckets[b]
        path = bk.extra_mm_path if bk.extra_mm_path is not None else np.full(len(x), bk.extra_mm)
        buckets[b] = replace(bk, extra_mm=(bk.extra_mm - now[u]) + t_now, extra_mm_path=(path - paths[u]) + t_s)
    return replace(data, buckets=buckets), cons


def _extreme_pieces(slopes: np.ndarray, intercepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces (J, n) of a unit that can attain its maximum.  When every piece is μ_j times one linear form of
    the members' shares (the shipped models: a price move times the unit's delta), the maximum over j is attained
    at the largest or the smallest μ_j, whatever the shares: two pieces instead of J, the same value."""
    pieces = np.concatenate([slopes, intercepts], axis=1)
    norms = np.linalg.norm(pieces, axis=1)
    if norms.max() == 0:
        return slopes[:1], intercepts[:1]
    v = pieces[np.argmax(norms)]
    mu = pieces @ v / (v @ v)
    if np.abs(pieces - np.outer(mu, v)).max() > 1e-12 * np.abs(pieces).max():
        return slopes, intercepts
    keep = [int(np.argmax(mu)), int(np.argmin(mu))]
    return slopes[keep], intercepts[keep]


def reduced_book(loaded: LoadedBook, cb: CompiledBook, state: MarginState, cut: np.ndarray) -> LoadedBook:
    """The book with each compiled position p cut to (1 − cut[p]) of its size at the same entry price; the realized
    PnL (settle units, at the mark) goes to the account's collateral (cross) or the isolated margin (isolated; a
    loss beyond it is taken from the account's collateral).  A position cut whole is closed, its isolated margin
    returned to the account's collateral."""
    raw = loaded.book.model_dump()
    row_of = {key: i for i, key in enumerate(cb.position_keys)}
    for venue_id, venue in raw["venues"].items():
        contracts = loaded.rules[venue_id].rules.contracts
        for account_id, account in venue["accounts"].items():
            kept = []
            collateral = account["collateral"]
            for pos in account["positions"]:
                i = row_of[(venue_id, account_id, pos["symbol"])]
                r = float(cut[i])
                if r <= 0.0:
                    kept.append(pos)
                    continue
                settle = contracts[pos["symbol"]].settle
                realized = r * float(state.terms.pnl_settle[i])
                isolated = pos["margin_mode"] == "isolated"
                if r >= 1.0:
                    freed = (pos["isolated_margin"] or 0.0) if isolated else 0.0
                    collateral[settle] = collateral.get(settle, 0.0) + realized + freed
                    continue
                pos["qty"] = pos["qty"] * (1.0 - r)
                if isolated:
                    margin = (pos["isolated_margin"] or 0.0) + realized
                    if margin < 0:
                        collateral[settle] = collateral.get(settle, 0.0) + margin
                        margin = 0.0
                    pos["isolated_margin"] = margin
                else:
                    collateral[settle] = collateral.get(settle, 0.0) + realized
                kept.append(pos)
            account["positions"] = kept
    book = Book.model_validate(raw)
    problems = check_book("<reduced book>", book, loaded.rules)
    if problems:  # a cut never adds a symbol, a mode or an asset the rules refuse
        raise SolverError("the reduced book is invalid: " + "; ".join(str(e) for e in problems))
    return LoadedBook(loaded.file, book, loaded.rules)


def closing_everything_fails(data: ProblemData) -> str:
    """Why no reduction helps, in words: what the policy asks that does not depend on positions."""
    held = data.holdings.copy()  # scaled USD; closing realizes every position's PnL in its settle asset
    for p in data.positions:
        held[p.settle] += p.upnl
    short = []
    for asset, need in data.policy.reserve.items():
        i = data.assets.index(asset) if asset in data.assets else None
        have = held[i] * data.scale / data.prices[i] if i is not None else 0.0
        if need > have * (1 + 1e-12):
            short.append(f"the reserve of {need:,.8g} {asset} exceeds the {max(have, 0.0):,.8g} {asset} the desk "
                         "would hold")
    if short:
        return "even closing every position does not meet the policy: " + "; ".join(short)
    return ("even closing every position does not meet the policy: what it asks of holdings alone (reserves, venue "
            "caps, concentration, loans on venues) cannot be met with what the desk holds")


def _tidy(cut: np.ndarray) -> np.ndarray:
    """Cuts in [0, 1], solver dust removed."""
    cut = np.clip(cut, 0.0, 1.0)
    cut[cut < CUT_DUST] = 0.0
    cut[cut > 1.0 - CUT_DUST] = 1.0
    return cut


def _by_row(data: ProblemData, cb: CompiledBook, cut: np.ndarray) -> np.ndarray:
    """Cuts per data position → per compiled position row."""
    out = np.zeros(len(cb.position_keys))
    for p, r in zip(data.positions, cut, strict=True):
        out[p.index] = r
    return out


def _rows(loaded: LoadedBook, cb: CompiledBook, data: ProblemData, cut: np.ndarray) -> list[Reduction]:
    qty = {key: p.qty for v, venue in loaded.book.venues.items() for a, account in venue.accounts.items()
           for p in account.positions for key in [(v, a, p.symbol)]}
    out = []
    for p, r in sorted(zip(data.positions, cut, strict=True), key=lambda pr: pr[0].index):
        if r <= 0.0:
            continue
        venue, account, symbol = cb.position_keys[p.index]
        before = qty[(venue, account, symbol)]
        after = 0.0 if r >= 1.0 else before * (1.0 - r)
        out.append(Reduction(venue, account, symbol, before, after, float(r * p.notional * data.scale)))
    return out
