"""Tier arithmetic, vectorized: bracketed maintenance margin, haircut slices, size-discounted weights.

All functions broadcast: per-row parameters have shape (R, T) (T tiers, padded) and values (R,) or (R, K).
"""

from __future__ import annotations

import numpy as np

SIZE_DISCOUNT_NUMERATOR = 1.1
"""FTX/Drift size-discount constant: weight(s) = min(w, 1.1 / (1 + k √s))."""
LIABILITY_DISCOUNT_BASE = 0.8
"""Drift liability weight: max(l, 0.8 l + k √s)."""


def _expand(values: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align values (R,) or (R, K) with tier parameters (R, T) → shapes (R, K, 1) and (R, 1, T)."""
    v = values if values.ndim == 2 else values[:, None]
    return v[:, :, None], params[:, None, :]


def tiered_margin(notional: np.ndarray, mmrs: np.ndarray, cums: np.ndarray) -> np.ndarray:
    """Maintenance margin ``max_k(mmr_k × N − cum_k)`` in the notional's unit (convex, piecewise linear).

    Padded tiers must repeat the last real tier so that they never win the max.
    """
    n, m = _expand(notional, mmrs)
    _, c = _expand(notional, cums)
    out = np.max(n * m - c, axis=2)
    return out if notional.ndim == 2 else out[:, 0]


def bracket_index(notional: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Index of the bracket holding ``notional``: the first with notional <= cap (last bracket beyond)."""
    n, c = _expand(notional, caps)
    idx = np.sum(n > c, axis=2)
    idx = np.minimum(idx, caps.shape[1] - 1)
    return idx if notional.ndim == 2 else idx[:, 0]


def haircut_value(amount: np.ndarray, lows: np.ndarray, widths: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Slice-by-slice value ``Σ_i ratio_i × clip(amount − low_i, 0, width_i)`` (concave in amount >= 0)."""
    a, lo = _expand(amount, lows)
    _, w = _expand(amount, widths)
    _, r = _expand(amount, ratios)
    out = np.sum(r * np.clip(a - lo, 0.0, w), axis=2)
    return out if amount.ndim == 2 else out[:, 0]


def size_discount_weight(weight: np.ndarray | float, k: np.ndarray | float, size: np.ndarray | float) -> np.ndarray:
    """Collateral weight after the size discount: ``min(w, 1.1 / (1 + k √size))``; size in asset units."""
    return np.minimum(weight, SIZE_DISCOUNT_NUMERATOR / (1.0 + np.asarray(k) * np.sqrt(np.abs(size))))


def size_liability_weight(weight: np.ndarray | float, k: np.ndarray | float, size: np.ndarray | float) -> np.ndarray:
    """Liability weight after the size premium: ``max(l, 0.8 l + k √size)``; size in asset units."""
    w = np.asarray(weight, dtype=float)
    return np.maximum(w, LIABILITY_DISCOUNT_BASE * w + np.asarray(k) * np.sqrt(np.abs(size)))
