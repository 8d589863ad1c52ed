"""Historical simulation: the joint returns actually seen in a price window, one scenario per overlapping window."""

from __future__ import annotations

import numpy as np

from ..errors import RiskModelError
from ..market_data import PriceWindow, iso
from .base import ScenarioSet


def check_horizon(window: PriceWindow, horizon_days: int) -> int:
    """``horizon_days`` as an int in 1..n_returns, else :class:`RiskModelError`."""
    h = int(horizon_days)
    if h != horizon_days or h < 1:
        raise RiskModelError(f"horizon {horizon_days} days must be a whole number >= 1", "use e.g. 1 or 2")
    if h > window.n_returns:
        raise RiskModelError(f"horizon {h} days is longer than the window's {window.n_returns} daily returns",
                             "lengthen window_days or shorten horizon_days")
    return h


def window_meta(window: PriceWindow) -> dict[str, object]:
    """What a report needs to say about the data behind a set: source, pegged assets and filled dates."""
    return {"source": window.source, "pegged": window.pegged, "filled": dict(window.filled)}


def return_span(window: PriceWindow) -> tuple[str, str]:
    """(first, last) day whose daily return is in the window: the day after the first price, and the last day."""
    return iso(window.prices.index[1]), iso(window.end)


def historical(window: PriceWindow, horizon_days: int = 1) -> ScenarioSet:
    """Overlapping ``horizon_days`` simple returns ``P[t+h] / P[t] − 1`` of the window, uniform weights.

    One scenario per h-day sub-window (``n_returns − h + 1`` scenarios), labelled with its ISO end date;
    ``window`` = (first, last) day of the daily returns used.  Pegged assets' returns are exactly 0.
    """
    h = check_horizon(window, horizon_days)
    returns = window.simple_returns(h)
    pegged = [i for i, a in enumerate(window.assets) if a in window.pegged]
    returns[:, pegged] = 0.0
    return ScenarioSet(assets=window.assets, returns=returns, labels=window.return_labels(h), kind="historical",
                       horizon_days=h, window=return_span(window), meta=window_meta(window))


def as_simple(log_returns: np.ndarray) -> np.ndarray:
    """Log returns → simple returns exp(x) − 1 (> −1 for any finite x)."""
    return np.expm1(log_returns)
