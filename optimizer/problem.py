"""The optimizer's data: everything the formulation needs, in USD normalized by one scale, numpy only.

Built from a compiled book, its venue margin now, the policy and a scenario set.  Amounts are USD divided by
``scale`` (the desk's total raw capital), so that a 1e9 USD book and a 1e-4 BTC book give the solver numbers of
the same order.  Decision quantities are USD values of asset holdings (value = units × price).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from risk_models.compiled import CompiledBook
from risk_models.delta_normal import normal_model_of, position_deltas
from risk_models.errors import InputError, RiskModelError
from risk_models.loading import LoadedBook
from risk_models.revaluation import POSITION_BLOCK_ELEMENTS, book_factors, position_scenarios
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from risk_models.unit_margin import UnitMargins, UnitMember, build_units
from risk_models.venue_margin import MarginState, maintenance_settle, settle_notional, unrealized_pnl


@dataclass(frozen=True)
class Slot:
    """One (bucket, asset) place where value can be held: its haircut slices (USD, scaled) and current value."""

    bucket: int
    asset: int
    bid: float
    lows: np.ndarray
    widths: np.ndarray
    ratios: np.ndarray
    current: float  # scaled USD value held now
    usd_tiers: bool = False  # caps in USD: the haircut does not scale with the price (repriced exactly)
    liability_rate: float = 1.0  # ask rate × liability weight: how a negative balance counts

    @property
    def plain(self) -> bool:
        """Valued at exactly 100 % on both sides: unrealized PnL can be added outside the haircut."""
        return (self.bid == 1.0 and self.liability_rate == 1.0 and len(self.ratios) == 1 and self.ratios[0] == 1.0
                and not np.isfinite(self.widths[0]))


def concave_pieces(slot: Slot) -> tuple[np.ndarray, np.ndarray]:
    """The haircut value H(x) = Σ ratio_k clip(x − low_k, 0, width_k) as min_k(slope_k x + intercept_k), x the raw
    (bid-adjusted) USD amount: slope ratio_k, intercept Σ_{j<k} ratio_j width_j − ratio_k low_k; a finite last
    cap adds a flat piece."""
    slopes, intercepts = [], []
    below = 0.0
    for low, width, ratio in zip(slot.lows, slot.widths, slot.ratios, strict=True):
        slopes.append(ratio)
        intercepts.append(below - ratio * low)
        below += ratio * width if np.isfinite(width) else 0.0
    if np.isfinite(slot.widths[-1]):
        slopes.append(0.0)
        intercepts.append(below)
    return np.array(slopes), np.array(intercepts)


@dataclass(frozen=True)
class BucketSpec:
    """A cross pool (``position`` None) or the isolated bucket of one position."""

    venue: str
    account: str
    position: int | None
    label: str
    debts: tuple[tuple[int, float], ...] = ()  # (asset, scaled USD, negative): existing loans, kept as they are
    extra_mm: float = 0.0  # scaled USD: a portfolio-margined venue's netted requirement now
    extra_mm_path: np.ndarray | None = None  # (S,) scaled USD: the same in every scenario


@dataclass(frozen=True)
class PositionSpec:
    index: int  # row in the compiled book
    symbol: str
    cross_bucket: int
    iso_bucket: int  # -1 when the position can never be isolated
    settle: int  # asset index
    isolated_now: bool
    fixed: bool  # the margin mode may not change (pinned, contract forbids isolation, risk-matrix venue)
    close_reopen: bool
    notional: float  # scaled USD
    upnl: float  # scaled USD now
    mm: float  # scaled USD now
    im: float
    iso_need: float  # scaled USD of isolated margin needed (venue MM and the liquidation-distance rule)


@dataclass(frozen=True)
class NormalTerms:
    """The delta-normal buffer (risk_models.delta_normal) in the optimizer's units: a pool's loss is
    ``multiplier · ‖factorᵀ δ_b‖`` with δ_b its USD exposure per unit return of each asset (scaled)."""

    factor: np.ndarray  # (M, r) F with F Fᵀ = Σ over the book's M assets (underlyings included)
    multiplier: float  # c·√h
    deltas: np.ndarray  # (P, M) scaled USD: each compiled position's exposure (risk_models.position_deltas)
    asset_row: np.ndarray  # (A,) row of each of ProblemData.assets in the factor


@dataclass(frozen=True)
class ProblemData:
    scale: float
    assets: list[str]
    prices: np.ndarray  # (A,) USD
    holdings: np.ndarray  # (A,) scaled USD of every positive holding (venues and wallet)
    wallet_now: np.ndarray  # (A,) scaled USD
    buckets: list[BucketSpec]
    slots: list[Slot]
    positions: list[PositionSpec]
    returns: np.ndarray  # (S, A) scenario returns of the assets
    probabilities: np.ndarray
    cover: np.ndarray
    loss: np.ndarray  # (P, S) scaled USD: buffer-weighted term of each position alone, L + k·MM
    mm_path: np.ndarray  # (P, S) scaled USD: each position's maintenance margin in every scenario (cross side)
    measure: str
    alpha: float
    buffer: float
    policy: Policy
    venue_of_bucket: list[str] = field(default_factory=list)
    multi_asset_exclusive: dict[tuple[str, str], bool] = field(default_factory=dict)
    total_capital: float = 0.0  # scaled USD (raw, everything)
    units: dict[str, tuple[int, int]] | None = None  # grid sets: risk unit → scenario range (per-unit worst)
    factor_values: np.ndarray | None = None  # (F, S) price factor of every scenario (x = 1 + r, see revaluation)
    position_factor: np.ndarray | None = None  # (P,) factor of each compiled position
    pnl_affine: np.ndarray | None = None  # (P, 2) α, β with PnL loss = α + β·x (nan: not affine over the set)
    mm_affine: np.ndarray | None = None  # (P, 2) the same for the scenario maintenance margin
    aggregate: bool = True  # scenario rows over factors (S × F) instead of positions (S × N)
    normal: NormalTerms | None = None  # the closed-form delta-normal buffer (a second-order cone) instead of rows
    loan_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # cross slots taking new loans
    loan_rates: np.ndarray = field(default_factory=lambda: np.zeros(0))  # annual borrow rate of each loan slot
    loan_cap: float = 0.0  # scaled USD: the largest new loan in one slot (and the big-M of Multi-Assets mode)
    slot_reach: np.ndarray | None = None  # (n_slots,) scaled USD: the most a slot can hold (None: unbounded)


def build_problem(loaded: LoadedBook, cb: CompiledBook, state: MarginState, policy: Policy,
                  scenarios: ScenarioSet) -> ProblemData:
    """Collect the optimizer's data from the book, its rules, the policy and the scenario set."""
    book = loaded.book
    if normal_model_of(scenarios, policy.risk_model.method) is not None:
        # the delta-normal cone needs the covariance, not the draws: the pools are valued in one scenario only
        scenarios = replace(scenarios, returns=scenarios.returns[:1], labels=scenarios.labels[:1], weights=None,
                            cover=None, vol_shocks=None if scenarios.vol_shocks is None else scenarios.vol_shocks[:1])
    pegged = tuple(policy.risk_model.pegged)
    held = set(book.wallet)
    for venue in book.venues.values():
        for account in venue.accounts.values():
            held |= set(account.collateral)
    held |= set(cb.position_settle_names)
    held |= _borrowable(loaded, policy)
    assets = sorted(held)
    aidx = {a: i for i, a in enumerate(assets)}
    prices = np.array([book.prices[a] for a in assets])
    raw_total = sum(max(v, 0.0) * book.prices[a] for a, v in book.wallet.items())
    for venue_id, venue in book.venues.items():
        contracts = loaded.rules[venue_id].rules.contracts
        for account in venue.accounts.values():
            raw_total += sum(max(v, 0.0) * book.prices[a] for a, v in account.collateral.items())
            raw_total += sum((p.isolated_margin or 0.0) * book.prices[contracts[p.symbol].settle]
                             for p in account.positions if p.margin_mode == "isolated")
    scale = raw_total if raw_total > 0 else 1.0

    growth = scenarios.growth_of(cb.assets, pegged)
    paths = position_scenarios(cb, growth)
    unit_paths = cb.units.bucket_maintenance(growth, cb.n_buckets) / scale
    k = policy.cross.buffer
    # cross-side figures use the cross pool's ask rate whatever the position's mode is now
    ask_factor = np.ones(len(cb.positions))

    holdings = np.zeros(len(assets))
    wallet_now = np.zeros(len(assets))
    for a, v in book.wallet.items():
        wallet_now[aidx[a]] += max(v, 0.0) * book.prices[a] / scale
    holdings += wallet_now

    buckets: list[BucketSpec] = []
    slots: list[Slot] = []
    positions: list[PositionSpec] = []
    loan_slots: list[int] = []
    venue_of_bucket: list[str] = []
    exclusive: dict[tuple[str, str], bool] = {}
    d = policy.isolated.liquidation_distance
    pa = cb.positions
    row_of = {key: i for i, key in enumerate(cb.position_keys)}
    for venue_id, venue in book.venues.items():
        rules = loaded.rules[venue_id].rules
        matrix = rules.margin_model is not None
        for account_id, account in venue.accounts.items():
            cross = len(buckets)
            debts = tuple((aidx[a], v * book.prices[a] * _ask(rules, a) / scale)
                          for a, v in account.collateral.items() if v < 0)
            cross_row = next(i for i, b in enumerate(cb.buckets)
                             if (b.venue, b.account, b.symbol) == (venue_id, account_id, None))
            extra = cb.bucket_extra_mm[cross_row] / scale
            buckets.append(BucketSpec(venue_id, account_id, None, f"{venue_id}/{account_id}/cross", debts, extra,
                                      unit_paths[cross_row]))
            venue_of_bucket.append(venue_id)
            exclusive[(venue_id, account_id)] = not rules.isolated_with_multi_asset
            for asset in assets:
                rule = rules.collateral_rule(asset)
                if rule is None:
                    continue
                now = max(account.collateral.get(asset, 0.0), 0.0) * book.prices[asset] / scale
                holdings[aidx[asset]] += now
                if asset in policy.borrow_rates and rule.size_discount_k == 0:
                    loan_slots.append(len(slots))
                slots.append(_slot(cross, aidx[asset], rule, book.prices[asset], scale, now))
            for p in account.positions:
                i = row_of[(venue_id, account_id, p.symbol)]
                c = rules.contracts[p.symbol]
                fixed = p.pinned or not c.isolated_allowed or matrix
                iso_bucket = -1
                if not fixed or p.margin_mode == "isolated":
                    iso_bucket = len(buckets)
                    buckets.append(BucketSpec(venue_id, account_id, i, f"{venue_id}/{account_id}/isolated/{p.symbol}"))
                    venue_of_bucket.append(venue_id)
                    now = (p.isolated_margin or 0.0) * book.prices[c.settle] / scale if p.margin_mode == "isolated" \
                        else 0.0
                    holdings[aidx[c.settle]] += now
                    slots.append(Slot(iso_bucket, aidx[c.settle], 1.0, np.zeros(1), np.array([math.inf]),
                                      np.ones(1), now))
                cross_rule = rules.collateral_rule(c.settle)
                ask_factor[i] = (cross_rule.ask_rate if cross_rule else 1.0) / pa.ask_settle[i]
                positions.append(PositionSpec(
                    index=i, symbol=p.symbol, cross_bucket=cross, iso_bucket=iso_bucket, settle=aidx[c.settle],
                    isolated_now=p.margin_mode == "isolated", fixed=fixed,
                    close_reopen=rules.mode_switch == "close_reopen",
                    notional=float(state.terms.notional_usd[i]) / scale,
                    upnl=float(state.terms.pnl_settle[i] * cb.prices[pa.settle[i]]) / scale,
                    mm=float(state.terms.mm_usd[i] * ask_factor[i]) / scale,
                    im=float(state.terms.im_usd[i] * ask_factor[i]) / scale,
                    iso_need=isolated_need(cb, i, d, alone_unit(cb, loaded, venue_id, i)) / scale,
                ))
    # (P, S) arrays, built in place: at thousands of positions × tens of thousands of scenarios each is GiBs
    mm_path = paths.maintenance
    mm_path *= ask_factor[:, None] / scale
    loss = paths.loss
    loss /= scale
    factors = book_factors(cb)
    x = factors.values(growth)
    pnl_affine = mm_affine = None
    if _shared_factors(positions, factors.of_position):  # aggregation per factor can remove columns
        pnl_affine, mm_affine = affine_fit(loss, x, factors.of_position), affine_fit(mm_path, x, factors.of_position)
    step = max(1, POSITION_BLOCK_ELEMENTS // max(loss.shape[1], 1))
    for start in range(0, loss.shape[0], step):  # the buffered term L + k·MM of each position alone, in blocks
        loss[start:start + step] += k * mm_path[start:start + step]
    r = scenarios.returns_of(assets, pegged)
    loan_rates = np.array([policy.borrow_rates[assets[slots[i].asset]] for i in loan_slots])
    _check_no_arbitrage(policy, [assets[slots[i].asset] for i in loan_slots])
    gross_notional = sum(p.notional for p in positions)
    loan_cap = LOAN_CAP_FACTOR * (float(holdings.sum()) + gross_notional) if loan_slots else 0.0
    # conservation bounds every slot by what the desk holds of its asset plus every new loan of it
    loans_of = np.bincount(np.array([slots[i].asset for i in loan_slots], dtype=int), minlength=len(assets))
    reach = holdings + loan_cap * loans_of
    normal = _normal_terms(loaded, cb, policy, scenarios, assets, buckets, slots, positions, scale)
    return ProblemData(
        normal=normal,
        scale=scale, assets=assets, prices=prices, holdings=holdings, wallet_now=wallet_now, buckets=buckets,
        slots=slots, positions=positions, returns=r, probabilities=scenarios.probabilities,
        cover=scenarios.coverage, loss=loss, mm_path=mm_path,
        measure="worst" if scenarios.meta.get("units") else policy.risk_model.measure,
        units=scenarios.meta.get("units") or None, factor_values=x, position_factor=factors.of_position,
        pnl_affine=pnl_affine, mm_affine=mm_affine,
        alpha=policy.risk_model.confidence, buffer=k, policy=policy, venue_of_bucket=venue_of_bucket,
        multi_asset_exclusive=exclusive, total_capital=float(holdings.sum()),
        loan_slots=np.array(loan_slots, dtype=int), loan_rates=loan_rates,
        loan_cap=loan_cap, slot_reach=np.array([reach[sl.asset] for sl in slots]),
    )


LOAN_CAP_FACTOR = 10.0
"""One new loan is at most this multiple of the desk's own capital plus its gross notional (USD): far above any
loan that funds a requirement, and a finite big-M for the Multi-Assets switch."""


def _borrowable(loaded: LoadedBook, policy: Policy) -> set[str]:
    """Assets named in ``borrow_rates`` that the book prices and some cross pool accepts with a linear liability
    (no ``size_discount_k``): they need a place in the problem even when the desk holds none."""
    book = loaded.book
    out = set()
    for asset in policy.borrow_rates:
        rules = [loaded.rules[v].rules.collateral_rule(asset) for v, venue in book.venues.items() if venue.accounts]
        if asset in book.prices and any(r is not None and r.size_discount_k == 0 for r in rules):
            out.add(asset)
    return out


def _check_no_arbitrage(policy: Policy, borrowed: list[str]) -> None:
    """A loan posted straight back as collateral costs (yield + borrow rate) × value: a negative sum would pay the
    desk to borrow without limit."""
    if policy.objective != "carry_cost":
        return
    for asset in sorted(set(borrowed)):
        rate, earned = policy.borrow_rates[asset], policy.yields.get(asset, 0.0)
        if earned + rate < 0:
            raise InputError("policy", f"borrow_rates.{asset}",
                             f"posting {asset} earns {-earned:g} a year but borrowing it costs only {rate:g}: the "
                             "optimizer would borrow without limit",
                             f"set borrow_rates.{asset} to at least {-earned:g}, or remove {asset} from borrow_rates")


def _normal_terms(loaded: LoadedBook, cb: CompiledBook, policy: Policy, scenarios: ScenarioSet, assets: list[str],
                  buckets: list[BucketSpec], slots: list[Slot], positions: list[PositionSpec], scale: float
                  ) -> NormalTerms | None:
    """The delta-normal data, or None for scenario models.  The cone holds pool equity linear in the holdings, so
    a settle asset that carries its positions' PnL inside a haircut (bid/ask rates or tiers) is refused."""
    model = normal_model_of(scenarios, policy.risk_model.method)
    if model is None:
        return None
    for i, slot in enumerate(slots):
        bucket = buckets[slot.bucket]
        if bucket.position is not None or slot.plain:
            continue
        if any(p.cross_bucket == slot.bucket and p.settle == slot.asset for p in positions):
            raise RiskModelError(
                f"{bucket.label}: {assets[slot.asset]} settles positions and is valued with a haircut or bid/ask "
                f"rates, which the delta-normal cone cannot hold linearly (slot {i})",
                "use risk_model.method: monte_carlo for this book")
    index = {a: i for i, a in enumerate(cb.assets)}
    missing = [a for a in assets if a not in index]
    if missing:
        raise RiskModelError(f"assets {missing} are held but not priced in the compiled book", "add their prices")
    return NormalTerms(model.factor_for(cb.assets), model.multiplier, position_deltas(cb) / scale,
                       np.array([index[a] for a in assets], dtype=int))


def _shared_factors(positions: list[PositionSpec], of_position: np.ndarray) -> bool:
    """Whether some cross pool holds two positions on one price factor (only then can rows be aggregated)."""
    seen: set[tuple[int, int]] = set()
    for p in positions:
        key = (p.cross_bucket, int(of_position[p.index]))
        if key in seen:
            return True
        seen.add(key)
    return False


def affine_fit(values: np.ndarray, x: np.ndarray, of_row: np.ndarray | None = None, tol: float = 1e-10
               ) -> np.ndarray:
    """Per row, (α, β) with values = α + β·x exactly (to ``tol`` of the row's scale), else (nan, nan); row i's x is
    ``x[of_row[i]]`` (its price factor), or ``x[i]`` without ``of_row``.  Rows are fitted in blocks, so that no
    temporary is as large as ``values``.

    Most positions' PnL and maintenance margin are affine in their factor over a whole scenario set (no tier
    changes within the moves): the optimizer then needs one scenario row per factor, not per position.
    """
    n_rows, n_s = values.shape
    out = np.full((n_rows, 2), np.nan)
    if n_s == 0:
        return out
    step = max(1, POSITION_BLOCK_ELEMENTS // n_s)
    for start in range(0, n_rows, step):
        rows = np.arange(start, min(start + step, n_rows))
        v = np.asarray(values[rows])
        xb = x[of_row[rows]] if of_row is not None else x[rows]
        xm = xb.mean(axis=1, keepdims=True)
        dx = xb - xm
        var = (dx * dx).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(var > 0, (dx * (v - v.mean(axis=1, keepdims=True))).sum(axis=1) / var, 0.0)
        alpha = v.mean(axis=1) - beta * xm[:, 0]
        resid = np.abs(v - alpha[:, None] - beta[:, None] * xb).max(axis=1)
        scale = np.abs(v).max(axis=1) + np.abs(beta) * np.abs(xb).max(axis=1) + 1e-300
        ok = resid <= tol * scale
        out[rows[ok], 0], out[rows[ok], 1] = alpha[ok], beta[ok]
    return out


def alone_unit(cb: CompiledBook, loaded: LoadedBook, venue_id: str, p: int) -> UnitMargins | None:
    """The venue's portfolio margin of position p alone, when its venue has a margin model."""
    rules = loaded.rules[venue_id].rules
    if rules.margin_model is None:
        return None
    pa = cb.positions
    c = rules.contracts[cb.position_keys[p][2]]
    member = UnitMember(row=p, bucket=0, underlying=int(pa.underlying[p]), name=c.underlying,
                        inverse=c.kind == "inverse", size=float(pa.qty[p] * pa.contract_size[p]),
                        mark=float(pa.mark[p]), settle_price=float(cb.prices[pa.settle[p]]),
                        underlying_price=float(cb.prices[pa.underlying[p]]), ask=1.0, model=rules.margin_model)
    return build_units([member])[0]


def _ask(rules, asset: str) -> float:
    rule = rules.collateral_rule(asset)
    return 1.0 if rule is None else rule.ask_rate * rule.liability_weight


def _slot(bucket: int, asset: int, rule, price: float, scale: float, now: float) -> Slot:
    lows, widths, ratios = [], [], []
    low = 0.0
    for tier in rule.tiers:
        cap = math.inf if tier.cap is None else tier.cap
        unit = price if rule.tier_unit == "asset" else 1.0
        lows.append(low * unit / scale)
        widths.append((cap - low) * unit / scale)
        ratios.append(tier.ratio)
        low = cap
    return Slot(bucket, asset, rule.bid_rate, np.array(lows), np.array(widths), np.array(ratios), now,
                usd_tiers=rule.tier_unit == "usd" and len(rule.tiers) > 1,
                liability_rate=rule.ask_rate * rule.liability_weight)


def isolated_need(cb: CompiledBook, p: int, distance: float, unit: UnitMargins | None) -> float:
    """USD of isolated margin (settle asset at today's price) keeping equity >= MM from the mark down to
    mark × (1 − d) (long) or up to mark × (1 + d) (short); equity − MM is concave, so the two ends suffice.
    An isolated bucket values its margin at 100 % (ask 1); ``unit`` is the venue's portfolio margin of the
    position alone (portfolio-margined venues), in USD."""
    pa = cb.positions
    row = pa.take(np.array([p]))
    side = 1.0 if pa.qty[p] > 0 else -1.0
    ratios = np.array([1.0, max(1.0 - side * distance, 1e-9)])
    marks = pa.mark[p] * ratios[None, :]
    price = cb.prices[pa.settle[p]]
    need = (maintenance_settle(row, settle_notional(row, marks)) - unrealized_pnl(row, marks))[0] * price
    if unit is not None:
        need = need + unit.maintenance(ratios[None, :])[0]
    return float(max(need.max(), 0.0))


def restrict(data: ProblemData, rows: np.ndarray, positions: np.ndarray | None = None) -> ProblemData:
    """The same problem data over the scenarios ``rows`` only, each keeping its original probability (so an
    expected shortfall over them is a lower bound of the full one, never a renormalized estimate).

    ``positions`` (rows of ``loss`` and ``mm_path``): only these positions' paths are gathered, the others left at
    zero — one pool's terms read their own positions only, and gathering every position for every pool costs
    positions × rows per pool."""
    rows = np.asarray(rows, dtype=int)
    buckets = [b if b.extra_mm_path is None else replace(b, extra_mm_path=b.extra_mm_path[rows]) for b in data.buckets]
    if positions is None:
        loss, mm_path = data.loss[:, rows], data.mm_path[:, rows]
    else:
        positions = np.asarray(positions, dtype=int)
        loss, mm_path = np.zeros((data.loss.shape[0], rows.size)), np.zeros((data.mm_path.shape[0], rows.size))
        loss[positions] = data.loss[np.ix_(positions, rows)]
        mm_path[positions] = data.mm_path[np.ix_(positions, rows)]
    return replace(
        data, returns=data.returns[rows], probabilities=data.probabilities[rows], cover=data.cover[rows],
        loss=loss, mm_path=mm_path, buckets=buckets,
        factor_values=None if data.factor_values is None else data.factor_values[:, rows])
