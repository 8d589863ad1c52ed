"""Regulatory and prudential guard rails applied on top of a risk-based margin (EMIR offset limit and
anti-procyclicality, margin-rules reference §5) and a convex liquidity add-on.  Amounts in USD."""

from __future__ import annotations

import lazy_loader
import numpy as np
from numpy.typing import ArrayLike

cp = lazy_loader.load("cvxpy")  # imported on first use: reports and checks do not pay for it

EMIR_MAX_OFFSET = 0.8
"""EMIR: portfolio offsets may reduce margin by at most 80 % of (Σ standalone − combined)."""
EMIR_APC_BUFFER = 0.25
"""EMIR anti-procyclicality buffer (RTS 153/2013 art. 28(1)(a)): at least 25 %."""


def emir_offset_floor(standalone_sum: ArrayLike, combined: ArrayLike, max_offset: float = EMIR_MAX_OFFSET
                      ) -> np.ndarray | float:
    """Combined margin after the EMIR offset limit, USD:

        max(combined, standalone_sum − max_offset × (standalone_sum − combined))

    i.e. at most ``max_offset`` of the diversification benefit is granted (standalone 1,000, combined 400 → 520).
    When the combined margin exceeds the standalone sum there is no offset and the combined margin stands.
    """
    if not 0.0 <= max_offset <= 1.0:
        raise ValueError(f"max_offset must be in [0, 1], got {max_offset!r}")
    standalone = np.asarray(standalone_sum, dtype=float)
    comb = np.asarray(combined, dtype=float)
    out = np.maximum(comb, standalone - max_offset * (standalone - comb))
    return float(out) if out.ndim == 0 else out


def anti_procyclicality(margin: ArrayLike, stressed_margin: ArrayLike | None = None,
                        buffer: float = EMIR_APC_BUFFER) -> np.ndarray | float:
    """Margin with an anti-procyclicality tool, USD: ``max(margin × (1 + buffer), stressed_margin)``.

    The EMIR options (RTS 153/2013 art. 28(1)) map to the arguments as follows:

    - (a) buffer: ``stressed_margin=None`` → ``margin × (1 + buffer)``, buffer >= 25 % (a buffer the CCP may run
      down in stress);
    - (c) floor from a 10-year (or stressed) look-back: pass that margin as ``stressed_margin`` and ``buffer=0``
      → ``max(margin, stressed_margin)``;
    - both given with a buffer: the larger of the two, the conservative combination.

    Option (b), 25 % weight on stressed observations, is a weighting of the scenarios themselves (set the
    ScenarioSet's weights), not a transformation of the margin.
    """
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer!r}")
    out = np.asarray(margin, dtype=float) * (1.0 + buffer)
    if stressed_margin is not None:
        out = np.maximum(out, np.asarray(stressed_margin, dtype=float))
    return float(out) if out.ndim == 0 else out


def _liquidity_scale(adv_usd: ArrayLike, coefficient: ArrayLike, exponent: float) -> np.ndarray:
    adv = np.asarray(adv_usd, dtype=float)
    k = np.asarray(coefficient, dtype=float)
    if np.any(adv <= 0) or np.any(k < 0) or exponent < 1:
        raise ValueError("ADV must be > 0, the coefficient >= 0 and the exponent >= 1 (convexity)")
    return k / adv ** (exponent - 1.0)


def liquidity_addon(qty_usd: ArrayLike, adv_usd: ArrayLike, coefficient: ArrayLike, exponent: float = 1.5
                    ) -> np.ndarray | float:
    """Liquidation-cost add-on per position, USD:

        addon = coefficient × |q|^e / ADV^(e − 1)  =  coefficient × |q| × (|q| / ADV)^(e − 1)

    q: position size in USD (signed), ADV: average daily traded volume in USD/day, coefficient: dimensionless
    (cost as a fraction of |q| when |q| = ADV), e = 1.5 by default (square-root impact: |q|^1.5 / ADV^0.5).
    Convex in q for e >= 1.
    """
    out = _liquidity_scale(adv_usd, coefficient, exponent) * np.abs(np.asarray(qty_usd, dtype=float)) ** exponent
    return float(out) if out.ndim == 0 else out


def liquidity_addon_expr(qty_expr: cp.Expression, adv_usd: ArrayLike, coefficient: ArrayLike,
                         exponent: float = 1.5) -> cp.Expression:
    """The cvxpy form of :func:`liquidity_addon` (elementwise, convex: ``cp.power(cp.abs(q), e)``), USD."""
    scale = _liquidity_scale(adv_usd, coefficient, exponent)
    return cp.multiply(scale, cp.power(cp.abs(qty_expr), exponent))
