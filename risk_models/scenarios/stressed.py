"""Stress scenarios: named historical stress windows, the policy's named joint shocks, and combining sets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError, RiskModelError
from ..market_data import DEFAULT_PEGGED, PriceHistory, PriceWindow
from .base import ScenarioSet
from .historical import historical


@dataclass(frozen=True)
class StressWindow:
    """A named stretch of history: prices from ``start`` to ``end`` (ISO days; returns from the day after start).

    ``unpegged`` assets are priced from their data in this window even when the policy pegs them (a depeg).
    """

    name: str
    start: str
    end: str
    description: str
    unpegged: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        """Number of daily returns in the window."""
        return (pd.Timestamp(self.end) - pd.Timestamp(self.start)).days


STRESS_WINDOWS: dict[str, StressWindow] = {w.name: w for w in (
    StressWindow("2020-03", "2020-03-01", "2020-03-31", "COVID crash (BTC −37 % on 2020-03-12)"),
    StressWindow("2021-05", "2021-05-01", "2021-05-31", "May 2021 sell-off (2021-05-19)"),
    StressWindow("2022-05", "2022-05-01", "2022-05-31", "LUNA/UST collapse"),
    StressWindow("2022-11", "2022-11-01", "2022-11-30", "FTX collapse (2022-11-08..09, SOL −42 % in a day)"),
    StressWindow("2023-03", "2023-03-01", "2023-03-31", "SVB failure and USDC depeg (2023-03-11)", ("USDC",)),
)}
"""The stress windows of the shipped data, by name."""


def stressed(history: PriceHistory, name: str, assets: Sequence[str], horizon_days: int = 1,
             pegged: Sequence[str] = DEFAULT_PEGGED, *, proxies: Mapping[str, str] | None = None) -> ScenarioSet:
    """Historical simulation restricted to the stress window ``name`` (kind "stressed", labels = ISO end dates).

    Pegged assets stay at 0 except the window's ``unpegged`` ones (USDC in "2023-03").  ``proxies`` maps an asset
    without data in the window (SOL in 2020-03) to one whose returns stand in for it; recorded in
    ``meta["proxies"]``.  An asset with neither data nor a proxy is an error naming its first quote.
    """
    if name not in STRESS_WINDOWS:
        raise RiskModelError(f"unknown stress window {name!r}", f"use one of: {', '.join(STRESS_WINDOWS)}")
    sw = STRESS_WINDOWS[name]
    proxies = dict(proxies or {})
    pegged_here = tuple(a for a in pegged if a not in sw.unpegged)
    assets = tuple(assets)
    sources = tuple(dict.fromkeys(proxies.get(a, a) for a in assets))
    win = history.window(sources, end=sw.end, days=sw.days, pegged=pegged_here, min_returns=1)
    prices = win.prices[[proxies.get(a, a) for a in assets]].copy()
    prices.columns = list(assets)
    filled = {a: win.filled[proxies.get(a, a)] for a in assets if proxies.get(a, a) in win.filled}
    window = PriceWindow(prices, tuple(a for a in assets if a in pegged_here), filled, win.source)
    base = historical(window, horizon_days)
    used = {a: p for a, p in proxies.items() if a in assets and a != p}
    meta = dict(base.meta) | {"stress_window": sw.name, "description": sw.description, "proxies": used}
    return dataclasses.replace(base, kind="stressed", meta=meta)


def _field(item: object, name: str) -> object:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def named_shocks(stress_scenarios: Sequence[Mapping[str, object] | object], assets: Sequence[str],
                 horizon_days: int = 1, *, file: str = "policy", key: str = "stress_scenarios") -> ScenarioSet:
    """The policy's ``stress_scenarios`` ({name, shocks: {ASSET: return}}) as a set (kind "named_shocks").

    One scenario per entry, labelled by its name; assets not shocked return 0.  A shock names an asset outside
    ``assets``, a return <= −1 or non-finite, or a repeated name: :class:`InputError` naming ``file`` and the key.
    The shocks are applied as given whatever ``horizon_days`` (which only labels the set for :func:`combine`).
    """
    assets = tuple(assets)
    index = {a: i for i, a in enumerate(assets)}
    if not stress_scenarios:
        raise InputError(file, key, "no stress scenarios given", "add {name, shocks} entries or omit the set")
    returns = np.zeros((len(stress_scenarios), len(assets)))
    labels: list[str] = []
    for s, item in enumerate(stress_scenarios):
        name, shocks = _field(item, "name"), _field(item, "shocks")
        if not isinstance(name, str) or not name:
            raise InputError(file, f"{key}[{s}].name", "missing or empty name", "give every scenario a name")
        if name in labels:
            raise InputError(file, f"{key}[{s}].name", f"scenario name {name!r} used twice", "rename one of them")
        if not isinstance(shocks, Mapping) or not shocks:
            raise InputError(file, f"{key}[{s}].shocks", "missing or empty shocks",
                             "give at least one {ASSET: return}, e.g. {BTC: -0.1}")
        for asset, value in shocks.items():
            where = f"{key}[{s}].shocks.{asset}"
            if asset not in index:
                raise InputError(file, where, f"unknown asset {asset!r} in scenario {name!r}",
                                 f"shock only assets of the book ({', '.join(assets)})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= -1:
                raise InputError(file, where, f"shock {value!r} must be a finite return > -1",
                                 "write a simple return, e.g. -0.3 for a 30 % fall")
            returns[s, index[asset]] = float(value)
        labels.append(name)
    return ScenarioSet(assets=assets, returns=returns, labels=tuple(labels), kind="named_shocks",
                       horizon_days=int(horizon_days), meta={"source": file})


def combine(*sets: ScenarioSet, pegged: Sequence[str] = DEFAULT_PEGGED,
            mass: Sequence[float] | None = None) -> ScenarioSet:
    """Concatenate scenario sets of one horizon into one (kind "combined"; labels, cover and vol shocks kept).

    Assets: the union in order of first appearance; an asset missing from a set gets return 0 there only if it
    is pegged, otherwise :class:`RiskModelError`.  Weights: by default every scenario counts equally
    (uniform 1/S over all scenarios, whatever the parts' own weights).  ``mass`` gives each set's total
    probability instead (non-negative, summing to 1; e.g. ``(1, 0)`` adds stress scenarios that bind in the
    worst case but carry no probability); within a set its own weights are kept.  ``meta["parts"]`` lists
    (kind, first index, count) per part; ``meta["part_of"]`` the part index of each scenario.
    """
    if not sets:
        raise RiskModelError("nothing to combine", "pass at least one ScenarioSet")
    horizons = {s.horizon_days for s in sets}
    if len(horizons) > 1:
        raise RiskModelError(f"cannot combine horizons {sorted(horizons)} days",
                             "generate every set with the same horizon_days")
    assets = tuple(dict.fromkeys(a for s in sets for a in s.assets))
    pegged_set = set(pegged)
    for i, s in enumerate(sets):
        missing = [a for a in assets if a not in s.assets and a not in pegged_set]
        if missing:
            raise RiskModelError(f"set {i} ({s.kind}) has no returns for {', '.join(missing)}",
                                 "generate every set for the same assets (only pegged assets may be absent)")
    returns = np.vstack([_columns(s.returns, s.assets, assets, s.n_scenarios) for s in sets])
    n = np.array([s.n_scenarios for s in sets])
    if mass is None:
        weights = None
    else:
        m = np.asarray(mass, dtype=float)
        if m.shape != (len(sets),) or np.any(m < 0) or not np.isclose(m.sum(), 1.0):
            raise RiskModelError(f"mass {list(mass)} must give one non-negative share per set, summing to 1",
                                 "e.g. mass=(1.0, 0.0) for a base set plus zero-probability stress scenarios")
        weights = np.concatenate([share * s.probabilities for share, s in zip(m, sets, strict=True)])
        weights = weights / weights.sum()
    vol = None
    if any(s.vol_shocks is not None for s in sets):
        vol = np.vstack([_columns(s.vol_shocks, s.assets, assets, s.n_scenarios) for s in sets])
    cover = None if all(s.cover is None for s in sets) else np.concatenate([s.coverage for s in sets])
    windows = [s.window for s in sets if s.window is not None]
    window = (min(w[0] for w in windows), max(w[1] for w in windows)) if windows else None
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    meta = {"parts": tuple((s.kind, int(a), int(c)) for s, a, c in zip(sets, starts, n, strict=True)),
            "part_of": np.repeat(np.arange(len(sets)), n), "pegged": tuple(pegged)}
    return ScenarioSet(assets=assets, returns=returns, labels=tuple(lab for s in sets for lab in s.labels),
                       kind="combined", horizon_days=sets[0].horizon_days, weights=weights,
                       cover=cover, vol_shocks=vol, window=window, meta=meta)


def _columns(values: np.ndarray | None, have: tuple[str, ...], want: tuple[str, ...], n: int) -> np.ndarray:
    """(n, len(want)) exact copy of the columns of ``values`` (n, len(have)); absent assets (or values) are 0."""
    out = np.zeros((n, len(want)))
    if values is not None:
        for j, a in enumerate(want):
            if a in have:
                out[:, j] = values[:, have.index(a)]
    return out
