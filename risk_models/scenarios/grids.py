"""Venue-style scenario grids, one risk unit (underlying asset) at a time: CME SPAN, Deribit, OKX MR1/MR6.

A single-asset grid shocks only its asset; :func:`grid_for_assets` stacks grids of several assets into one set
whose other assets are 0 in each block, and records the risk unit of every scenario so that scanning risk can be
taken per unit (``meta["risk_unit"]``, ``meta["units"]``: asset → (first index, stop)).  Returns are price moves
(fractions of the current price); vol moves are relative implied-volatility shocks in ``vol_shocks``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import RiskModelError
from ..span import NSE_EXTREME_COVER, NSE_EXTREME_MULTIPLE, span_cover, span_price_moves
from .base import ScenarioSet

OKX_GROUPS: dict[str, tuple[tuple[float, ...], float]] = {
    "BTC": ((0.0, 0.04, 0.08, 0.12), 0.24), "ETH": ((0.0, 0.04, 0.08, 0.12), 0.24),
    "SOL": ((0.0, 0.06, 0.12, 0.18), 0.36), "DOGE": ((0.0, 0.06, 0.12, 0.18), 0.36),
}
"""OKX portfolio margin 2025-01 spot-shock grid (moves, extreme) per underlying."""
OKX_OTHERS: tuple[tuple[float, ...], float] = ((0.0, 0.08, 0.16, 0.25), 0.50)
"""OKX grid for underlyings not in :data:`OKX_GROUPS`."""


def _check_range(value: float, name: str, what: str) -> float:
    if not 0.0 < value < 1.0:
        raise RiskModelError(f"{name} = {value} must lie in (0, 1) so that {what} stays above a price of 0",
                             f"give {name} as a fraction of the price, e.g. 0.16")
    return float(value)


def _grid(asset: str, moves: Sequence[float], vols: Sequence[float], labels: Sequence[str], kind: str,
          cover: Sequence[float] | None = None, component: Sequence[str] | None = None) -> ScenarioSet:
    s = len(moves)
    meta: dict[str, object] = {"grid": kind, "risk_unit": (asset,) * s, "units": {asset: (0, s)}}
    if component is not None:
        meta["component"] = tuple(component)
    return ScenarioSet(assets=(asset,), returns=np.asarray(moves, dtype=float)[:, None], labels=tuple(labels),
                       kind="grid", cover=None if cover is None else np.asarray(cover, dtype=float),
                       vol_shocks=np.asarray(vols, dtype=float)[:, None], meta=meta)


def span_grid(asset: str, scan_range: float, extreme_multiple: float = NSE_EXTREME_MULTIPLE,
              extreme_cover: float = NSE_EXTREME_COVER, *, vol_up: float = 0.0,
              vol_down: float | None = None) -> ScenarioSet:
    """The 16 CME SPAN scenarios for one asset, in the order of published risk arrays (index i = scenario i+1):

    price 0, +1/3, −1/3, +2/3, −2/3, +3/3, −3/3 of ``scan_range`` (a fraction of the price), each with vol up
    (+``vol_up``) then vol down (−``vol_down``, default ``vol_up``): 14 scenarios; then the extreme moves
    +/− ``extreme_multiple`` × range at unchanged vol with ``cover`` = ``extreme_cover``.
    """
    _check_range(scan_range, "scan_range", "a full move down")
    _check_range(scan_range * extreme_multiple, "scan_range × extreme_multiple", "the extreme move down")
    if not 0.0 <= extreme_cover <= 1.0:
        raise RiskModelError(f"extreme_cover = {extreme_cover} must lie in [0, 1]", "use e.g. 0.35")
    down = vol_up if vol_down is None else vol_down
    moves = span_price_moves(extreme_multiple) * scan_range  # the order of risk arrays (risk_models.span)
    vols = [vol_up, -down] * 7 + [0.0, 0.0]
    steps = ("0", "+1/3", "-1/3", "+2/3", "-2/3", "+1", "-1")
    labels = [f"{asset} span price {t} vol {v}" for t in steps for v in ("up", "down")]
    labels += [f"{asset} span extreme +{extreme_multiple:g}x", f"{asset} span extreme -{extreme_multiple:g}x"]
    cover = span_cover(extreme_cover)
    return _grid(asset, moves, vols, labels, "span", cover)


def deribit_grid(asset: str, price_range: float, buckets_count: int = 4, vol_up: float = 0.0,
                 vol_down: float = 0.0) -> ScenarioSet:
    """Deribit portfolio-margin grid: ``2 × buckets_count + 1`` evenly spaced price moves from −``price_range`` to
    +``price_range`` (ascending), each with vol up (+``vol_up``), unchanged, down (−``vol_down``): 27 for 4 buckets.
    """
    _check_range(price_range, "price_range", "the largest move down")
    if int(buckets_count) != buckets_count or buckets_count < 1:
        raise RiskModelError(f"buckets_count = {buckets_count} must be a whole number >= 1", "Deribit uses 4")
    n = int(buckets_count)
    moves, vols, labels = [], [], []
    for k in range(-n, n + 1):
        move = price_range * k / n
        for vol, vol_name in ((vol_up, "up"), (0.0, "same"), (-vol_down, "down")):
            moves.append(move)
            vols.append(vol)
            labels.append(f"{asset} deribit {move:+.2%} vol {vol_name}")
    return _grid(asset, moves, vols, labels, "deribit")


def okx_mr1_grid(asset: str, moves: Sequence[float] | None = None, extreme: float | None = None) -> ScenarioSet:
    """OKX spot-shock grid: 0, then +m, −m for each non-zero m in ``moves`` (component "MR1"), then +/−``extreme``
    (component "MR6", counted in full).  Defaults: :data:`OKX_GROUPS` for the asset, else :data:`OKX_OTHERS`.
    """
    group_moves, group_extreme = OKX_GROUPS.get(asset, OKX_OTHERS)
    moves = group_moves if moves is None else tuple(moves)
    extreme = group_extreme if extreme is None else extreme
    steps = sorted({abs(float(m)) for m in moves if m != 0})
    for m in [*steps, extreme]:
        _check_range(m, "move", "the move down")
    out = [0.0] + [v for m in steps for v in (m, -m)]
    labels = [f"{asset} okx spot {m:+.2%}" for m in out]
    component = ["MR1"] * len(out) + ["MR6", "MR6"]
    out += [extreme, -extreme]
    labels += [f"{asset} okx extreme {extreme:+.2%}", f"{asset} okx extreme {-extreme:+.2%}"]
    return _grid(asset, out, [0.0] * len(out), labels, "okx", component=component)


GRID_BUILDERS: dict[str, Callable[..., ScenarioSet]] = {"span": span_grid, "deribit": deribit_grid,
                                                        "okx": okx_mr1_grid}


def stack_grids(grids: Sequence[ScenarioSet]) -> ScenarioSet:
    """Stack single-asset grids (one per risk unit, distinct assets) block-diagonally into one set.

    Each block shocks its own asset and leaves the others at 0; ``meta["risk_unit"]`` names the unit of every
    scenario and ``meta["units"]`` its (first index, stop) range.  Weights uniform; cover and vol shocks kept.
    """
    if not grids:
        raise RiskModelError("no grids to stack", "give at least one asset")
    units: dict[str, tuple[int, int]] = {}
    for g in grids:
        if len(g.assets) != 1:
            raise RiskModelError(f"grid over {g.assets} is not a single risk unit", "build one grid per asset")
        if g.assets[0] in units:
            raise RiskModelError(f"two grids for {g.assets[0]}", "give each asset one grid")
        units[g.assets[0]] = (0, 0)
    assets = tuple(units)
    total = sum(g.n_scenarios for g in grids)
    returns, vols = np.zeros((total, len(assets))), np.zeros((total, len(assets)))
    row = 0
    for j, g in enumerate(grids):
        stop = row + g.n_scenarios
        returns[row:stop, j] = g.returns[:, 0]
        if g.vol_shocks is not None:
            vols[row:stop, j] = g.vol_shocks[:, 0]
        units[assets[j]] = (row, stop)
        row = stop
    horizons = {g.horizon_days for g in grids}
    if len(horizons) > 1:
        raise RiskModelError(f"grids with horizons {sorted(horizons)}", "build every grid with one horizon")
    meta: dict[str, object] = {
        "grid": tuple(dict.fromkeys(str(g.meta.get("grid")) for g in grids)),
        "risk_unit": tuple(a for g in grids for a in g.meta["risk_unit"]),
        "units": units,
    }
    if any("component" in g.meta for g in grids):
        meta["component"] = tuple(c for g in grids
                                  for c in g.meta.get("component", ("",) * g.n_scenarios))
    return ScenarioSet(assets=assets, returns=returns, labels=tuple(lab for g in grids for lab in g.labels),
                       kind="grid", horizon_days=horizons.pop(),
                       cover=np.concatenate([g.coverage for g in grids]), vol_shocks=vols, meta=meta)


def grid_for_assets(kind: str, params: Mapping[str, Mapping[str, object]]) -> ScenarioSet:
    """Per-risk-unit grids of one ``kind`` ("span", "deribit", "okx") for each asset of ``params`` (asset →
    keyword arguments of the builder, e.g. ``{"BTC": {"price_range": 0.16}}``), stacked by :func:`stack_grids`.
    """
    if kind not in GRID_BUILDERS:
        raise RiskModelError(f"unknown grid kind {kind!r}", f"use one of: {', '.join(GRID_BUILDERS)}")
    builder = GRID_BUILDERS[kind]
    grids = []
    for asset, kwargs in params.items():
        try:
            inspect.signature(builder).bind(asset, **kwargs)
        except TypeError as exc:
            raise RiskModelError(f"bad {kind} grid parameters for {asset}: {exc}",
                                 f"see the arguments of {builder.__name__}") from None
        grids.append(builder(asset, **kwargs))
    return stack_grids(grids)
