"""Chart (b): per cross pool after the recommendation, venue MM → net portfolio margin → buffer → posted equity."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from .data import PoolWaterfall, ReportData
from .style import BEFORE_MARK, DOWN, FONT, TEMPLATE, TOTAL, UP, grid, short_usd, usd_ticks

NAME = "margin_waterfall"
TITLE = "Margin waterfall per cross pool (after)"
MEASURES = ("absolute", "relative", "relative", "total", "relative", "total")


def steps(data: ReportData) -> list[str]:
    k = data.summary.buffer
    return ["venue MM", "net PM<br>(k = 1)", f"buffer<br>(k = {k:g})", "required", "headroom", "posted<br>equity"]


def caption(data: ReportData) -> str:
    return ("Each cross pool after the recommendation: the venue's maintenance margin; the net portfolio margin "
            f"with k = 1, ρ(L + MM) over the scenarios ({data.summary.measure}); the buffer that k = "
            f"{data.summary.buffer:g} adds on top, giving the requirement ρ(L + k·MM); the headroom above it; and the "
            "equity posted. The black dash on the last bar is the equity posted before. USD.")


def note(data: ReportData) -> str | None:
    return None if data.waterfalls else "The book has no cross pool."


def deltas(pool: PoolWaterfall) -> list[float]:
    """Bar values in waterfall convention (absolute, relative…, totals as 0)."""
    return [pool.venue_mm, pool.net_portfolio_margin - pool.venue_mm, pool.buffer_add, 0.0, pool.headroom, 0.0]


def levels(pool: PoolWaterfall) -> list[tuple[float, float]]:
    """(bottom, top) of every bar."""
    mm, npm, req, eq = pool.venue_mm, pool.net_portfolio_margin, pool.requirement, pool.equity
    return [(0.0, mm), (mm, npm), (npm, req), (0.0, req), (req, eq), (0.0, eq)]


def figure(data: ReportData) -> go.Figure | None:
    pools = data.waterfalls
    if not pools:
        return None
    rows, cols = grid(len(pools))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p.label for p in pools], vertical_spacing=0.16,
                        horizontal_spacing=0.07)
    x = steps(data)
    for i, pool in enumerate(pools):
        row, col = divmod(i, cols)
        tops = [top for _, top in levels(pool)]
        fig.add_trace(go.Waterfall(
            x=x, y=deltas(pool), measure=list(MEASURES), name=pool.label, showlegend=False,
            text=[short_usd(v) for v in (pool.venue_mm, pool.net_portfolio_margin - pool.venue_mm, pool.buffer_add,
                                         pool.requirement, pool.headroom, pool.equity)],
            textposition=["inside" if m == "total" else "outside" for m in MEASURES], insidetextanchor="end",
            insidetextfont={"color": "white"}, textangle=0, cliponaxis=False, connector={"visible": False},
            increasing={"marker": {"color": UP}}, decreasing={"marker": {"color": DOWN}},
            totals={"marker": {"color": TOTAL}}, customdata=tops,
            hovertemplate="%{x}: %{text}<br>level %{customdata:,.0f} USD<extra>" + pool.label + "</extra>"),
            row=row + 1, col=col + 1)
        fig.add_scatter(x=[x[-1]], y=[pool.equity_before], mode="markers", name="posted equity before",
                        marker={"symbol": "line-ew", "size": 44, "line": {"width": 3, "color": BEFORE_MARK}},
                        showlegend=False,
                        hovertemplate="posted before: %{y:,.0f} USD<extra></extra>", row=row + 1, col=col + 1)
        top = max(max(tops), pool.equity_before, 0.0)
        fig.update_yaxes(range=[min(0.0, *tops) * 1.15, top * 1.18], row=row + 1, col=col + 1)
    fig.update_yaxes(tickformat="~s")
    fig.update_xaxes(tickfont={"size": 10})
    fig.update_layout(height=340 * rows + 40, font_family=FONT, margin={"t": 60, "b": 30}, template=TEMPLATE)
    return fig


def draw(data: ReportData) -> Figure | None:
    pools = data.waterfalls
    if not pools:
        return None
    rows, cols = grid(len(pools))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    labels = [s.replace("<br>", "\n") for s in steps(data)]
    colours = [TOTAL, None, None, TOTAL, None, TOTAL]
    for i, pool in enumerate(pools):
        ax = axes[divmod(i, cols)]
        spans = levels(pool)
        xs = np.arange(len(spans))
        tallest = max(max(top for _, top in spans), pool.equity_before)
        for x, (bottom, top), colour in zip(xs, spans, colours, strict=True):
            fill = colour or (UP if top >= bottom else DOWN)
            ax.bar(x, top - bottom, bottom=bottom, color=fill, width=0.7)
            if colour is not None and top < 0.1 * tallest:  # a level too short to hold its label
                ax.annotate(short_usd(top), (x, top), xytext=(0, 2), textcoords="offset points", ha="center",
                            fontsize=7)
            elif colour is None:  # a step: its size above the bar
                ax.annotate(short_usd(top - bottom), (x, max(top, bottom)), xytext=(0, 2), textcoords="offset points",
                            ha="center", fontsize=7)
            else:  # a level: its value inside the top of the bar
                ax.annotate(short_usd(top), (x, top), xytext=(0, -3), textcoords="offset points", ha="center",
                            va="top", fontsize=7, color="white")
        ax.hlines(pool.equity_before, xs[-1] - 0.45, xs[-1] + 0.45, color=BEFORE_MARK, linewidth=2.5, zorder=3,
                  label="posted equity before")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.yaxis.set_major_formatter(usd_ticks())
        ax.set_title(pool.label, fontsize=9)
        ax.margins(y=0.12)
    for j in range(len(pools), rows * cols):
        axes[divmod(j, cols)].set_visible(False)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(TITLE)
    return fig
