"""The optimization problem as small constraint and objective objects that compile once into cvxpy.

Every term has a ``name`` (what the analyst reads in the binding-constraint list) and builds its cvxpy
constraints against the shared :class:`Decision`.  Data scaled as in :mod:`optimizer.problem` (USD / scale).
Scenario data enters as constant matrices multiplied into variables, with explicit epigraph variables (no
``cp.multiply`` of an affine expression under ``max``: cvxpy's bound propagation mishandles it with HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cvxpy as cp
import numpy as np
from scipy import sparse

from .account_terms import _cap_terms, _exclusive_terms, _isolated_terms, _loan_set
from .decision import Decision, Term
from .problem import ProblemData, Slot, concave_pieces, restrict


def _members(data: ProblemData) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Bucket → its slot indices, and cross bucket → its position indices: built once per problem, since
    thousands of pools ask for theirs."""
    slots_of: dict[int, list[int]] = {}
    for i, s in enumerate(data.slots):
        slots_of.setdefault(s.bucket, []).append(i)
    pos_of: dict[int, list[int]] = {}
    for i, p in enumerate(data.positions):
        pos_of.setdefault(p.cross_bucket, []).append(i)
    return slots_of, pos_of


def build_terms(data: ProblemData, x: Decision, rows: dict[int, np.ndarray] | None = None,
                pool_terms: list[Term] | None = None) -> list[Term]:
    """Every constraint of the problem, grouped by what it means.

    ``rows`` (cross bucket → scenario indices) keeps each pool's buffer survival over those scenarios only, with
    their original probabilities: a relaxation of the full constraint (see :mod:`optimizer.working_set`).
    ``pool_terms``: every cross pool's venue margin and buffer, built already (vectorized over linear pools by
    :mod:`optimizer.linear_pools`); the pools' concentration limits are still added here.
    """
    terms: list[Term] = []
    if data.normal is not None and rows is None:  # the cone needs no scenario rows: value the pools once
        rows = {b: np.zeros(1, dtype=int) for b, bk in enumerate(data.buckets) if bk.position is None}
    n_assets = len(data.assets)
    slot_asset = np.array([s.asset for s in data.slots], dtype=int)
    slot_now = np.array([s.current for s in data.slots])
    # conservation: nothing appears or vanishes; a new loan's proceeds are units of its asset like any other
    # (the left side stays one expression: the elastic re-solve replaces the right side by holdings + top-up)
    by_asset = sparse.csr_array((np.ones(len(data.slots)), (slot_asset, np.arange(len(data.slots)))),
                                shape=(n_assets, len(data.slots)))
    terms.append(Term("conservation", "conservation", [by_asset @ x.net() + x.wallet == data.holdings]))
    # transfers move each slot's net balance: loan proceeds kept in place are no transfer, proceeds sent
    # elsewhere leave the pool like any other withdrawal
    terms.append(Term("transfers", "transfers", [x.net() - slot_now == x.inflow - x.outflow]))
    for j, i in enumerate(data.loan_slots):  # a finite bound: no loan beyond any use (see LOAN_CAP_FACTOR)
        slot = data.slots[i]
        terms.append(Term(f"borrowing {data.buckets[slot.bucket].label} {data.assets[slot.asset]}", "loan_limit",
                          [x.borrow[j] <= data.loan_cap]))
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
    slots_of, pos_of = _members(data)
    for b, bucket in enumerate(data.buckets):
        if bucket.position is not None:
            continue
        slots, pos = slots_of.get(b, []), pos_of.get(b, [])
        if pool_terms is not None:
            terms.extend(_concentration(data, x, b, slots, pos))
        else:
            own = [data.positions[i].index for i in pos]
            terms.extend(_cross_terms(data if rows is None else restrict(data, rows[b], own), x, b, slots, pos))
    terms.extend(pool_terms or [])
    terms.extend(_isolated_terms(data, x))
    terms.extend(_cap_terms(data, x))
    terms.extend(_exclusive_terms(data, x))
    terms.append(Term("factor exposures", "definition", x.extra))
    return terms


@dataclass
class _Pool:
    """A cross pool's equity now (scaled USD), its scenario loss E_now − E_s (S,) and the constraints of any
    hypograph variables used to value it."""

    equity: cp.Expression
    loss: cp.Expression
    constraints: list[cp.Constraint]


def _pool(data: ProblemData, x: Decision, b: int, slots: list[int], pos: list[int]) -> _Pool:
    """Equity now and in every scenario of cross pool b.

    Collateral slots valued at 100 % on both sides take the positions' unrealized PnL outside the haircut.  A
    settle-asset slot with a haircut, bid/ask rates or tiers takes its positions' PnL inside, as venues do:
    its value is the concave function of balance + PnL (tiers slice by slice, a negative balance at ask ×
    liability weight), modelled by its hypograph now and in every scenario.  Loans, existing (``debts``) and new
    (``x.borrowed``), count at ask × liability weight with no haircut and grow with their asset's price; in a
    folded slot they enter the net balance instead.
    """
    bucket = data.buckets[b]
    r = data.returns
    n_s = r.shape[0]
    slot_of_asset = {data.slots[i].asset: i for i in slots}
    folded = {i for i in slots if not data.slots[i].plain
              and any(data.positions[p].settle == data.slots[i].asset for p in pos)}
    fold_pos = [p for p in pos if slot_of_asset.get(data.positions[p].settle) in folded]
    rest_pos = [p for p in pos if p not in fold_pos]
    debts = dict(bucket.debts)
    cons: list[cp.Constraint] = []
    equity: cp.Expression = cp.Constant(sum(v for a, v in debts.items() if slot_of_asset.get(a) not in folded))
    loss: cp.Expression = cp.Constant(np.zeros(n_s))
    for a, debt in debts.items():
        if slot_of_asset.get(a) not in folded:
            loss = loss - r[:, a] * debt
    plain = [i for i in slots if i not in folded and not data.slots[i].usd_tiers]
    if plain:  # flat ratio or caps in asset units: the value scales with the price exactly
        equity = equity + cp.sum(x.haircut_value[plain])
        loss = loss - r[:, [data.slots[i].asset for i in plain]] @ x.haircut_value[plain]
    loans = [i for i in slots if i not in folded and i in _loan_set(data)]
    if loans:  # new loans outside a folded slot: linear liabilities, repriced with their asset
        owed = cp.multiply(np.array([data.slots[i].liability_rate for i in loans]), x.borrowed[loans])
        equity = equity - cp.sum(owed)
        loss = loss + r[:, [data.slots[i].asset for i in loans]] @ owed
    for i in slots:
        slot = data.slots[i]
        if i in folded or not slot.usd_tiers:
            continue
        # USD caps: the value in s is H((1 + r_s)·bid·v), concave: its hypograph over the pieces it can reach
        growth = 1.0 + r[:, slot.asset]
        slopes, intercepts = reachable_pieces(slot, None if data.slot_reach is None
                                              else slot.bid * float(growth.max(initial=1.0)) * data.slot_reach[i])
        equity = equity + x.haircut_value[i]
        if len(slopes) == 1 and intercepts[0] == 0.0:  # always within the first slice: linear in the price
            loss = loss + x.haircut_value[i] - (slopes[0] * slot.bid * growth) * x.value[i]
            continue
        shocked = cp.Variable(n_s, name=f"value in scenarios {bucket.label} {data.assets[slot.asset]}")
        cons += [shocked <= (slope * slot.bid * growth) * x.value[i] + icpt
                 for slope, icpt in zip(slopes, intercepts, strict=True)]
        loss = loss + x.haircut_value[i] - shocked
    if rest_pos:
        upnl = np.array([data.positions[p].upnl for p in rest_pos])
        equity = equity + upnl.sum() - upnl @ x.isolated[rest_pos]
        loss = loss + position_sum(data, x, rest_pos, data.pnl_affine, _pnl_loss(data, rest_pos), f"pnl {b}")
    for i in folded:
        slot = data.slots[i]
        mine = [p for p in fold_pos if data.positions[p].settle == slot.asset]
        upnl = np.array([data.positions[p].upnl for p in mine])
        pnl_now = _pnl_loss(data, mine)  # (S, n): loss of each position in each scenario
        # the existing loan at raw USD (``debts`` hold it at ask × liability weight): the rates apply to the net
        # balance below, once
        debt = debts.get(slot.asset, 0.0) / slot.liability_rate
        growth = 1.0 + r[:, slot.asset]
        held = x.value[i] - x.borrowed[i] if i in _loan_set(data) else x.value[i]
        balance_now = held + debt + upnl.sum() - upnl @ x.isolated[mine]
        balance_s = (cp.multiply(growth, held) + growth * debt + (upnl.sum() - pnl_now.sum(axis=1))
                     - x.times_isolated(upnl[None, :] - pnl_now, mine))
        slopes, intercepts = concave_pieces(slot)
        scale_caps = growth if not slot.usd_tiers and len(slot.ratios) > 1 else np.ones(n_s)
        value_now = cp.Variable(name=f"value now {bucket.label} {data.assets[slot.asset]}")
        value_s = cp.Variable(n_s, name=f"value in scenarios {bucket.label} {data.assets[slot.asset]}")
        cons += [value_now <= slot.liability_rate * balance_now, value_s <= slot.liability_rate * balance_s]
        for slope, icpt in zip(slopes, intercepts, strict=True):
            cons += [value_now <= slope * slot.bid * balance_now + icpt,
                     value_s <= slope * slot.bid * balance_s + icpt * scale_caps]
        equity = equity + value_now
        loss = loss + value_now - value_s
    return _Pool(equity, loss, cons)


def reachable_pieces(slot: Slot, reach: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The slot's concave haircut pieces (:func:`optimizer.problem.concave_pieces`) that can be active for a raw
    amount up to ``reach`` (scaled USD; None: any amount): a tier starting beyond it never binds, and the flat
    piece past the last cap only when the cap is within reach.  Exact on [0, reach]."""
    slopes, intercepts = concave_pieces(slot)
    if reach is None or not np.isfinite(reach):
        return slopes, intercepts
    keep = np.zeros(len(slopes), dtype=bool)
    keep[: len(slot.lows)] = slot.lows < reach
    keep[0] = True
    if len(slopes) > len(slot.lows):  # the flat piece
        keep[-1] = slot.lows[-1] + slot.widths[-1] < reach
    return slopes[keep], intercepts[keep]


def position_sum(data: ProblemData, x: Decision, pos: list[int], affine: np.ndarray | None, columns: np.ndarray,
                 name: str) -> cp.Expression:
    """Σ_p columns[:, p] · (1 − z_p) over the cross positions ``pos``, (S,).

    Directly this is an S × N matrix times the mode variables.  Positions whose column is affine in their price
    factor, α + β·x_f, are aggregated per factor: an auxiliary exposure e_f = Σ_p β_p (1 − z_p) and S × F rows,
    the same value exactly, far fewer non-zeros.
    """
    cross = 1 - x.isolated[pos]
    pos_arr = np.asarray(pos, dtype=int)

    def direct(cols: np.ndarray, which: np.ndarray) -> cp.Expression:
        return cols.sum(axis=1) - x.times_isolated(cols, pos_arr[which])

    if not data.aggregate or affine is None:
        return direct(columns, np.arange(len(pos)))
    rows = np.array([data.positions[p].index for p in pos])
    fit = affine[rows]
    ok = ~np.isnan(fit[:, 0])
    if len(np.unique(data.position_factor[rows[ok]])) >= ok.sum():  # one position per factor: nothing to gain
        return direct(columns, np.arange(len(pos)))
    out = 0.0
    if (~ok).any():
        out = direct(columns[:, ~ok], np.nonzero(~ok)[0])
    if ok.any():
        idx = np.nonzero(ok)[0]
        fac = data.position_factor[rows[idx]]
        used, local = np.unique(fac, return_inverse=True)
        exposure = cp.Variable(len(used), name=f"factor exposure {name}")
        beta = sparse.csr_array((fit[idx, 1], (local.ravel(), np.arange(len(idx)))), shape=(len(used), len(idx)))
        x.extra.append(exposure == beta @ cross[idx])
        out = out + fit[idx, 0] @ cross[idx] + data.factor_values[used].T @ exposure
    return out


def _pnl_loss(data: ProblemData, pos: list[int]) -> np.ndarray:
    """(S, n) scaled USD: each position's PnL loss in each scenario (its buffered term less k × its MM)."""
    rows = [data.positions[p].index for p in pos]
    return (data.loss[rows] - data.buffer * data.mm_path[rows]).T


def _cross_terms(data: ProblemData, x: Decision, b: int, slots: list[int], pos: list[int]) -> list[Term]:
    """Venue margin, initial margin, buffer and concentration of cross pool b (its ``slots`` and positions ``pos``)."""
    bucket = data.buckets[b]
    pool = _pool(data, x, b, slots, pos)
    equity = pool.equity
    out = []
    mm = np.array([data.positions[i].mm for i in pos])
    need = bucket.extra_mm + (mm.sum() - mm @ x.isolated[pos] if pos else 0.0)
    out.append(Term(f"venue margin {bucket.label}", "venue_margin", [equity >= need, *pool.constraints]))
    if data.policy.cross.require_initial_margin and pos:
        im = np.array([data.positions[i].im for i in pos])
        out.append(Term(f"initial margin {bucket.label}", "initial_margin",
                        [equity >= bucket.extra_mm + im.sum() - im @ x.isolated[pos]]))
    if data.normal is not None:
        out.append(_normal_buffer(data, x, b, slots, pos, equity, need))
        out.extend(_concentration(data, x, b, slots, pos))
        return out
    # buffer survival: equity >= rho_s(L_s + k MM_s), collateral repriced with the positions in every scenario
    r = data.returns
    counted = scenario_terms(data, x, b, pos, pool)
    if data.units:  # scanning risk: the worst counted term of each risk unit, summed over units
        # Σ_units max_s(E_now − E_s + k·MM_s) counts today's equity once per unit, so it does not cancel as it
        # does in one measure: an under-filled haircut slice (hv < H(v), which the slice model allows) would
        # lower the requirement.  Today's equity inside the terms is taken at the first tier's rate instead,
        # a linear upper bound of the concave haircut value (exact while holdings stay in the first tier).
        gap = _first_tier_gap(data, x, slots, pos)
        if gap is not None:
            counted = counted + gap
        worst = cp.Variable(len(data.units), nonneg=True, name=f"unit worst {bucket.label}")
        cons = [equity >= cp.sum(worst)]
        for j, (start, stop) in enumerate(data.units.values()):
            cons.append(worst[j] >= counted[start:stop])
    elif data.measure == "worst":
        cons = [equity >= counted]
    else:
        t = cp.Variable(name=f"var {bucket.label}")
        u = cp.Variable(r.shape[0], nonneg=True, name=f"excess {bucket.label}")
        cons = [u >= counted - t, equity >= t + x.knobs.tail * (data.probabilities @ u)]
    out.append(Term(f"buffer {bucket.label}", "buffer", cons))
    out.extend(_concentration(data, x, b, slots, pos))
    return out


def _first_tier_gap(data: ProblemData, x: Decision, slots: list[int], pos: list[int]) -> cp.Expression | None:
    """Σ over the pool's tiered collateral slots of (first-tier rate × bid × value − haircut value) >= 0, the
    amount by which the slice model may under-value today's equity; None when every slot is valued linearly.
    Settle slots that carry their positions' PnL inside the haircut are valued by their own hypograph."""
    settles = {data.positions[i].settle for i in pos}
    tiered = [i for i in slots if len(data.slots[i].ratios) > 1
              and not (data.slots[i].asset in settles and not data.slots[i].plain)]
    if not tiered:
        return None
    rate = np.array([data.slots[i].ratios[0] * data.slots[i].bid for i in tiered])
    return rate @ x.value[tiered] - cp.sum(x.haircut_value[tiered])


def scenario_terms(data: ProblemData, x: Decision, b: int, pos: list[int], pool: _Pool) -> cp.Expression:
    """(S,) the counted buffer term cover_s · (L_s + k·MM_s) of cross pool b in every scenario of ``data``."""
    bucket = data.buckets[b]
    n_s = data.returns.shape[0]
    mm_s = bucket.extra_mm_path if bucket.extra_mm_path is not None else np.full(n_s, bucket.extra_mm)
    k = x.knobs.buffer
    scen = pool.loss + k * mm_s
    if pos:
        mms = data.mm_path[[data.positions[i].index for i in pos]].T  # (S, n)
        scen = scen + k * position_sum(data, x, pos, data.mm_affine, mms, f"mm {b}")
    cover = data.cover
    return scen if np.all(cover == 1) else sparse.diags(cover) @ scen


def evaluate_pools(data: ProblemData, x: Decision) -> tuple[np.ndarray, np.ndarray]:
    """The same expressions evaluated numerically at a solved Decision: every cross pool's counted buffer terms
    over all scenarios of ``data`` (n_cross, S) and its equity now (n_cross,), scaled USD.

    ``x`` may come from a problem over fewer scenarios (its variables are the same): the pools are rebuilt over
    ``data`` and their auxiliary variables take the values their definitions force — a hypograph variable the
    minimum of its upper bounds, an exposure its defining sum — so this is the formulation's own numpy face.
    """
    probe = replace(x, extra=[])
    terms, equity = [], []
    slots_of, pos_of = _members(data)
    for b, bucket in enumerate(data.buckets):
        if bucket.position is not None:
            continue
        pos = pos_of.get(b, [])
        pool = _pool(data, probe, b, slots_of.get(b, []), pos)
        _settle_auxiliaries(pool.constraints)
        scen = scenario_terms(data, probe, b, pos, pool)
        _settle_auxiliaries(probe.extra)
        probe.extra.clear()
        terms.append(np.broadcast_to(np.asarray(scen.value, dtype=float), (data.returns.shape[0],)))
        equity.append(float(pool.equity.value))
    return np.array(terms).reshape(len(terms), data.returns.shape[0]), np.array(equity)


def _settle_auxiliaries(constraints: list[cp.Constraint]) -> None:
    """Give each auxiliary variable the value its constraints force: ``v <= e`` (hypographs) the elementwise
    minimum of the bounds e, ``v == e`` (definitions) e."""
    bounds: dict[int, tuple[cp.Variable, np.ndarray]] = {}
    for con in constraints:
        lhs, rhs = con.args
        if not isinstance(lhs, cp.Variable):
            continue
        value = np.asarray(rhs.value, dtype=float)
        if isinstance(con, cp.constraints.Equality):
            lhs.value = np.broadcast_to(value, lhs.shape).copy() if lhs.shape else float(value)
            continue
        prev = bounds.get(lhs.id)
        bounds[lhs.id] = (lhs, value if prev is None else np.minimum(prev[1], value))
    for var, value in bounds.values():
        var.value = np.broadcast_to(value, var.shape).copy() if var.shape else float(value)


def _concentration(data: ProblemData, x: Decision, b: int, slots: list[int], pos: list[int]) -> list[Term]:
    bucket = data.buckets[b]
    out: list[Term] = []
    # concentration of one non-settle asset in the pool's raw collateral value, net of new loans (a loan kept
    # in the pool as collateral adds nothing; counted gross it would dilute the limit)
    total = cp.sum(x.net()[slots]) if slots else 0.0
    settles = {data.positions[i].settle for i in pos}
    for i in slots:
        asset = data.assets[data.slots[i].asset]
        limit = None if data.slots[i].asset in settles else data.policy.concentration.get(asset)
        if limit is not None:
            out.append(Term(f"concentration {bucket.label} {asset}", "concentration", [x.value[i] <= limit * total]))
    return out


def _normal_buffer(data: ProblemData, x: Decision, b: int, slots: list[int], pos: list[int], equity: cp.Expression,
                   need: cp.Expression | float) -> Term:
    """Delta-normal buffer survival E_b >= c·√h·‖Fᵀδ_b‖ + k·MM_b (risk_models.delta_normal), δ_b the pool's USD
    exposure per unit return: each slot's haircut value on its asset (linear: USD-capped tiers are held to their
    first slice), existing and new loans, and the cross positions' deltas.  With ``x.cuts`` the cone is replaced
    by its outer approximation c·uᵀFᵀδ_b for the given unit directions u (the MILP master of
    :func:`optimizer.solve.solve_conic`)."""
    assert data.normal is not None
    nm = data.normal
    bucket = data.buckets[b]
    g = nm.factor.T  # (r, M)
    rows = nm.asset_row
    cons: list[cp.Constraint] = []
    sigma: cp.Expression = cp.Constant(np.zeros(g.shape[0]))
    if slots:
        cols = g[:, rows[[data.slots[i].asset for i in slots]]]
        sigma = sigma + cols @ x.haircut_value[slots]
        for i in slots:
            slot = data.slots[i]
            if slot.usd_tiers:  # beyond the first slice the value is not linear in the price: stay within it
                cons.append(slot.bid * x.value[i] <= slot.widths[0])
    for asset, debt in bucket.debts:
        sigma = sigma + g[:, rows[asset]] * debt
    loan_set = _loan_set(data) if x.borrowed is not None else set()
    loans = [i for i in slots if i in loan_set]
    if loans:
        owed = cp.multiply(np.array([data.slots[i].liability_rate for i in loans]), x.borrowed[loans])
        sigma = sigma - g[:, rows[[data.slots[i].asset for i in loans]]] @ owed
    if pos:
        d = nm.deltas[[data.positions[i].index for i in pos]]  # (n, M)
        sigma = sigma + (g @ d.T) @ (1 - x.isolated[pos])
    x.sigma[b] = sigma
    k = x.knobs.buffer
    if x.cuts is None:
        cons.append(equity >= nm.multiplier * cp.norm(sigma, 2) + k * need)
    else:
        directions = x.cuts.get(b)
        if directions is not None and len(directions):
            cons.append(equity >= nm.multiplier * (directions @ sigma) + k * need)
        else:
            cons.append(equity >= k * need)
    return Term(f"buffer {bucket.label}", "buffer", cons[::-1])


def objective(data: ProblemData, x: Decision) -> tuple[cp.Expression, dict[str, cp.Expression]]:
    """The policy's objective (scaled USD over the carry horizon) and its parts."""
    pol = data.policy
    locked = cp.sum(x.value)
    parts: dict[str, cp.Expression] = {
        "carry": x.knobs.yields @ x.value,
        "transfers": pol.transfer_cost_bps / 1e4 * (cp.sum(x.inflow) + cp.sum(x.outflow)),
    }
    idle = 0.0  # a tie-break of 1e-9 × borrowed USD keeps loans that buy nothing at zero
    if x.borrow is not None:  # rate × borrowed USD over the carry horizon
        parts["borrowing"] = (data.loan_rates * pol.carry_horizon_days / 365.0) @ x.borrow
        idle = 1e-9 * cp.sum(x.borrow)
    switch = [(i, p) for i, p in enumerate(data.positions) if p.close_reopen and not p.fixed]
    if switch:
        cost = np.array([pol.mode_switch_cost_bps / 1e4 * p.notional for _, p in switch])
        now = np.array([1.0 if p.isolated_now else 0.0 for _, p in switch])
        idx = [i for i, _ in switch]
        # |z − z0| is linear because z0 is known: z when now cross, 1 − z when now isolated
        parts["mode switches"] = cost @ (now + cp.multiply(1 - 2 * now, x.isolated[idx]))
    if pol.objective == "locked_value":
        return locked + 1e-9 * (cp.sum(x.inflow) + cp.sum(x.outflow)) + idle, parts
    cost = parts["carry"] + parts["transfers"] + parts.get("mode switches", 0.0) + parts.get("borrowing", 0.0)
    return cost + 1e-9 * locked + idle, parts
