"""Risk measures on scenario losses and their delta-normal closed forms — each as a numpy evaluation and as a cvxpy
expression built from the same definition (a test holds the two equal).

Conventions used throughout:

- ``L`` (S,) is a loss vector in USD, **loss positive** (a gain is a negative loss).
- ``p`` (S,) are scenario probabilities (>= 0, summing to 1 within 1e-9; they are renormalized to sum exactly 1).
  ``None`` means uniform.
- ``cover`` (S,) is the fraction of each scenario's loss that counts (SPAN's extreme moves count a fraction):
  every measure is applied to the counted losses ``cover · L``.  ``None`` means all ones.
- ``alpha`` is the confidence level, 0 <= alpha < 1 (0.99 = 99 %).

Scenario measures (worst case, expected shortfall) are convex in L and LP-representable; value at risk is not convex
and is for reporting only.  The delta-normal forms are second-order-cone representable.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import lazy_loader
import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

cp = lazy_loader.load("cvxpy")  # imported on first use: reports and checks do not pay for it

_PROB_TOL = 1e-9
"""Tolerance on Σ p = 1."""
_LEVEL_TOL = 1e-12
"""Relative tolerance on cumulative probabilities: P(L <= ℓ) >= α − 1e-12 counts as reaching α, so that
floating-point sums such as 95 × 0.01 are not mistaken for 0.9499999…"""

MeasureKind = Literal["es", "worst", "var"]


# == input checks ===================================================================================================

def _losses(L: ArrayLike) -> np.ndarray:
    arr = np.asarray(L, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"a loss vector must be one-dimensional and non-empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("losses must be finite")
    return arr


def probabilities(p: ArrayLike | None, n: int) -> np.ndarray:
    """Scenario probabilities (n,), checked (>= 0, sum 1 within 1e-9) and renormalized; ``None`` = uniform."""
    if p is None:
        return np.full(n, 1.0 / n)
    arr = np.asarray(p, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"probabilities have shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("probabilities must be finite and >= 0")
    total = arr.sum()
    if abs(total - 1.0) > _PROB_TOL:
        raise ValueError(f"probabilities must sum to 1, they sum to {total!r}")
    return arr / total


def coverage(cover: ArrayLike | None, n: int) -> np.ndarray:
    """Cover fractions (n,), checked (finite, >= 0); ``None`` = ones."""
    if cover is None:
        return np.ones(n)
    arr = np.asarray(cover, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"cover has shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("cover fractions must be finite and >= 0")
    return arr


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"confidence alpha must be in [0, 1), got {alpha!r}")
    return float(alpha)


def _levels(L: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct loss levels (ascending), the index of each scenario's level, and the probability mass per level."""
    values, inverse = np.unique(L, return_inverse=True)
    mass = np.bincount(inverse, weights=p, minlength=values.size)
    return values, inverse, mass


# == numpy: scenario measures =======================================================================================

def worst_case(L: ArrayLike, cover: ArrayLike | None = None) -> float:
    """Largest counted loss ``max_s cover_s · L_s``, USD.  Every scenario counts, whatever its probability
    (a stress scenario with weight 0 still binds).  Not floored at 0: all-gain scenarios give a negative value."""
    losses = _losses(L)
    return float(np.max(coverage(cover, losses.size) * losses))


def worst_case_weights(L: ArrayLike, cover: ArrayLike | None = None) -> np.ndarray:
    """Weights q (S,) on the worst scenario(s) (ties split equally) with ``worst_case = Σ q_s cover_s L_s``."""
    losses = _losses(L)
    counted = coverage(cover, losses.size) * losses
    hit = counted == counted.max()
    return hit / hit.sum()


def value_at_risk(L: ArrayLike, p: ArrayLike | None, alpha: float) -> float:
    """Value at risk, USD (reporting only: not convex, not subadditive).

    Convention: the smallest loss ℓ among scenarios of positive probability with ``P(L <= ℓ) >= alpha``, the
    probability taken with the weights p (the lower α-quantile of the discrete distribution).  For S equally likely
    scenarios and α·S an integer k, this is the k-th smallest loss (S=100, α=0.95: the 95th smallest).
    """
    losses = _losses(L)
    alpha = _check_alpha(alpha)
    values, _, mass = _levels(losses, probabilities(p, losses.size))
    cum = np.cumsum(mass)
    reached = (cum >= alpha - _LEVEL_TOL) & (mass > 0)
    return float(values[np.argmax(reached)])


def tail_weights(L: ArrayLike, p: ArrayLike | None, alpha: float) -> np.ndarray:
    """Expected-shortfall weights q (S,), q >= 0, Σ q = 1, with ``ES = Σ_s q_s L_s``: the dual solution of the
    Rockafellar–Uryasev problem.

    The tail holds probability mass 1 − α, filled from the largest loss down: every scenario strictly above VaR
    gets ``p_s / (1 − α)``; the scenarios at the VaR level share the remaining (fractional) mass in proportion to
    their probabilities; the rest get 0.  Ties are split by probability, so the weights do not depend on the
    order of the scenarios.  For Euler (component) attribution, an item's contribution is ``Σ_s q_s item_loss_s``;
    the contributions of items whose losses add up to L sum exactly to ES.
    """
    losses = _losses(L)
    alpha = _check_alpha(alpha)
    prob = probabilities(p, losses.size)
    tail = 1.0 - alpha
    _, inverse, mass = _levels(losses, prob)
    above = np.cumsum(mass[::-1])[::-1] - mass  # probability strictly above each level
    take = np.clip(tail - above, 0.0, mass)  # tail mass taken at each level
    take[take <= _LEVEL_TOL * tail] = 0.0  # rounding dust below the VaR level
    share = np.divide(take, mass, out=np.zeros_like(take), where=mass > 0)
    q = prob * share[inverse]
    return q / q.sum()


def expected_shortfall(L: ArrayLike, p: ArrayLike | None, alpha: float) -> float:
    """Expected shortfall (CVaR) at confidence α, USD: the Rockafellar–Uryasev value

        ES = min_t  t + 1/(1 − α) · Σ_s p_s (L_s − t)+

    evaluated exactly (the minimum is attained at t = VaR), which equals ``Σ_s q_s L_s`` with the tail weights
    of :func:`tail_weights`.  With discrete or weighted scenarios the VaR atom enters with its fractional mass,
    so this is not the naive average of the worst ⌈(1 − α)S⌉ losses when α·S is not an integer.
    α = 0 gives the mean loss; ES >= VaR always; ES is coherent (subadditive, positively homogeneous).
    """
    losses = _losses(L)
    return float(tail_weights(losses, p, alpha) @ losses)


# == cvxpy: the same measures on an affine loss expression ==========================================================

def _counted_expr(L_expr: cp.Expression | np.ndarray, cover: ArrayLike | None) -> cp.Expression:
    """cover · L as an affine expression.  The cover enters as a sparse diagonal matrix, not ``cp.multiply``:
    cvxpy 1.9's bound inference turns the NaN bounds of ``A @ x`` (mixed-sign A, free x) into [0, 0] through
    an elementwise multiply, and max/maximum/abs then give wrong answers on solvers with variable bounds (HiGHS)."""
    expr = L_expr if isinstance(L_expr, cp.Expression) else cp.Constant(np.asarray(L_expr, dtype=float))
    if expr.ndim != 1:
        raise ValueError(f"a loss expression must have shape (S,), got {expr.shape}")
    if cover is None:
        return expr
    return cp.Constant(sp.diags(coverage(cover, expr.shape[0]), format="csc")) @ expr


def worst_case_expr(L_expr: cp.Expression, cover: ArrayLike | None = None) -> cp.Expression:
    """``max_s cover_s · L_s`` as a convex cvxpy expression (``cp.max``, LP-representable), USD.

    Caution (cvxpy 1.9): if ``L_expr`` itself contains ``cp.multiply(constant, A @ x)``, cvxpy may infer wrong
    bounds for the max's auxiliary variable on HiGHS; :func:`worst_case_epigraph` has no such dependence.
    """
    return cp.max(_counted_expr(L_expr, cover))


def worst_case_epigraph(L_expr: cp.Expression, cover: ArrayLike | None = None
                        ) -> tuple[cp.Expression, list[cp.Constraint]]:
    """The worst case in epigraph form: a variable w with ``cover · L <= w``, USD.  Exact when minimized or
    bounded above (like :func:`expected_shortfall_expr`); does not rely on cvxpy's bound inference."""
    w = cp.Variable(name="worst_loss")
    return w, [_counted_expr(L_expr, cover) <= w]


def expected_shortfall_expr(L_expr: cp.Expression, p: ArrayLike | None, alpha: float,
                            cover: ArrayLike | None = None) -> tuple[cp.Expression, list[cp.Constraint]]:
    """ES in Rockafellar–Uryasev LP form: ``t + 1/(1 − α) · pᵀu`` with ``u >= cover·L − t``, ``u >= 0``.

    Returns the expression and the constraints on its auxiliary variables t (scalar) and u (S,), which the caller
    must add to the problem.  The expression is an upper bound of ES for every feasible (t, u) and equals ES at the
    optimum, so it is exact when minimized, or when used on the small side of a constraint ``expr <= b`` (the
    solver is free to choose t and u: the constraint holds iff ES <= b).  It is *not* ES when maximized or used
    in ``expr >= b``.
    """
    alpha = _check_alpha(alpha)
    counted = _counted_expr(L_expr, cover)
    n = counted.shape[0]
    prob = probabilities(p, n)
    t = cp.Variable(name="es_threshold")
    u = cp.Variable(n, nonneg=True, name="es_excess")
    return t + (prob / (1.0 - alpha)) @ u, [u >= counted - t]


_STANDARD_NORMAL = NormalDist()  # the standard library's: exact to double precision, cheap to import


# == parametric (delta-normal) ======================================================================================

def normal_quantile(alpha: float) -> float:
    """z_α of the standard normal (z_0.99 = 2.3263478740…)."""
    return _STANDARD_NORMAL.inv_cdf(_check_alpha(alpha))


def normal_es_factor(alpha: float) -> float:
    """ES of a standard normal loss at α: φ(z_α) / (1 − α) (2.6652142203… at 0.99, 2.3378027922… at 0.975)."""
    return _STANDARD_NORMAL.pdf(normal_quantile(alpha)) / (1.0 - alpha)


def cov_factor(cov: ArrayLike) -> np.ndarray:
    """A factor F (A, k) with F Fᵀ = cov: Cholesky when positive definite, else from the eigen-decomposition
    (singular covariances, e.g. perfectly correlated assets, are allowed; negative eigenvalues beyond rounding
    are an error).  Then δᵀ cov δ = ‖Fᵀδ‖²."""
    sigma = np.asarray(cov, dtype=float)
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1] or not np.all(np.isfinite(sigma)):
        raise ValueError(f"covariance must be a finite square matrix, got shape {sigma.shape}")
    if not np.allclose(sigma, sigma.T, rtol=1e-10, atol=1e-14):
        raise ValueError("covariance must be symmetric")
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        pass
    eigval, eigvec = np.linalg.eigh(sigma)
    if eigval.min() < -1e-10 * max(eigval.max(), 1e-300):
        raise ValueError(f"covariance is not positive semidefinite (eigenvalue {eigval.min():.3g})")
    keep = eigval > 0
    return eigvec[:, keep] * np.sqrt(eigval[keep])


def _horizon_scale(horizon_days: float) -> float:
    if not horizon_days > 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days!r}")
    return float(np.sqrt(horizon_days))


def delta_normal_sigma(delta: ArrayLike, cov: ArrayLike) -> float:
    """One-day loss standard deviation √(δᵀΣδ), USD; δ (A,) USD exposures, Σ (A, A) covariance of daily returns."""
    d = np.asarray(delta, dtype=float)
    return float(np.linalg.norm(cov_factor(cov).T @ d))


def delta_normal_var(delta: ArrayLike, cov: ArrayLike, alpha: float, horizon_days: float = 1.0) -> float:
    """Delta-normal VaR = z_α · √(δᵀΣδ) · √h, USD (zero-mean normal P&L, square-root-of-time scaling)."""
    return normal_quantile(alpha) * delta_normal_sigma(delta, cov) * _horizon_scale(horizon_days)


def delta_normal_es(delta: ArrayLike, cov: ArrayLike, alpha: float, horizon_days: float = 1.0) -> float:
    """Delta-normal ES = φ(z_α)/(1 − α) · √(δᵀΣδ) · √h, USD."""
    return normal_es_factor(alpha) * delta_normal_sigma(delta, cov) * _horizon_scale(horizon_days)


def delta_normal_var_expr(delta_expr: cp.Expression, cov: ArrayLike, alpha: float,
                          horizon_days: float = 1.0) -> cp.Expression:
    """Delta-normal VaR as an SOC expression ``z_α √h ‖Fᵀδ‖₂`` (F Fᵀ = Σ), convex in δ for α >= 0.5."""
    return normal_quantile(alpha) * _horizon_scale(horizon_days) * cp.norm(cov_factor(cov).T @ delta_expr, 2)


def delta_normal_es_expr(delta_expr: cp.Expression, cov: ArrayLike, alpha: float,
                         horizon_days: float = 1.0) -> cp.Expression:
    """Delta-normal ES as an SOC expression ``φ(z_α)/(1 − α) √h ‖Fᵀδ‖₂`` (F Fᵀ = Σ)."""
    return normal_es_factor(alpha) * _horizon_scale(horizon_days) * cp.norm(cov_factor(cov).T @ delta_expr, 2)


# == one object so that callers do not branch =======================================================================

@dataclass(frozen=True)
class RiskMeasure:
    """A scenario risk measure: ``kind`` "es" (expected shortfall at ``alpha``), "worst" (worst case; alpha
    unused) or "var" (value at risk at ``alpha``: evaluation and attribution only, no convex expression)."""

    kind: MeasureKind = "es"
    alpha: float = 0.99

    def __post_init__(self) -> None:
        if self.kind not in ("es", "worst", "var"):
            raise ValueError(f"unknown risk measure kind {self.kind!r} (es, worst or var)")
        _check_alpha(self.alpha)

    def evaluate(self, L: ArrayLike, p: ArrayLike | None = None, cover: ArrayLike | None = None) -> float:
        """The measure of the counted losses cover·L, USD."""
        losses = _losses(L)
        if self.kind == "worst":
            return worst_case(losses, cover)
        counted = coverage(cover, losses.size) * losses
        if self.kind == "es":
            return expected_shortfall(counted, p, self.alpha)
        return value_at_risk(counted, p, self.alpha)

    def weights(self, L: ArrayLike, p: ArrayLike | None = None, cover: ArrayLike | None = None) -> np.ndarray:
        """Scenario weights q (S,), q >= 0, Σ q = 1, with ``evaluate = Σ_s q_s cover_s L_s`` (for VaR: the VaR
        scenario(s), ties split by probability)."""
        losses = _losses(L)
        if self.kind == "worst":
            return worst_case_weights(losses, cover)
        counted = coverage(cover, losses.size) * losses
        prob = probabilities(p, losses.size)
        if self.kind == "es":
            return tail_weights(counted, prob, self.alpha)
        at = (counted == value_at_risk(counted, prob, self.alpha)) * prob
        return at / at.sum()

    def contributions(self, item_losses: ArrayLike, p: ArrayLike | None = None,
                      cover: ArrayLike | None = None) -> np.ndarray:
        """Component (Euler) attribution: item_losses (S, K), whose rows sum to L, → (K,) contributions
        ``Σ_s q_s cover_s item_loss_{s,k}`` that sum exactly to ``evaluate(L)``, USD."""
        items = np.asarray(item_losses, dtype=float)
        if items.ndim != 2:
            raise ValueError(f"item losses must have shape (S, K), got {items.shape}")
        q = self.weights(items.sum(axis=1), p, cover)
        return (q * coverage(cover, items.shape[0])) @ items

    def expression(self, L_expr: cp.Expression, p: ArrayLike | None = None,
                   cover: ArrayLike | None = None) -> tuple[cp.Expression, list[cp.Constraint]]:
        """The convex cvxpy form (epigraph) and its auxiliary constraints, to be added to the problem; exact when
        minimized or bounded above (see :func:`expected_shortfall_expr`)."""
        if self.kind == "worst":
            return worst_case_epigraph(L_expr, cover)
        if self.kind == "es":
            return expected_shortfall_expr(L_expr, p, self.alpha, cover)
        raise ValueError("value at risk is not convex and has no optimizer form: use kind 'es' or 'worst'")


__all__ = [
    "RiskMeasure",
    "cov_factor",
    "coverage",
    "delta_normal_es",
    "delta_normal_es_expr",
    "delta_normal_sigma",
    "delta_normal_var",
    "delta_normal_var_expr",
    "expected_shortfall",
    "expected_shortfall_expr",
    "normal_es_factor",
    "normal_quantile",
    "probabilities",
    "tail_weights",
    "value_at_risk",
    "worst_case",
    "worst_case_epigraph",
    "worst_case_expr",
    "worst_case_weights",
]
