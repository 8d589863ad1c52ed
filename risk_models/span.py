"""SPAN-style scanning risk and spread offsets (CME SPAN, as described in the margin-rules reference §4).

Sign convention: a **risk array** is the P&L (USD, **profit positive**, as in published SPAN arrays and McMillan's
tables) of a position or a whole leg in each of the 16 SPAN scenarios, in this order:

    1–2   price unchanged,     vol up / down          9–10  price down 2/3 range, vol up / down
    3–4   price up 1/3 range,  vol up / down          11–12 price up 3/3 range,   vol up / down
    5–6   price down 1/3 range, vol up / down         13–14 price down 3/3 range, vol up / down
    7–8   price up 2/3 range,  vol up / down          15 / 16 extreme move up / down (a fraction counted)

Published arrays already carry the extreme cover (McMillan's S&P future: extreme entries ±7,000 = 35 % of a
2 × 10,000 move).  Every function here takes ``cover=None`` for such arrays, or a cover vector (S,) to apply to
raw arrays whose extreme entries are full P&L.  A leg's array is the per-contract array × signed contracts.
"""

from __future__ import annotations

from collections.abc import Mapping

import lazy_loader
import numpy as np
from numpy.typing import ArrayLike

cp = lazy_loader.load("cvxpy")  # imported on first use: reports and checks do not pay for it

SPAN_SCENARIOS = 16
EXTREME_SCENARIOS = (14, 15)
"""0-based indices of the two extreme moves (up, down)."""
NSE_EXTREME_MULTIPLE, NSE_EXTREME_COVER = 2.0, 0.35
"""Extreme move = 2 × scan range, 35 % of its loss counted (NSE, McMillan).  CME's own example implies 3× at 33 %."""


# == the scenario grid ==============================================================================================

def span_price_moves(extreme_multiple: float = NSE_EXTREME_MULTIPLE) -> np.ndarray:
    """Price move of each of the 16 scenarios as a fraction of the price scan range (profit of a long future)."""
    third = 1.0 / 3.0
    steps = [0.0, third, -third, 2 * third, -2 * third, 1.0, -1.0]
    return np.array([m for m in steps for _ in (0, 1)] + [extreme_multiple, -extreme_multiple])


def span_cover(extreme_cover: float = NSE_EXTREME_COVER) -> np.ndarray:
    """Cover fractions (16,): 1 for the 14 regular scenarios, ``extreme_cover`` for the two extreme moves."""
    if not 0.0 <= extreme_cover <= 1.0:
        raise ValueError(f"extreme cover must be in [0, 1], got {extreme_cover!r}")
    out = np.ones(SPAN_SCENARIOS)
    out[list(EXTREME_SCENARIOS)] = extreme_cover
    return out


def futures_risk_array(scan_range: float, *, extreme_multiple: float = NSE_EXTREME_MULTIPLE,
                       extreme_cover: float = NSE_EXTREME_COVER) -> np.ndarray:
    """Risk array (16,) of one long future with price scan range ``scan_range`` (USD per contract), cover already
    applied to the extreme moves — the form of published arrays.  For a future the outright requirement (its scan
    risk) equals the scan range when ``extreme_multiple × extreme_cover <= 1``."""
    if not scan_range >= 0:
        raise ValueError(f"scan range must be >= 0, got {scan_range!r}")
    return scan_range * span_price_moves(extreme_multiple) * span_cover(extreme_cover)


def _arrays(risk_array: ArrayLike, cover: ArrayLike | None) -> np.ndarray:
    arr = np.asarray(risk_array, dtype=float)
    if arr.ndim == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("a risk array must be a finite vector (S,) or stack (..., S)")
    if cover is None:
        return arr
    c = np.asarray(cover, dtype=float)
    if c.shape != arr.shape[-1:] or np.any(c < 0):
        raise ValueError(f"cover must be a non-negative vector of length {arr.shape[-1]}, got shape {c.shape}")
    return arr * c


# == scan risk and the total requirement ============================================================================

def scan_risk(risk_array: ArrayLike, cover: ArrayLike | None = None) -> float:
    """Scanning risk, USD: the largest loss over the scenarios, ``max(0, max_s −cover_s · array_s)``.

    ``cover=None``: the array already includes the extreme-move cover (published arrays); otherwise the entries
    are multiplied by ``cover`` (e.g. :func:`span_cover`) first.  All-profit arrays give 0.
    """
    arr = _arrays(risk_array, cover)
    if arr.ndim != 1:
        raise ValueError(f"scan_risk takes one risk array (S,), got shape {arr.shape}")
    return float(max(0.0, -arr.min()))


def span_requirement(risk_array: ArrayLike, *, cover: ArrayLike | None = None, intra_spread_charge: float = 0.0,
                     delivery_charge: float = 0.0, inter_commodity_credit: float = 0.0,
                     short_option_minimum: float = 0.0) -> float:
    """SPAN requirement of one combined commodity, USD:

        max(short option minimum, scan risk + intra-commodity spread charge + delivery charge − inter-commodity credit)

    ``risk_array`` is the combined commodity's array (sum of its positions' arrays); ``cover`` as in
    :func:`scan_risk`.  A portfolio's requirement is the sum over its combined commodities.
    """
    charges = scan_risk(risk_array, cover) + intra_spread_charge + delivery_charge - inter_commodity_credit
    return float(max(short_option_minimum, charges))


# == spreads ========================================================================================================

def calendar_spread_charge(outrights: Mapping[str, float],
                           intra_charges: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Requirement of a 1:1 calendar spread (long one month, short the other), USD per spread:

        |outright₁ − outright₂| + intra-commodity spread charge of the pair

    ``outrights`` maps a contract month to its outright (per-contract scan risk) requirement; ``intra_charges``
    maps a (month₁, month₂) pair to its intra-commodity spread charge.  Why the first term: with aligned price
    scenarios, the two legs' arrays move in the same direction with ranges o₁ and o₂, so the scan risk of
    long-one/short-the-other is |o₁ − o₂|; the spread charge adds back the basis risk that the scan assumes away.
    CME spread calculator: outrights 500/500/750, charges M2/M3 200, M2/M4 50, M3/M4 0 → 200, 300, 250.
    """
    out: dict[tuple[str, str], float] = {}
    for (first, second), charge in intra_charges.items():
        missing = [m for m in (first, second) if m not in outrights]
        if missing:
            raise KeyError(f"no outright requirement for {', '.join(missing)}")
        out[(first, second)] = abs(outrights[first] - outrights[second]) + charge
    return out


def inter_unit_offset(per_unit_pnl: ArrayLike, credit: ArrayLike) -> np.ndarray:
    """Per-scenario loss (S,), USD, loss positive, after crediting gains against losses across risk units:

        loss_s = Σ_u max(−pnl_us, 0) − credit_u · Σ_u max(pnl_us, 0)  =  Σ_u max(−pnl_us, −credit_u · pnl_us)

    per_unit_pnl (U, S) is profit positive; credit (scalar or (U,)) in [0, 1] is the fraction of a unit's gain that
    may offset other units' losses.  With two units this is CME's scanning-based inter-commodity spread,
    ``loss_leg − credit × gain_leg`` per scenario (both legs losing: the sum of the losses).  Convex piecewise
    linear in the P&L (credit <= 1): :func:`inter_unit_offset_expr` is its LP form.  Negative values are net
    credited gains.
    """
    pnl = np.asarray(per_unit_pnl, dtype=float)
    if pnl.ndim != 2 or not np.all(np.isfinite(pnl)):
        raise ValueError(f"per-unit P&L must be a finite (U, S) array, got shape {pnl.shape}")
    c = _credit(credit, pnl.shape[0])
    return np.maximum(-pnl, -c * pnl).sum(axis=0)


def inter_unit_offset_expr(per_unit_pnl: cp.Expression, credit: ArrayLike
                           ) -> tuple[cp.Expression, list[cp.Constraint]]:
    """The cvxpy form of :func:`inter_unit_offset` on an affine (U, S) P&L expression, in epigraph form:
    ``Σ_u v_us`` with ``v >= −pnl``, ``v >= −credit · pnl`` (returned constraints; LP).  Exact where the result is
    minimized or bounded above — as inside any risk measure, which is nondecreasing in each scenario's loss.
    An explicit epigraph rather than ``cp.maximum`` so as not to depend on cvxpy's bound inference."""
    c = _credit(credit, per_unit_pnl.shape[0])
    v = cp.Variable(per_unit_pnl.shape, name="offset_loss")
    return cp.sum(v, axis=0), [v >= -per_unit_pnl, v >= cp.multiply(-c, per_unit_pnl)]


def _credit(credit: ArrayLike, units: int) -> np.ndarray:
    c = np.broadcast_to(np.asarray(credit, dtype=float), (units,)).reshape(units, 1)
    if np.any(c < 0) or np.any(c > 1):
        raise ValueError("credit rates must be in [0, 1]")
    return c


def scanning_offset(leg_a: ArrayLike, leg_b: ArrayLike, credit: float, cover: ArrayLike | None = None) -> float:
    """CME scanning-based inter-commodity spread requirement of two legs, USD.

    Each leg's array is its whole P&L per scenario (per-contract array × signed contracts, profit positive); the
    scenarios of the two legs are aligned (scenario k of both is the same market move).  In each scenario the leg
    that loses is the loss leg and the other the gain leg; the scenario's requirement is
    ``loss_leg − credit × gain_leg`` (both losing: the sum; both gaining: none); the spread's requirement is the
    largest over the scenarios, floored at 0.  ``cover`` as in :func:`scan_risk`.
    Example: +2 30Y (outright 3,100) vs −3 10Y (1,600) at 70 %: 6,200 − 0.7 × 4,800 = 2,840 (outrights 11,000).
    """
    legs = _arrays(np.vstack([np.asarray(leg_a, dtype=float), np.asarray(leg_b, dtype=float)]), cover)
    return float(max(0.0, inter_unit_offset(legs, credit).max()))


def inter_commodity_credit(contracts: ArrayLike, ratio: ArrayLike, outright_per_contract: ArrayLike,
                           credit_rate: float) -> np.ndarray:
    """Traditional (ratio-based) SPAN inter-commodity spread credit per leg, USD.

    ``ratio`` (signed) is the spread's composition, e.g. (2, −1) for long 2 Corn / short 1 Soybeans; the spread can
    be formed in that orientation or the reverse.  Spreads formed: n = min_i ⌊contracts_i / (sign · ratio_i)⌋ >= 0.
    Credit of leg i = credit_rate × n × |ratio_i| × outright_per_contract_i (for futures the outright is the price
    risk; SPAN proper uses the delta-weighted futures price risk).  Subtract each leg's credit in its combined
    commodity's :func:`span_requirement`.  Corn/Soybeans 2:1 at 55 %, outrights 1,750 / 2,500:
    2 × 1,750 + 2,500 = 6,000, credits 1,925 + 1,375 = 3,300, requirement 2,700.
    """
    q = np.asarray(contracts, dtype=float)
    r = np.asarray(ratio, dtype=float)
    outright = np.asarray(outright_per_contract, dtype=float)
    if not (q.shape == r.shape == outright.shape) or q.ndim != 1:
        raise ValueError("contracts, ratio and outrights must be vectors of the same length")
    if np.any(r == 0) or np.any(outright < 0) or not 0.0 <= credit_rate <= 1.0:
        raise ValueError("ratios must be non-zero, outrights >= 0 and the credit rate in [0, 1]")
    sign = 1.0 if q[0] * r[0] >= 0 else -1.0
    n_spreads = max(0.0, float(np.min(np.floor(q / (sign * r)))))
    return credit_rate * n_spreads * np.abs(r) * outright
