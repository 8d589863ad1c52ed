"""Chart (a): the collateral mix per venue before and after, stacked by asset (USD at book prices)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure

from .data import WALLET, ReportData
from .style import FONT, TEMPLATE, asset_colour, usd_ticks

NAME = "collateral_mix"
TITLE = "Collateral mix per venue, before and after"
STATES = ("before", "after")


def caption(data: ReportData) -> str:
    return ("USD value (units × book price) of every asset posted on each venue — cross collateral and isolated "
            "margins — and held in the wallet, before and after the recommendation. A loan shows below zero.")


def note(data: ReportData) -> str | None:
    return None


def _pivot(data: ReportData) -> tuple[list[str], list[str], pd.DataFrame]:
    """Venues (book order, wallet last), assets (largest first) and the value table indexed (venue, state)."""
    frame = data.collateral
    venues = [v for v in dict.fromkeys(frame["venue"]) if v != WALLET]
    if (frame["venue"] == WALLET).any():
        venues.append(WALLET)
    totals = frame.groupby("asset")["value"].apply(lambda v: v.abs().sum()).sort_values(ascending=False)
    index = pd.MultiIndex.from_product([venues, STATES], names=["venue", "state"])
    table = frame.pivot_table(index=["venue", "state"], columns="asset", values="value", aggfunc="sum")
    return venues, list(totals.index), table.reindex(index).fillna(0.0)


def figure(data: ReportData) -> go.Figure:
    venues, assets, table = _pivot(data)
    x = [[v for v in venues for _ in STATES], [s for _ in venues for s in STATES]]
    fig = go.Figure()
    for asset in assets:
        fig.add_bar(x=x, y=table[asset].to_numpy(), name=asset, marker_color=asset_colour(asset, assets),
                    hovertemplate=f"{asset}<br>%{{x}}<br>%{{y:,.0f}} USD<extra></extra>")
    fig.update_layout(barmode="relative", height=460, font_family=FONT, legend_title_text="asset", template=TEMPLATE,
                      yaxis={"title": "USD", "tickformat": "~s"}, margin={"t": 30, "b": 60})
    return fig


def draw(data: ReportData) -> Figure:
    venues, assets, table = _pivot(data)
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax = fig.add_subplot()
    xs = np.array([3 * i + j for i in range(len(venues)) for j in range(len(STATES))], dtype=float)
    up = np.zeros(len(xs))
    down = np.zeros(len(xs))
    for asset in assets:
        values = table[asset].to_numpy()
        base = np.where(values >= 0, up, down)
        ax.bar(xs, values, bottom=base, width=0.9, color=asset_colour(asset, assets), label=asset)
        up += np.maximum(values, 0.0)
        down += np.minimum(values, 0.0)
    ax.set_xticks(xs, [s for _ in venues for s in STATES], fontsize=8)
    for i, venue in enumerate(venues):
        ax.annotate(venue, (3 * i + 0.5, 0), xycoords=("data", "axes fraction"), xytext=(0, -28),
                    textcoords="offset points", ha="center", fontsize=10, fontweight="bold")
    ax.set_ylabel("USD")
    ax.yaxis.set_major_formatter(usd_ticks())
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(title="asset", loc="upper left", fontsize=8)
    ax.set_title(TITLE)
    return fig

