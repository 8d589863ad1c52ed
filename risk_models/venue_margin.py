"""Venue margin, vectorized: per-position notional, PnL, maintenance and initial margin; per-bucket equity.

Units: notional, PnL and margins of a position in its settle asset (``*_settle``) and in USD; bucket figures
in USD.  Every function broadcasts over an optional trailing axis K (several price states at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiled import CompiledBook, HoldingArrays, PositionArrays
from .tiers import bracket_index, haircut_value, size_discount_weight, size_liability_weight, tiered_margin


def _col(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Per-row parameter (R,) broadcast against values (R,) or (R, K)."""
    return a if like.ndim == 1 else a[:, None]


@dataclass(frozen=True)
class PositionTerms:
    """Per-position figures at one or several price states; shapes (P,) or (P, K)."""

    notional_settle: np.ndarray
    pnl_settle: np.ndarray
    mm_settle: np.ndarray
    im_settle: np.ndarray
    notional_usd: np.ndarray
    mm_usd: np.ndarray
    im_usd: np.ndarray


def settle_notional(pa: PositionArrays, price: np.ndarray) -> np.ndarray:
    """|qty| × contract_size × price (linear) or / price (inverse), in settle units."""
    size = _col(np.abs(pa.qty) * pa.contract_size, price)
    if not pa.inverse.any():
        return size * price
    return np.where(_col(pa.inverse, price), size / price, size * price)


def unrealized_pnl(pa: PositionArrays, mark: np.ndarray) -> np.ndarray:
    """PnL in settle units: qty × size × (mark − entry) (linear) or × (1/entry − 1/mark) (inverse)."""
    signed, entry = _col(pa.qty * pa.contract_size, mark), _col(pa.entry, mark)
    linear = signed * (mark - entry)
    if not pa.inverse.any():
        return linear
    return np.where(_col(pa.inverse, mark), signed * (1.0 / entry - 1.0 / mark), linear)


def maintenance_settle(pa: PositionArrays, notional: np.ndarray) -> np.ndarray:
    """Maintenance margin in settle units for positions whose notional at the mark is ``notional``.

    Brackets (``max_k(mmr_k N − cum_k)``) or the size-dependent rate, on the notional at the mark or at entry
    (``mm_price_basis``), plus ``liquidation_fee_rate`` × notional at the mark.
    """
    c = lambda a: _col(a, notional)  # noqa: E731
    basis = notional
    if pa.entry_basis.any():
        at_entry = settle_notional(pa, np.broadcast_to(c(pa.entry), notional.shape))
        basis = np.where(c(pa.entry_basis), at_entry, notional)
    mm = tiered_margin(basis, pa.mmrs, pa.cums, pa.caps)
    sized = ~np.isnan(pa.size_rate)
    if sized.any():
        mm = np.where(c(sized), basis * (c(pa.size_mm_base) + c(pa.size_rate) * basis), mm)
    if pa.fee_rate.any():
        mm = mm + c(pa.fee_rate) * notional
    return mm


def initial_settle(pa: PositionArrays, notional: np.ndarray) -> np.ndarray:
    """Initial margin in settle units: notional / leverage (the book's, else the bracket's maximum), dYdX's
    effective IMF × notional, or the size-dependent initial rate."""
    c = lambda a: _col(a, notional)  # noqa: E731
    idx = bracket_index(notional, pa.caps)
    rows = np.arange(len(pa))
    tier_lev = pa.max_leverage[rows[:, None], idx] if idx.ndim == 2 else pa.max_leverage[rows, idx]
    im = notional / np.where(np.isnan(c(pa.leverage)), tier_lev, c(pa.leverage))
    im = np.where(np.isnan(c(pa.imf)), im, notional * c(pa.imf))
    sized = ~np.isnan(pa.size_rate)
    if sized.any():
        im = np.where(c(sized), notional * (c(pa.size_im_base) + c(pa.size_rate) * notional), im)
    return im


def position_terms(pa: PositionArrays, mark: np.ndarray, settle_price: np.ndarray) -> PositionTerms:
    """Evaluate positions at ``mark`` (quote unit) with settle assets at ``settle_price`` (USD)."""
    notional = settle_notional(pa, mark)
    mm = maintenance_settle(pa, notional)
    im = initial_settle(pa, notional)
    to_usd = settle_price * _col(pa.ask_settle, mark)
    return PositionTerms(notional, unrealized_pnl(pa, mark), mm, im, notional * settle_price, mm * to_usd,
                         im * to_usd)


def holding_value(ha: HoldingArrays, equity: np.ndarray, price: np.ndarray) -> np.ndarray:
    """USD value of each holding's asset equity (balance + folded PnL, asset units) at ``price`` (USD).

    Positive equity: × price × bid, tiers slice by slice (USD or asset caps), capped by the size-discounted
    weight.  Negative equity (a liability): × price × ask × liability weight, no haircut.
    """
    c = lambda a: _col(a, equity)  # noqa: E731
    long = np.maximum(equity, 0.0)
    raw = long * price * c(ha.bid)
    if ha.asset_unit.any():
        amount = np.where(c(ha.asset_unit), long * c(ha.bid), raw)
        tiered = haircut_value(amount, ha.lows, ha.widths, ha.ratios)
        value = np.where(c(ha.asset_unit), tiered * price, tiered)
    else:
        value = haircut_value(raw, ha.lows, ha.widths, ha.ratios)
    short = np.minimum(equity, 0.0)
    lw = c(ha.liability_weight)
    if ha.size_k.any():
        k = c(ha.size_k)
        value = np.where(k > 0, np.minimum(value, raw * size_discount_weight(1.0, k, long)), value)
        lw = np.where(k > 0, size_liability_weight(lw, k, short), lw)
    return value + short * price * c(ha.ask) * lw


def segment_sum(values: np.ndarray, segment: np.ndarray, n: int) -> np.ndarray:
    """Sum rows of ``values`` (R,) or (R, K) into ``n`` segments → (n,) or (n, K)."""
    if values.ndim == 1:
        return np.bincount(segment, weights=values, minlength=n)
    k = values.shape[1]
    flat = (segment[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=n * k).reshape(n, k)


@dataclass(frozen=True)
class MarginState:
    """Venue margin of every position, holding and bucket of a compiled book at its current prices."""

    terms: PositionTerms
    holding_equity: np.ndarray  # (H,) asset units: balance + unrealized PnL settled in that asset
    holding_value: np.ndarray  # (H,) USD after haircuts
    equity: np.ndarray  # (B,) USD
    maintenance: np.ndarray  # (B,) USD
    initial: np.ndarray  # (B,) USD

    @property
    def margin_ratio(self) -> np.ndarray:
        """equity / maintenance margin per bucket (nan without a requirement)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.maintenance > 0, self.equity / self.maintenance, np.nan)

    @property
    def available(self) -> np.ndarray:
        return self.equity - self.initial


def evaluate(cb: CompiledBook) -> MarginState:
    """Venue margin at the book's prices and marks."""
    pa, ha = cb.positions, cb.holdings
    terms = position_terms(pa, pa.mark, cb.prices[pa.settle])
    ae = ha.balance + segment_sum(terms.pnl_settle, pa.hold, len(ha))
    value = holding_value(ha, ae, cb.prices[ha.asset])
    b = cb.n_buckets
    return MarginState(
        terms=terms,
        holding_equity=ae,
        holding_value=value,
        equity=segment_sum(value, ha.bucket, b),
        maintenance=segment_sum(terms.mm_usd, pa.bucket, b) + cb.bucket_extra_mm,
        initial=segment_sum(terms.im_usd, pa.bucket, b) + cb.bucket_extra_im,
    )


def uni_mmr(adjusted_equity: np.ndarray, maintenance: np.ndarray) -> float:
    """Binance Portfolio Margin unified maintenance margin ratio: Σ adjusted equity / Σ maintenance margin."""
    total_mm = float(np.sum(maintenance))
    return float(np.sum(adjusted_equity)) / total_mm if total_mm > 0 else float("nan")
