"""Parametric Monte Carlo scenarios from a covariance of daily log returns (normal or Student-t)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import RiskModelError
from ..market_data import DEFAULT_PEGGED
from .base import ScenarioSet
from .historical import as_simple

PSD_TOLERANCE = 1e-10
"""Eigenvalues down to −tolerance × the largest are treated as 0; below that the covariance is rejected."""


def covariance_factor(covariance: np.ndarray) -> np.ndarray:
    """A (A, A) factor L with L Lᵀ = ``covariance`` (symmetric PSD; from its eigen-decomposition)."""
    cov = np.asarray(covariance, dtype=float)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.all(np.isfinite(cov)):
        raise RiskModelError(f"covariance must be a finite square matrix, got shape {cov.shape}",
                             "fit an estimator from risk_models.estimators")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
        raise RiskModelError("covariance is not symmetric", "repair it with risk_models.estimators.nearest_psd")
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    if values.size and values.min() < -PSD_TOLERANCE * max(values.max(), 0.0):
        raise RiskModelError(f"covariance is not positive semi-definite (eigenvalue {values.min():.3g})",
                             "repair it with risk_models.estimators.nearest_psd")
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def monte_carlo(covariance: np.ndarray, assets: Sequence[str], n_scenarios: int = 10_000, *, seed: int = 0,
                horizon_days: int = 1, distribution: str = "normal", dof: float | None = None,
                mean: np.ndarray | None = None, pegged: Sequence[str] = DEFAULT_PEGGED) -> ScenarioSet:
    """``n_scenarios`` joint draws of h-day log returns x ~ μh + √h · L z, returned as simple returns exp(x) − 1.

    ``covariance`` (A×A) and ``mean`` (A,, default 0) are per day, of log returns.  ``distribution`` "normal", or
    "student_t" with ``dof`` ν > 2 degrees of freedom, scaled by √((ν − 2)/ν) so that its covariance equals the
    input.  ``seed`` makes the draws reproducible.  Pegged assets return 0.  Labels "mc-000001", ….
    """
    assets = tuple(assets)
    factor = covariance_factor(covariance)
    a = len(assets)
    if factor.shape[0] != a:
        raise RiskModelError(f"covariance is {factor.shape[0]}×{factor.shape[0]} for {a} assets",
                             "fit the covariance on the same assets, in the same order")
    if int(n_scenarios) != n_scenarios or n_scenarios < 1:
        raise RiskModelError(f"n_scenarios = {n_scenarios} must be a whole number >= 1", "use e.g. 10000")
    if int(horizon_days) != horizon_days or horizon_days < 1:
        raise RiskModelError(f"horizon {horizon_days} days must be a whole number >= 1", "use e.g. 1 or 2")
    mu = np.zeros(a) if mean is None else np.asarray(mean, dtype=float)
    if mu.shape != (a,) or not np.all(np.isfinite(mu)):
        raise RiskModelError(f"mean must be a finite vector of {a} daily log returns", "or leave it out (0)")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((int(n_scenarios), a))
    if distribution == "normal":
        if dof is not None:
            raise RiskModelError("dof given for the normal distribution", "use distribution='student_t'")
        shocks = z
    elif distribution == "student_t":
        if dof is None or not dof > 2:
            raise RiskModelError(f"Student-t needs dof > 2 (got {dof})", "use e.g. dof=4 for fat tails")
        w = rng.chisquare(dof, size=(int(n_scenarios), 1))
        shocks = z * np.sqrt((dof - 2.0) / w)
    else:
        raise RiskModelError(f"unknown distribution {distribution!r}", "use 'normal' or 'student_t'")
    h = int(horizon_days)
    x = mu * h + np.sqrt(h) * shocks @ factor.T
    x[:, [i for i, name in enumerate(assets) if name in set(pegged)]] = 0.0
    labels = tuple(f"mc-{i:06d}" for i in range(1, int(n_scenarios) + 1))
    meta = {"distribution": distribution, "dof": dof, "seed": seed, "pegged": tuple(a for a in assets if a in pegged)}
    return ScenarioSet(assets=assets, returns=as_simple(x), labels=labels, kind="parametric", horizon_days=h,
                       meta=meta)
