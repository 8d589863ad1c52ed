"""Shared look of the report's charts: colours per asset and state, number formats (USD)."""

from __future__ import annotations

import math

from matplotlib.ticker import FuncFormatter

ASSET_COLOURS = {"USDT": "#26a17b", "USDC": "#2775ca", "BTC": "#f7931a", "ETH": "#627eea", "LTC": "#9aa3ad",
                 "SOL": "#9945ff", "BNB": "#f3ba2f"}
PALETTE = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728")
BEFORE = "#9aa3ad"
BEFORE_MARK = "#1d2329"
AFTER = "#1f6fb2"
REQUIREMENT = "#d62728"
EQUITY = "#2ca02c"
UP = "#e8833a"
DOWN = "#2ca02c"
TOTAL = "#1f6fb2"
FONT = "DejaVu Sans, Arial, sans-serif"
TEMPLATE = "plotly_white"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def asset_colour(asset: str, order: list[str]) -> str:
    """A fixed colour for well-known assets, else one of the palette by position in ``order``."""
    if asset in ASSET_COLOURS:
        return ASSET_COLOURS[asset]
    return PALETTE[order.index(asset) % len(PALETTE)] if asset in order else PALETTE[0]


def short_usd(x: float | None) -> str:
    """1234567 → '1.23M', -950 → '-950'; None/NaN → '—'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) < 0.5:  # solver round-off around a binding constraint
        return "0"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


def usd(x: float | None, digits: int = 0) -> str:
    """Thousands-separated USD amount; None → '—'; no '-0' for round-off below the last digit."""
    if x is None:
        return "—"
    return f"{0.0 if abs(x) < 0.5 * 10.0 ** -digits else x:,.{digits}f}"


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) for ``n`` small multiples."""
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols) if n else 1, cols


def usd_ticks() -> FuncFormatter:
    """Matplotlib tick labels in short USD (1.5M); one per axis."""
    return FuncFormatter(lambda value, _: short_usd(value))
