"""The optimization problem as small constraint and objective objects that compile once into cvxpy.

Every term has a ``name`` (what the analyst reads in the binding-constraint list) and builds its cvxpy
constraints against the shared :class:`Decision`.  Data scaled as in :mod:`optimizer.problem` (USD / scale).
Scenario data enters as constant matrices multiplied into variables, with explicit epigraph variables (no
``cp.multiply`` of an affine expression under ``max``: cvxpy's bound propagation mishandles it with HiGHS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy import sparse

from .problem import ProblemData, concave_pieces


@dataclass
class Decision:
    """The shared variables and the affine expressions built from them."""

    value: cp.Variable  # (n_slots,) scaled USD held in each (bucket, asset) slot
    slices: cp.Variable  # (n_slices,) haircut slices, scaled USD
    wallet: cp.Variable  # (A,)
    inflow: cp.Variable  # (n_slots,)
    outflow: cp.Variable  # (n_slots,)
    free: cp.Variable | None  # (n_free,) boolean or relaxed: 1 = isolated
    mode: dict[tuple[str, str], cp.Variable]  # account → boolean: 1 = may isolate (Multi-Assets off)
    isolated: cp.Expression  # (P,) 1 = isolated, constants for fixed positions
    haircut_value: cp.Expression  # (n_slots,)
    slot_of_slice: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def make_decision(data: ProblemData, relax: bool = False, fixed_z: np.ndarray | None = None) -> Decision:
    n_slots = len(data.slots)
    widths = np.concatenate([s.widths for s in data.slots]) if data.slots else np.zeros(0)
    ratios = np.concatenate([s.ratios for s in data.slots]) if data.slots else np.zeros(0)
    slot_of_slice = np.concatenate([np.full(len(s.widths), i) for i, s in enumerate(data.slots)]).astype(int)
    slices = cp.Variable(len(widths), nonneg=True, name="slices")
    to_slot = sparse.csr_array((ratios, (slot_of_slice, np.arange(len(widths)))), shape=(n_slots, len(widths)))
    free_idx = [i for i, p in enumerate(data.positions) if not p.fixed]
    if fixed_z is not None or not free_idx:
        free = None
        z0 = np.array([1.0 if p.isolated_now else 0.0 for p in data.positions])
        isolated = cp.Constant(fixed_z if fixed_z is not None else z0) if data.positions else cp.Constant(np.zeros(0))
    else:
        free = cp.Variable(len(free_idx), boolean=not relax, name="isolated")
        base = np.array([1.0 if (p.fixed and p.isolated_now) else 0.0 for p in data.positions])
        pick = sparse.csr_array((np.ones(len(free_idx)), (free_idx, np.arange(len(free_idx)))),
                                shape=(len(data.positions), len(free_idx)))
        isolated = base + pick @ free
    integral = not relax and fixed_z is None
    mode = {acct: cp.Variable(boolean=integral, name=f"may_isolate {acct[0]}/{acct[1]}")
            for acct, exclusive in data.multi_asset_exclusive.items() if exclusive}
    return Decision(cp.Variable(n_slots, nonneg=True, name="value"), slices,
                    cp.Variable(len(data.assets), nonneg=True, name="wallet"),
                    cp.Variable(n_slots, nonneg=True, name="inflow"), cp.Variable(n_slots, nonneg=True, name="outflow"),
                    free, mode, isolated, to_slot @ slices, slot_of_slice)


@dataclass
class Term:
    """A named group of constraints; ``constraints`` is filled by ``build``."""

    name: str
    kind: str
    constraints: list[cp.Constraint] = field(default_factory=list)


def _slots_of(data: ProblemData, bucket: int) -> list[int]:
    return [i for i, s in enumerate(data.slots) if s.bucket == bucket]


def build_terms(data: ProblemData, x: Decision) -> list[Term]:
    """Every constraint of the problem, grouped by what it means."""
    terms: list[Term] = []
    n_assets = len(data.assets)
    slot_asset = np.array([s.asset for s in data.slots], dtype=int)
    slot_now = np.array([s.current for s in data.slots])
    # conservation: nothing appears or vanishes
    by_asset = sparse.csr_array((np.ones(len(data.slots)), (slot_asset, np.arange(len(data.slots)))),
                                shape=(n_assets, len(data.slots)))
    terms.append(Term("conservation", "conservation", [by_asset @ x.value + x.wallet == data.holdings]))
    terms.append(Term("transfers", "transfers", [x.value - slot_now == x.inflow - x.outflow]))
    # haircut slices: slice by slice, each no wider than its tier
    widths = np.concatenate([s.widths for s in data.slots]) if data.slots else np.zeros(0)
    bids = np.array([s.bid for s in data.slots])
    sum_slices = sparse.csr_array((np.ones(len(widths)), (x.slot_of_slice, np.arange(len(widths)))),
                                  shape=(len(data.slots), len(widths)))
    finite = np.isfinite(widths)
    cons = [sum_slices @ x.slices == cp.multiply(bids, x.value)]
    if finite.any():
        cons.append(x.slices[np.nonzero(finite)[0]] <= widths[finite])
    terms.append(Term("haircut tiers", "haircut", cons))
    # reserves
    reserve = np.zeros(n_assets)
    for asset, units in data.policy.reserve.items():
        if asset in data.assets:
            i = data.assets.index(asset)
            reserve[i] = units * data.prices[i] / data.scale
    if reserve.any():
        terms.append(Term("reserve", "reserve", [x.wallet >= reserve]))
    for b, bucket in enumerate(data.buckets):
        if bucket.position is None:
            terms.extend(_cross_terms(data, x, b))
        else:
            terms.extend(_isolated_terms(data, x, b))
    terms.extend(_cap_terms(data, x))
    terms.extend(_exclusive_terms(data, x))
    return terms


def cross_equity(data: ProblemData, x: Decision, b: int) -> tuple[cp.Expression, list[int], list[int]]:
    """Scaled USD equity of cross pool b now: haircut collateral + loans + uPnL of its cross positions."""
    slots = _slots_of(data, b)
    pos = [i for i, p in enumerate(data.positions) if p.cross_bucket == b]
    upnl = np.array([data.positions[i].upnl for i in pos])
    debt = sum(v for _, v in data.buckets[b].debts)
    equity = cp.Constant(debt) + (cp.sum(x.haircut_value[slots]) if slots else 0.0)
    if pos:
        equity = equity + upnl.sum() - upnl @ x.isolated[pos]
    return equity, slots, pos


def _cross_terms(data: ProblemData, x: Decision, b: int) -> list[Term]:
    bucket = data.buckets[b]
    equity, slots, pos = cross_equity(data, x, b)
    out = []
    mm = np.array([data.positions[i].mm for i in pos])
    need = bucket.extra_mm + (mm.sum() - mm @ x.isolated[pos] if pos else 0.0)
    out.append(Term(f"venue margin {bucket.label}", "venue_margin", [equity >= need]))
    if data.policy.cross.require_initial_margin and pos:
        im = np.array([data.positions[i].im for i in pos])
        out.append(Term(f"initial margin {bucket.label}", "initial_margin",
                        [equity >= bucket.extra_mm + im.sum() - im @ x.isolated[pos]]))
    # buffer survival: equity >= rho_s(L_s + k MM_s), collateral repriced in every scenario
    loss_terms = []
    r = data.returns
    extra_cons: list[cp.Constraint] = []
    linear = [i for i in slots if not data.slots[i].usd_tiers]
    if linear:  # flat ratio or caps in asset units: the value scales with the price exactly
        assets = [data.slots[i].asset for i in linear]
        loss_terms.append(-r[:, assets] @ x.haircut_value[linear])
    for i in slots:
        if data.slots[i].usd_tiers:  # USD caps: value in s is H((1 + r_s)·bid·v), concave: its hypograph
            slot = data.slots[i]
            slopes, intercepts = concave_pieces(slot)
            shocked = cp.Variable(r.shape[0], name=f"value in scenarios {bucket.label} {data.assets[slot.asset]}")
            growth = 1.0 + r[:, slot.asset]
            for slope, icpt in zip(slopes, intercepts, strict=True):
                extra_cons.append(shocked <= (slope * slot.bid * growth) * x.value[i] + icpt)
            loss_terms.append(x.haircut_value[i] - shocked)
    const = data.buffer * (bucket.extra_mm_path if bucket.extra_mm_path is not None
                           else np.full(r.shape[0], bucket.extra_mm))
    for asset, debt in bucket.debts:
        const = const - r[:, asset] * debt
    if pos:
        g = data.loss[[data.positions[i].index for i in pos]].T  # (S, n)
        const = const + g.sum(axis=1)
        loss_terms.append(-(g @ x.isolated[pos]))
    scen = const + (sum(loss_terms) if loss_terms else 0.0)
    cover = data.cover
    counted = scen if np.all(cover == 1) else sparse.diags(cover) @ scen
    if data.units:  # scanning risk: the worst counted term of each risk unit, summed over units
        worst = cp.Variable(len(data.units), nonneg=True, name=f"unit worst {bucket.label}")
        cons = [equity >= cp.sum(worst)]
        for j, (start, stop) in enumerate(data.units.values()):
            cons.append(worst[j] >= counted[start:stop])
    elif data.measure == "worst":
        cons = [equity >= counted]
    else:
        t = cp.Variable(name=f"var {bucket.label}")
        u = cp.Variable(r.shape[0], nonneg=True, name=f"excess {bucket.label}")
        cons = [u >= counted - t, equity >= t + (data.probabilities / (1.0 - data.alpha)) @ u]
    out.append(Term(f"buffer {bucket.label}", "buffer", cons + extra_cons))
    # concentration of one asset in the pool's raw collateral value
    total = cp.sum(x.value[slots]) if slots else 0.0
    settles = {data.positions[i].settle for i in pos}
    for i in slots:
        asset = data.assets[data.slots[i].asset]
        limit = None if data.slots[i].asset in settles else data.policy.concentration.get(asset)
        if limit is not None:
            out.append(Term(f"concentration {bucket.label} {asset}", "concentration", [x.value[i] <= limit * total]))
    return out


def _isolated_terms(data: ProblemData, x: Decision, b: int) -> list[Term]:
    bucket = data.buckets[b]
    p = bucket.position
    j = next(i for i, ps in enumerate(data.positions) if ps.index == p)
    ps = data.positions[j]
    slot = _slots_of(data, b)[0]
    # big-M of the on/off link: conservation already keeps value <= holdings; max(·, iso_need) keeps the elastic
    # re-solve (holdings + top-up) able to isolate a position whose need exceeds what the desk holds today
    cap = max(data.holdings[ps.settle], ps.iso_need)
    if not math.isfinite(ps.iso_need):
        return [Term(f"isolated {bucket.label}", "isolated", [x.isolated[j] == 0])]
    return [Term(f"isolated margin {bucket.label}", "isolated",
                 [x.value[slot] >= ps.iso_need * x.isolated[j], x.value[slot] <= cap * x.isolated[j]])]


def _cap_terms(data: ProblemData, x: Decision) -> list[Term]:
    out = []
    for venue, share in data.policy.venue_cap.items():
        slots = [i for i, s in enumerate(data.slots) if data.venue_of_bucket[s.bucket] == venue]
        if slots:
            out.append(Term(f"venue cap {venue}", "venue_cap",
                            [cp.sum(x.value[slots]) <= share * data.total_capital]))
    return out


def _exclusive_terms(data: ProblemData, x: Decision) -> list[Term]:
    """Multi-Assets mode: an account either posts non-settle collateral or holds isolated positions."""
    out = []
    for (venue, account), var in x.mode.items():
        pos = [i for i, p in enumerate(data.positions) if (data.buckets[p.cross_bucket].venue,
                                                           data.buckets[p.cross_bucket].account) == (venue, account)]
        settles = {data.positions[i].settle for i in pos}
        cross = next(b for b, bk in enumerate(data.buckets)
                     if (bk.venue, bk.account, bk.position) == (venue, account, None))
        foreign = [i for i in _slots_of(data, cross) if data.slots[i].asset not in settles]
        cons = [x.isolated[i] <= var for i in pos]
        if any(asset not in settles for asset, _ in data.buckets[cross].debts):  # a foreign loan: Multi-Assets
            cons.append(var == 0)
        cons += [x.value[i] <= data.holdings[data.slots[i].asset] * (1 - var) for i in foreign]
        out.append(Term(f"multi-assets mode {venue}/{account}", "exclusive", cons))
    return out


def objective(data: ProblemData, x: Decision) -> tuple[cp.Expression, dict[str, cp.Expression]]:
    """The policy's objective (scaled USD over the carry horizon) and its parts."""
    pol = data.policy
    yields = np.array([pol.yields.get(data.assets[s.asset], 0.0) for s in data.slots])
    horizon = pol.carry_horizon_days / 365.0
    locked = cp.sum(x.value)
    parts: dict[str, cp.Expression] = {
        "carry": (yields * horizon) @ x.value,
        "transfers": pol.transfer_cost_bps / 1e4 * (cp.sum(x.inflow) + cp.sum(x.outflow)),
    }
    switch = [(i, p) for i, p in enumerate(data.positions) if p.close_reopen and not p.fixed]
    if switch:
        cost = np.array([pol.mode_switch_cost_bps / 1e4 * p.notional for _, p in switch])
        now = np.array([1.0 if p.isolated_now else 0.0 for _, p in switch])
        idx = [i for i, _ in switch]
        # |z − z0| is linear because z0 is known: z when now cross, 1 − z when now isolated
        parts["mode switches"] = cost @ (now + cp.multiply(1 - 2 * now, x.isolated[idx]))
    if pol.objective == "locked_value":
        return locked + 1e-9 * (cp.sum(x.inflow) + cp.sum(x.outflow)), parts
    return parts["carry"] + parts["transfers"] + parts.get("mode switches", 0.0) + 1e-9 * locked, parts
