"""Tier arithmetic, vectorized: bracketed maintenance margin, haircut slices, size-discounted weights.

Per-row parameters have shape (R, T) (T tiers, padded); values have shape (R,) or (R, K) (K price states).
"""

from __future__ import annotations

import numpy as np

SIZE_DISCOUNT_NUMERATOR = 1.1
"""FTX/Drift size-discount constant: weight(s) = min(w, 1.1 / (1 + k √s))."""
LIABILITY_DISCOUNT_BASE = 0.8
"""Drift liability weight: max(l, 0.8 l + k √s)."""


def _column(params: np.ndarray, t: int, like: np.ndarray) -> np.ndarray:
    """Tier ``t`` of per-row parameters (R, T), shaped to broadcast against ``like`` (R,) or (R, K)."""
    col = params[:, t]
    return col if like.ndim == 1 else col[:, None]


# The loops below run over the (few) tiers and vectorize over rows and states: much faster than one
# (R, K, T) broadcast, which allocates and strides through R × K × T temporaries.


def tiered_margin(notional: np.ndarray, mmrs: np.ndarray, cums: np.ndarray, caps: np.ndarray | None = None
                  ) -> np.ndarray:
    """Maintenance margin ``max_k(mmr_k × N − cum_k)`` in the notional's unit (convex, piecewise linear).

    Padded tiers must repeat the last real tier so that they never win the max.  With ``caps`` (ascending),
    tiers above the largest notional are skipped: they cannot win.
    """
    out = notional * _column(mmrs, 0, notional) - _column(cums, 0, notional)
    tmp = np.empty_like(out)
    for t in range(1, mmrs.shape[1]):
        if caps is not None and not np.any(notional > _column(caps, t - 1, notional)):
            break
        np.multiply(notional, _column(mmrs, t, notional), out=tmp)
        tmp -= _column(cums, t, notional)
        np.maximum(out, tmp, out=out)
    return out


def bracket_index(notional: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Index of the bracket holding ``notional``: the first with notional <= cap (last bracket beyond)."""
    idx = np.zeros(notional.shape, dtype=np.intp)
    for t in range(caps.shape[1] - 1):
        idx += notional > _column(caps, t, notional)
    return idx


def haircut_value(amount: np.ndarray, lows: np.ndarray, widths: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Slice-by-slice value ``Σ_i ratio_i × clip(amount − low_i, 0, width_i)`` (concave in amount >= 0)."""
    out = np.zeros(amount.shape)
    tmp = np.empty_like(out)
    for t in range(lows.shape[1]):
        np.subtract(amount, _column(lows, t, amount), out=tmp)
        np.clip(tmp, 0.0, _column(widths, t, amount), out=tmp)
        tmp *= _column(ratios, t, amount)
        out += tmp
    return out


def size_discount_weight(weight: np.ndarray | float, k: np.ndarray | float, size: np.ndarray | float) -> np.ndarray:
    """Collateral weight after the size discount: ``min(w, 1.1 / (1 + k √size))``; size in asset units."""
    return np.minimum(weight, SIZE_DISCOUNT_NUMERATOR / (1.0 + np.asarray(k) * np.sqrt(np.abs(size))))


def size_liability_weight(weight: np.ndarray | float, k: np.ndarray | float, size: np.ndarray | float) -> np.ndarray:
    """Liability weight after the size premium: ``max(l, 0.8 l + k √size)``; size in asset units."""
    w = np.asarray(weight, dtype=float)
    return np.maximum(w, LIABILITY_DISCOUNT_BASE * w + np.asarray(k) * np.sqrt(np.abs(size)))
