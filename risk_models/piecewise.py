"""Convex piecewise-linear functions of one variable, tabulated at their breakpoints for fast evaluation.

A group of positions sharing one price factor x (a bucket's positions on one underlying) has a total
maintenance margin that is a sum of ``max_k(α_k x + β_k)`` terms: convex and piecewise linear in x.  Tabulated
once at its breakpoints (plus two far sentinels carrying the end slopes), every later evaluation is one
``np.interp``: exact, since the function is linear between consecutive breakpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

X_MIN = 1e-9
"""Left sentinel: factor values (price ratios) below this are not expected (a 99.9999999 % crash)."""
X_MAX = 1e9
"""Right sentinel."""


def _max_affine(slopes: np.ndarray, intercepts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(R, N): row r's max_k(slopes[r, k] x + intercepts[r, k]) at each x (N,)."""
    out = slopes[:, :1] * x[None, :] + intercepts[:, :1]
    for k in range(1, slopes.shape[1]):
        np.maximum(out, slopes[:, k : k + 1] * x[None, :] + intercepts[:, k : k + 1], out=out)
    return out


@dataclass(frozen=True)
class PiecewiseLinear:
    """f(x) = Σ_i max_k(slopes[i, k] × x + intercepts[i, k]) for x > 0, tabulated at its breakpoints."""

    knots: np.ndarray  # (B,) ascending, first X_MIN, last X_MAX
    values: np.ndarray  # (B,) f at the knots

    @classmethod
    def from_max_affine(cls, slopes: np.ndarray, intercepts: np.ndarray) -> PiecewiseLinear:
        """Sum over rows i of max over columns k of affine pieces (rows are positions, columns tiers)."""
        slopes = np.atleast_2d(np.asarray(slopes, dtype=float))
        intercepts = np.atleast_2d(np.asarray(intercepts, dtype=float))
        # every crossing of two consecutive pieces is a candidate breakpoint; extra knots are harmless
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = (-np.diff(intercepts, axis=1) / np.diff(slopes, axis=1)).ravel()
        cross = cross[np.isfinite(cross) & (cross > X_MIN) & (cross < X_MAX)]
        knots = np.unique(np.concatenate([[X_MIN, 1.0, X_MAX], cross]))
        return cls(knots, _max_affine(slopes, intercepts, knots).sum(axis=0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.knots, self.values)
