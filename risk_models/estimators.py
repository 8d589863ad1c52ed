"""Covariance estimators of daily returns, PSD repair and horizon scaling.

Estimators follow the scikit-learn/skfolio shape: parameters in ``__init__``, ``fit(returns)`` returns ``self``,
results in trailing-underscore attributes: ``covariance_`` (A×A, per day, in return units²) and ``mean_`` (A,
per day).  ``returns`` is a (T, A) array of daily returns (T observations, A assets), finite.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .errors import RiskModelError

RISKMETRICS_LAMBDA = 0.94
"""RiskMetrics daily decay: half-life ln 0.5 / ln 0.94 ≈ 11.2 observations."""
EWMA_SEED_OBS = 20
"""Number of first returns whose mean square seeds the EWMA recursion."""


def as_returns(returns: np.ndarray, *, min_obs: int = 1) -> np.ndarray:
    """``returns`` as a finite float (T, A) array with T >= ``min_obs``; a 1-D array is one asset."""
    x = np.asarray(returns, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise RiskModelError(f"returns must be a (T, A) array, got shape {x.shape}", "pass one column per asset")
    if x.shape[0] < min_obs:
        raise RiskModelError(f"{x.shape[0]} observations, at least {min_obs} needed", "use a longer window")
    if not np.all(np.isfinite(x)):
        raise RiskModelError("returns contain NaN or infinite values", "fill or drop the gaps before fitting")
    return x


def half_life_to_lambda(half_life: float) -> float:
    """Decay λ whose weights halve every ``half_life`` observations: λ = 0.5 ** (1 / h)."""
    if not half_life > 0:
        raise RiskModelError(f"half-life {half_life} must be > 0", "give a half-life in observations, e.g. 11.2")
    return 0.5 ** (1.0 / half_life)


def lambda_to_half_life(lam: float) -> float:
    """Half-life in observations of decay λ: ln 0.5 / ln λ (0.94 → 11.2)."""
    _check_lambda(lam)
    return math.log(0.5) / math.log(lam)


def _check_lambda(lam: float) -> float:
    if not 0.0 < lam < 1.0:
        raise RiskModelError(f"decay λ = {lam} must lie in (0, 1)", "use e.g. 0.94 (RiskMetrics daily)")
    return float(lam)


class SampleCovariance:
    """Unbiased sample covariance (``ddof`` = 1) and sample mean."""

    def __init__(self, ddof: int = 1) -> None:
        self.ddof = ddof

    def fit(self, returns: np.ndarray) -> SampleCovariance:
        x = as_returns(returns, min_obs=self.ddof + 1)
        self.mean_ = x.mean(axis=0)
        centered = x - self.mean_
        self.covariance_ = centered.T @ centered / (x.shape[0] - self.ddof)
        self.n_observations_ = x.shape[0]
        return self


def _ewma_forecast(x: np.ndarray, lam: float, seed_obs: int) -> np.ndarray:
    """Zero-mean EWMA second moment Σ_T: Σ_0 = mean of r rᵀ over the first ``seed_obs`` returns,
    Σ_{t+1} = λ Σ_t + (1 − λ) r_t r_tᵀ."""
    k = max(1, min(seed_obs, x.shape[0]))
    cov = x[:k].T @ x[:k] / k
    for row in x:
        cov = lam * cov + (1.0 - lam) * np.outer(row, row)
    return cov


def _ewma_variances(x: np.ndarray, lam: float, seed_obs: int) -> np.ndarray:
    """(T + 1, A) EWMA variances σ²_0 … σ²_T: the diagonal of the recursion in :func:`_ewma_forecast`."""
    t_obs = x.shape[0]
    k = max(1, min(seed_obs, t_obs))
    out = np.empty((t_obs + 1, x.shape[1]))
    out[0] = np.mean(x[:k] ** 2, axis=0)
    sq = (1.0 - lam) * x**2
    for t in range(t_obs):
        out[t + 1] = lam * out[t] + sq[t]
    return out


class EWMACovariance:
    """RiskMetrics exponentially weighted covariance, zero mean.

    ``lam`` (default 0.94) or ``half_life`` h in observations (λ = 0.5 ** (1/h); 0.94 ≈ 11.2).  Recursion
    Σ_{t+1} = λ Σ_t + (1 − λ) r_t r_tᵀ seeded with the mean of r rᵀ over the first ``seed_obs`` returns;
    ``covariance_`` is Σ_T, the forecast for the day after the last return.  ``mean_`` is zero by convention.
    """

    def __init__(self, lam: float | None = None, *, half_life: float | None = None,
                 seed_obs: int = EWMA_SEED_OBS) -> None:
        self.lam = lam
        self.half_life = half_life
        self.seed_obs = seed_obs

    def fit(self, returns: np.ndarray) -> EWMACovariance:
        if self.lam is not None and self.half_life is not None:
            raise RiskModelError("both lam and half_life given", "give one of them")
        lam = half_life_to_lambda(self.half_life) if self.half_life is not None else (
            RISKMETRICS_LAMBDA if self.lam is None else self.lam)
        self.lam_ = _check_lambda(lam)
        x = as_returns(returns)
        cov = _ewma_forecast(x, self.lam_, self.seed_obs)
        self.covariance_ = (cov + cov.T) / 2
        self.mean_ = np.zeros(x.shape[1])
        self.n_observations_ = x.shape[0]
        return self


def ewma_volatility(returns: np.ndarray, lam: float = RISKMETRICS_LAMBDA, *, seed_obs: int = EWMA_SEED_OBS,
                    include_forecast: bool = False) -> np.ndarray:
    """Running EWMA volatilities (per day, return units), shape (T, A): row t is σ_t, the volatility of r_t
    forecast from the returns before t (row 0 is the seed, see :class:`EWMACovariance`).  With
    ``include_forecast`` a last row σ_T (tomorrow's forecast, = √diag of ``EWMACovariance.covariance_``) is added.
    """
    x = as_returns(returns)
    var = _ewma_variances(x, _check_lambda(lam), seed_obs)
    return np.sqrt(var if include_forecast else var[:-1])


class ShrunkCovariance:
    """Shrinkage covariance from scikit-learn: ``method`` "ledoit_wolf" (LedoitWolf) or "oas" (OAS).

    ``shrinkage_`` is the fitted shrinkage intensity; ``mean_`` the sample mean.
    """

    _METHODS: ClassVar[dict[str, str]] = {"ledoit_wolf": "LedoitWolf", "oas": "OAS"}

    def __init__(self, method: str = "ledoit_wolf") -> None:
        self.method = method

    def fit(self, returns: np.ndarray) -> ShrunkCovariance:
        if self.method not in self._METHODS:
            raise RiskModelError(f"unknown shrinkage method {self.method!r}",
                                 f"use one of: {', '.join(self._METHODS)}")
        x = as_returns(returns, min_obs=2)
        from sklearn import covariance  # imported here: scikit-learn is slow to import and rarely needed

        model = getattr(covariance, self._METHODS[self.method])().fit(x)
        self.covariance_ = np.asarray(model.covariance_)
        self.mean_ = np.asarray(model.location_)
        self.shrinkage_ = float(model.shrinkage_)
        self.n_observations_ = x.shape[0]
        return self


def nearest_psd(matrix: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Symmetric PSD repair: symmetrize, clip eigenvalues below ``eps`` to ``eps``.

    With ``eps`` = 0 this is the nearest PSD matrix in Frobenius norm to the symmetric part (Higham 1988).
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.all(np.isfinite(m)):
        raise RiskModelError(f"cannot repair a {m.shape} matrix with non-finite or non-square data",
                             "pass a finite square covariance matrix")
    if eps < 0:
        raise RiskModelError(f"eps = {eps} must be >= 0", "use 0 or a small positive floor such as 1e-12")
    sym = (m + m.T) / 2
    values, vectors = np.linalg.eigh(sym)
    out = (vectors * np.maximum(values, eps)) @ vectors.T
    return (out + out.T) / 2


def scale_to_horizon(cov: np.ndarray, horizon_days: float) -> np.ndarray:
    """Daily covariance → covariance over ``horizon_days`` (× h: i.i.d. returns, volatility × √h)."""
    if not horizon_days > 0:
        raise RiskModelError(f"horizon {horizon_days} days must be > 0", "use e.g. 1 or 2 days")
    return np.asarray(cov, dtype=float) * horizon_days


def annualize(cov: np.ndarray, days_per_year: float = 365) -> np.ndarray:
    """Daily covariance → annual (× 365: crypto trades every day; use 252 for exchange-day data)."""
    return scale_to_horizon(cov, days_per_year)
