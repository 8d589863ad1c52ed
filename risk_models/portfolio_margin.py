"""Net portfolio margin of every margin bucket (architecture: R_b = ρ_s(L_{b,s} + k·MM_{b,s})), with attribution.

L_{b,s} is the bucket's equity now minus its equity in scenario s, positions *and collateral* repriced together
(haircut values at shocked prices); MM_{b,s} the venue maintenance margin at the shocked prices; k the buffer;
ρ expected shortfall at confidence α or the worst case (cover fractions applied).  Amounts in USD.

Attribution: in the tail scenarios that define ρ (weights q_s), each position's and each collateral asset's term
is averaged; the terms of one scenario sum exactly to L_s + k·MM_s, so the contributions sum exactly to R_b.
A position's term is its PnL change valued at its settle holding's realised value rate plus k × its own MM;
a collateral asset's term is its price-only value change (and any non-linear remainder of its holding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compiled import CompiledBook
from .measures import RiskMeasure
from .revaluation import DEFAULT_PEGGED, Revaluation, growth_matrix, revalue
from .scenarios import ScenarioSet
from .venue_margin import MarginState, holding_value, maintenance_settle, settle_notional, unrealized_pnl

N_WORST = 5


@dataclass(frozen=True)
class BucketRisk:
    """Risk of one margin bucket under one scenario set.  USD."""

    bucket: int
    net_portfolio_margin: float
    stressed_equity: float
    standalone_margin: float | None = None
    diversification_benefit: float | None = None
    contributions: dict[str, float] = field(default_factory=dict)
    worst_scenarios: list[tuple[str, float]] = field(default_factory=list)


def portfolio_margin(cb: CompiledBook, state: MarginState, scenarios: ScenarioSet, measure: RiskMeasure,
                     buffer: float = 1.0, pegged: tuple[str, ...] = DEFAULT_PEGGED,
                     attribution: bool = True, mm_at_current: bool = False) -> list[BucketRisk]:
    """R_b, stressed equity and (optionally) attribution for every bucket of ``cb``.

    ``mm_at_current``: use today's maintenance margin for MM_s (the parametric model, spec §5).  A grid set
    (``meta["units"]``: asset → scenario range) is measured per risk unit and summed (no inter-unit credit).
    """
    growth = growth_matrix(cb, scenarios, pegged)
    rv = revalue(cb, growth)
    p, cover = scenarios.probabilities, scenarios.coverage
    loss = state.equity[:, None] - rv.equity
    mm = state.maintenance[:, None] if mm_at_current else rv.maintenance
    term = loss + buffer * mm
    units = scenarios.meta.get("units")
    if units:
        return [_per_unit(b, term[b], loss[b], state.equity[b], scenarios, units) for b in range(cb.n_buckets)]
    out = []
    for b in range(cb.n_buckets):
        r_b = measure.evaluate(term[b], p, cover)
        stressed = float(state.equity[b] - measure.evaluate(loss[b], p, cover))
        worst = np.argsort(-(cover * loss[b]), kind="stable")[:N_WORST]
        risk = BucketRisk(b, float(r_b), stressed,
                          worst_scenarios=[(scenarios.labels[s], float(cover[s] * loss[b, s])) for s in worst])
        if attribution:
            risk = _attribute(cb, state, scenarios, measure, buffer, growth, rv, risk, term[b])
        out.append(risk)
    return out


def _per_unit(b: int, term: np.ndarray, loss: np.ndarray, equity: float, scenarios: ScenarioSet,
              units: dict) -> BucketRisk:
    """Scanning risk: the worst counted term of each risk unit's own scenarios, summed over units."""
    cover = scenarios.coverage
    total = stressed = 0.0
    contributions = {}
    worst = []
    for asset, (start, stop) in units.items():
        t = cover[start:stop] * term[start:stop]
        k = int(np.argmax(t))
        contributions[f"unit:{asset}"] = max(float(t[k]), 0.0)
        total += contributions[f"unit:{asset}"]
        stressed += max(float(np.max(cover[start:stop] * loss[start:stop])), 0.0)
        worst.append((scenarios.labels[start + k], float(cover[start + k] * loss[start + k])))
    worst.sort(key=lambda w: -w[1])
    return BucketRisk(b, total, equity - stressed, total, 0.0, contributions, worst[:N_WORST])


def _attribute(cb: CompiledBook, state: MarginState, scenarios: ScenarioSet, measure: RiskMeasure, buffer: float,
               growth: np.ndarray, rv: Revaluation, risk: BucketRisk, term: np.ndarray) -> BucketRisk:
    """Component contributions over the tail scenarios and the standalone (undiversified) margin."""
    b = risk.bucket
    pa, ha = cb.positions, cb.holdings
    p, cover = scenarios.probabilities, scenarios.coverage
    pos = np.nonzero(pa.bucket == b)[0]
    hold = np.nonzero(ha.bucket == b)[0]
    items = _item_terms(cb, state, growth, rv, pos, hold, buffer)
    q = measure.weights(term, p, cover)
    contributions = {name: float(np.sum(q * cover * t)) for name, t in items.items()}
    # standalone: each position with its own settle-price PnL and margin, each collateral asset alone
    alone = _standalone_terms(cb, state, growth, rv, pos, hold, buffer)
    standalone = float(sum(measure.evaluate(t, p, cover) for t in alone.values()))
    return BucketRisk(b, risk.net_portfolio_margin, risk.stressed_equity, standalone,
                      standalone - risk.net_portfolio_margin, contributions, risk.worst_scenarios)


def _position_paths(cb: CompiledBook, growth: np.ndarray, rv: Revaluation, pos: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PnL change (settle units, loss positive), MM (USD) and settle price (USD) of positions ``pos``, (n, S)."""
    pa = cb.positions
    sub = pa.take(pos)
    x = rv.factor_values[rv.factors.of_position[pos]]
    mark = sub.mark[:, None] * x
    settle_price = cb.prices[sub.settle][:, None] * growth[sub.settle]
    d_pnl = unrealized_pnl(sub, sub.mark)[:, None] - unrealized_pnl(sub, mark)
    mm = maintenance_settle(sub, settle_notional(sub, mark)) * settle_price * sub.ask_settle[:, None]
    return d_pnl, mm, settle_price


def _item_terms(cb: CompiledBook, state: MarginState, growth: np.ndarray, rv: Revaluation, pos: np.ndarray,
                hold: np.ndarray, buffer: float) -> dict[str, np.ndarray]:
    """Per position and collateral asset, its share of L_s + k·MM_s in every scenario (exact sum)."""
    pa, ha = cb.positions, cb.holdings
    d_pnl, mm, _ = _position_paths(cb, growth, rv, pos)
    d_value = state.holding_value[hold][:, None] - rv.holding_value[hold]
    price_only = state.holding_value[hold][:, None] - holding_value(
        ha.take(hold), np.broadcast_to(state.holding_equity[hold][:, None], rv.holding_price[hold].shape),
        rv.holding_price[hold])
    local = {int(h): i for i, h in enumerate(hold)}
    row = np.array([local[int(h)] for h in pa.hold[pos]], dtype=int)
    pnl_sum = np.zeros_like(d_value)
    np.add.at(pnl_sum, row, d_pnl)
    residual = d_value - price_only
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(np.abs(pnl_sum) > 1e-12 * (np.abs(d_value) + 1.0), residual / pnl_sum, 0.0)
    terms: dict[str, np.ndarray] = {}
    assigned = np.zeros_like(d_value)
    matrix_mm = _matrix_shares(cb, pos, growth)
    for i, p in enumerate(pos):
        share = d_pnl[i] * rate[row[i]]
        np.add.at(assigned, row[i], share)
        terms[cb.position_keys[p][2]] = share + buffer * (mm[i] + matrix_mm[i])
    for i, h in enumerate(hold):
        key = f"collateral:{cb.assets[ha.asset[h]]}"
        terms[key] = terms.get(key, 0.0) + price_only[i] + (residual[i] - assigned[i])
    return terms


def _matrix_shares(cb: CompiledBook, pos: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """A portfolio-margined bucket's netted requirement in each scenario (USD), shared among its positions in
    proportion to their requirement alone: (n, S)."""
    if not pos.size:
        return np.zeros((0, growth.shape[1]))
    bucket = cb.positions.bucket[pos[0]]
    path = cb.units.bucket_maintenance(growth, cb.n_buckets)[bucket]
    alone = np.nan_to_num(cb.standalone_mm_settle[pos])
    total = alone.sum()
    weights = alone / total if total > 0 else np.zeros(pos.size)
    return weights[:, None] * path[None, :]


def _alone_matrix_mm(cb: CompiledBook, pos: np.ndarray) -> np.ndarray:
    """Each risk-matrix position's margin alone in USD (0 for bracket positions)."""
    pa = cb.positions
    return np.nan_to_num(cb.standalone_mm_settle[pos]) * cb.prices[pa.settle[pos]] * pa.ask_settle[pos]


def _standalone_terms(cb: CompiledBook, state: MarginState, growth: np.ndarray, rv: Revaluation, pos: np.ndarray,
                      hold: np.ndarray, buffer: float) -> dict[str, np.ndarray]:
    ha = cb.holdings
    d_pnl, mm, settle_price = _position_paths(cb, growth, rv, pos)
    matrix_mm = _alone_matrix_mm(cb, pos)
    terms = {cb.position_keys[p][2]: d_pnl[i] * settle_price[i] + buffer * (mm[i] + matrix_mm[i])
             for i, p in enumerate(pos)}
    for h in hold:
        value0 = state.holding_value[h]
        shocked = holding_value(ha.take(np.array([h])), np.full((1, rv.holding_price.shape[1]),
                                                                 state.holding_equity[h]), rv.holding_price[[h]])[0]
        key = f"collateral:{cb.assets[ha.asset[h]]}"
        terms[key] = terms.get(key, 0.0) + (value0 - shocked)
    return terms
