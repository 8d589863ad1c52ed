"""Chart (c): each cross pool's scenario needs, before and after, against the requirement and the posted equity.

A scenario's need is cover·(L_s + k·MM_s) (USD): the loss of equity plus the buffered maintenance margin at the
shocked prices.  The requirement R is ρ of these needs; the pool meets the policy when its posted equity ≥ R.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from plotly.subplots import make_subplots

from .data import PoolDistribution, ReportData
from .style import AFTER, BEFORE, EQUITY, FONT, REQUIREMENT, TEMPLATE, grid, short_usd, usd_ticks

NAME = "stressed_equity"
TITLE = "Scenario needs per cross pool against the requirement"
BINS = 50
WORST_SHOWN = 3
EQUITY_REACH = 0.5
LEGEND_PX = 70
PLOT_PX = 300
"""Height of one row of small multiples, titles and spacing included."""
"""Room above the plots for the legend, over the two-line subplot titles."""
"""The posted equity is drawn when it lies within this share of the needs' span beyond the largest need."""


def caption(data: ReportData) -> str:
    s = data.summary
    return ("Share of scenarios by need, L + k·MM: the pool's loss of equity in the scenario plus k = "
            f"{s.buffer:g} times the venue's maintenance margin at the shocked prices (grey before, blue after). "
            f"The red line is the requirement R = {s.measure} of the needs after; green is the equity posted after "
            "(it must be at least R; its gap to a scenario's need is the stressed equity left above k·MM there). "
            "Triangles mark the worst scenarios by loss, dated."
            + (" Here R is the closed-form delta-normal ES; the histogram shows the parametric model's simulated "
               "scenarios." if "delta-normal" in s.measure else ""))


def note(data: ReportData) -> str | None:
    return None if data.distributions else "The book has no cross pool."


def x_range(pool: PoolDistribution) -> tuple[float, float, bool]:
    """(low, high) of the need axis, USD, and whether the posted equity after lies on it: an equity far above every
    need would squeeze the distribution, so it is then named at the right edge instead."""
    values = np.concatenate([pool.before.needs, pool.after.needs, [pool.after.requirement]])
    low, high = float(values.min()), float(values.max())
    pad = 0.04 * (high - low or abs(high) or 1.0)
    if pool.after.equity <= high + EQUITY_REACH * (high - low):
        return low - pad, max(high, pool.after.equity) + pad, True
    return low - pad, high + pad, False


def histogram(pool: PoolDistribution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared bin edges (over the needs and R) and the probability-weighted share of scenarios per bin, before and
    after."""
    values = np.concatenate([pool.before.needs, pool.after.needs, [pool.after.requirement]])
    edges = np.histogram_bin_edges(values, bins=BINS)
    before, _ = np.histogram(pool.before.needs, bins=edges, weights=pool.probabilities)
    after, _ = np.histogram(pool.after.needs, bins=edges, weights=pool.probabilities)
    return edges, before, after


def title(pool: PoolDistribution) -> str:
    dates = ", ".join(w.label for w in pool.after.worst[:WORST_SHOWN])
    return f"{pool.label}<br><span style='font-size:11px'>worst: {dates}</span>" if dates else pool.label


def figure(data: ReportData) -> go.Figure | None:
    pools = data.distributions
    if not pools:
        return None
    rows, cols = grid(len(pools))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[title(p) for p in pools], vertical_spacing=0.18,
                        horizontal_spacing=0.07)
    named: set[str] = set()

    def once(name: str) -> bool:
        """A legend entry for the first trace of each name only."""
        new = name not in named
        named.add(name)
        return new

    for i, pool in enumerate(pools):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        edges, before, after = histogram(pool)
        mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        for name, share, colour in (("before", before, BEFORE), ("after", after, AFTER)):
            fig.add_bar(x=mids, y=share, width=width, name=f"needs {name}", marker_color=colour, opacity=0.6,
                        legendgroup=name, showlegend=once(name),
                        hovertemplate=f"{name}: %{{y:.1%}} of scenarios at %{{x:,.0f}} USD<extra></extra>", **at)
        top = float(max(before.max(), after.max())) * 1.1
        low, high, equity_shown = x_range(pool)
        lines = [("requirement R after", pool.after.requirement, REQUIREMENT, "dash")]
        if equity_shown:
            lines.append(("posted equity after", pool.after.equity, EQUITY, "solid"))
        else:
            fig.add_annotation(x=high, y=top, xanchor="right", yanchor="top", showarrow=False,
                               text=f"posted equity after {short_usd(pool.after.equity)} →",
                               font={"color": EQUITY, "size": 11}, **at)
        for name, x, colour, dash in lines:
            fig.add_scatter(x=[x, x], y=[0, 0.86 * top], mode="lines", name=name, line={"color": colour, "dash": dash},
                            legendgroup=name, showlegend=once(name),
                            hovertemplate=f"{name}: {x:,.0f} USD<extra></extra>", **at)
        fig.update_xaxes(range=[low, high], **at)
        worst = pool.after.worst
        fig.add_scatter(x=[w.need for w in worst], y=[0.0] * len(worst), mode="markers", name="worst scenarios",
                        marker={"symbol": "triangle-up", "size": 10, "color": "black"}, legendgroup="worst",
                        showlegend=once("worst"), text=[w.label for w in worst], customdata=[w.loss for w in worst],
                        hovertemplate="%{text}: loss %{customdata:,.0f}, need %{x:,.0f} USD<extra></extra>", **at)
    fig.update_layout(barmode="overlay", bargap=0, height=PLOT_PX * rows + LEGEND_PX + 80, font_family=FONT,
                      template=TEMPLATE,
                      margin={"t": 40 + LEGEND_PX, "b": 40},
                      legend={"orientation": "h", "x": 1, "xanchor": "right", "yanchor": "bottom",
                              "y": 1 + (LEGEND_PX - 10) / (PLOT_PX * rows)})
    fig.update_xaxes(tickformat="~s", title_text="USD", title_standoff=4, title_font={"size": 10})
    fig.update_yaxes(tickformat=".0%")
    fig.update_annotations(font_size=12)
    return fig


def draw(data: ReportData) -> Figure | None:
    pools = data.distributions
    if not pools:
        return None
    rows, cols = grid(len(pools))
    fig = Figure(figsize=(4.4 * cols, 3.3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, pool in enumerate(pools):
        ax = axes[divmod(i, cols)]
        edges, before, after = histogram(pool)
        ax.stairs(before, edges, fill=True, color=BEFORE, alpha=0.6, label="needs before")
        ax.stairs(after, edges, fill=True, color=AFTER, alpha=0.6, label="needs after")
        ax.axvline(pool.after.requirement, color=REQUIREMENT, linestyle="--",
                   label=f"R after {short_usd(pool.after.requirement)}")
        low, high, equity_shown = x_range(pool)
        if equity_shown:
            ax.axvline(pool.after.equity, color=EQUITY, label=f"equity after {short_usd(pool.after.equity)}")
        else:
            ax.text(0.98, 0.6, f"equity after\n{short_usd(pool.after.equity)} →", transform=ax.transAxes,
                    ha="right", color=EQUITY, fontsize=8)
        ax.set_xlim(low, high)
        worst = pool.after.worst
        ax.scatter([w.need for w in worst], [0.0] * len(worst), marker="^", color="black", zorder=3, clip_on=False)
        ax.xaxis.set_major_formatter(usd_ticks())
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        dates = ", ".join(w.label for w in worst[:WORST_SHOWN])
        ax.set_title(f"{pool.label}\nworst: {dates}" if dates else pool.label, fontsize=8)
        ax.legend(fontsize=6, loc="upper right")
    for j in range(len(pools), rows * cols):
        axes[divmod(j, cols)].set_visible(False)
    fig.suptitle(TITLE)
    return fig
