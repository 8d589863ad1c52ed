"""Convex piecewise-linear functions of one variable, evaluated fast on many points.

A group of positions sharing one price factor x (a bucket's positions on one underlying) has a total
maintenance margin that is a sum of ``max_k(α_k x + β_k)`` terms: convex and piecewise linear in x.  Tabulating
it once at its breakpoints turns every later evaluation into a binary search and one interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PiecewiseLinear:
    """f(x) = Σ_i max_k(slopes[i, k] × x + intercepts[i, k]) for x > 0, tabulated at its breakpoints."""

    knots: np.ndarray  # (B,) ascending breakpoints
    values: np.ndarray  # (B,) f at the knots
    slope_left: float  # slope below the first knot
    slope_right: float  # slope above the last knot

    @classmethod
    def from_max_affine(cls, slopes: np.ndarray, intercepts: np.ndarray) -> PiecewiseLinear:
        """Sum over rows i of max over columns k of affine pieces (rows are positions, columns tiers)."""
        slopes = np.atleast_2d(slopes)
        intercepts = np.atleast_2d(intercepts)
        knots = []
        for a, b in zip(slopes, intercepts, strict=True):
            # crossings of consecutive pieces; only those where the upper envelope changes matter, but extra
            # knots are harmless (the function is still linear between any two of them)
            da = np.diff(a)
            with np.errstate(divide="ignore", invalid="ignore"):
                cross = -np.diff(b) / da
            knots.append(cross[np.isfinite(cross) & (cross > 0)])
        grid = np.unique(np.concatenate(knots)) if knots else np.zeros(0)
        if grid.size == 0:
            grid = np.array([1.0])
        values = np.max(slopes[:, None, :] * grid[None, :, None] + intercepts[:, None, :], axis=2).sum(axis=0)
        left = slopes[np.arange(len(slopes)), _argmax_at(slopes, intercepts, grid[0] * 0.5)].sum()
        right = slopes[np.arange(len(slopes)), _argmax_at(slopes, intercepts, grid[-1] * 2.0 + 1.0)].sum()
        return cls(grid, values, float(left), float(right))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        k, v = self.knots, self.values
        inner = np.interp(x, k, v)
        below = v[0] + self.slope_left * (x - k[0])
        above = v[-1] + self.slope_right * (x - k[-1])
        return np.where(x < k[0], below, np.where(x > k[-1], above, inner))


def _argmax_at(slopes: np.ndarray, intercepts: np.ndarray, x: float) -> np.ndarray:
    return np.argmax(slopes * x + intercepts, axis=1)
