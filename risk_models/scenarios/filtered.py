"""Filtered historical simulation (Hull & White 1998; Barone-Adesi et al. 1999).

Method, per asset: daily log returns r_t of the window; EWMA volatility σ_t of r_t forecast from the returns before
t (:func:`~risk_models.estimators.ewma_volatility`, seeded with the first ``seed_obs`` returns); today's forecast
σ_T; rescaled returns r*_t = r_t × σ_T / σ_t; h-day scenarios = sums of h consecutive rescaled log returns
(overlapping), converted to simple returns exp(x) − 1.  A constant-volatility history gives back plain historical
returns.  Days with σ_t = 0 (a flat price) give r*_t = 0.  Pegged assets stay at 0.
"""

from __future__ import annotations

import numpy as np

from ..errors import RiskModelError
from ..estimators import EWMA_SEED_OBS, RISKMETRICS_LAMBDA, ewma_volatility, half_life_to_lambda
from ..market_data import PriceWindow
from .base import ScenarioSet
from .historical import as_simple, check_horizon, return_span, window_meta


def filtered_historical(window: PriceWindow, horizon_days: int = 1, lam: float | None = None, *,
                        half_life: float | None = None, seed_obs: int = EWMA_SEED_OBS) -> ScenarioSet:
    """FHS scenarios (see the module docstring); labels = ISO end date of each h-day window, uniform weights.

    ``meta`` adds ``lam`` and ``volatility_today`` (asset → σ_T, today's daily EWMA volatility) for the report.
    """
    h = check_horizon(window, horizon_days)
    if lam is not None and half_life is not None:
        raise RiskModelError("both lam and half_life given", "give one of them")
    if lam is None:
        lam = RISKMETRICS_LAMBDA if half_life is None else half_life_to_lambda(half_life)
    logs = window.log_returns()
    sigma = ewma_volatility(logs, lam, seed_obs=seed_obs, include_forecast=True)
    past, today = sigma[:-1], sigma[-1]
    scaled = np.where(past > 0, logs * (today / np.where(past > 0, past, 1.0)), 0.0)
    pegged = [i for i, a in enumerate(window.assets) if a in window.pegged]
    scaled[:, pegged] = 0.0
    summed = np.lib.stride_tricks.sliding_window_view(scaled, h, axis=0).sum(axis=-1)
    returns = as_simple(summed)
    returns[:, pegged] = 0.0
    meta = window_meta(window) | {
        "lam": float(lam),
        "volatility_today": {a: float(v) for a, v in zip(window.assets, today, strict=True)},
    }
    return ScenarioSet(assets=window.assets, returns=returns, labels=window.return_labels(h),
                       kind="filtered_historical", horizon_days=h, window=return_span(window), meta=meta)
