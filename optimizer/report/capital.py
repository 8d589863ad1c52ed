"""Chart (e): capital locked on venues and carry cost as the cross buffer k varies (one re-checked solve a point)."""

from __future__ import annotations

import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from .data import ReportData
from .style import AFTER, FONT, TEMPLATE, UP, usd, usd_ticks

NAME = "capital_vs_buffer"
TITLE = "Capital needed against the buffer k"


def caption(data: ReportData) -> str:
    s = data.summary
    return ("Each point is a full optimization at that buffer, re-checked: the capital locked on venues "
            f"(cross collateral and isolated margins, USD) and the objective ({s.objective.replace('_', ' ')} over "
            f"{s.carry_horizon_days:g} days, USD). The star is this recommendation, k = {s.buffer:g}.")


def feasible(data: ReportData) -> list[dict]:
    return [r for r in data.sweep if r["status"] != "infeasible"]


def note(data: ReportData) -> str | None:
    """Why points are missing: no sweep asked, or the policy cannot be met at some buffers (with the top-up)."""
    if not data.sweep:
        return "No buffer sweep was asked for (--report-sweep none)."
    missing = [r for r in data.sweep if r["status"] == "infeasible"]
    if not missing:
        return None
    parts = "; ".join(f"k = {r['value']:g}: infeasible, the smallest top-up is {usd(r['top_up'])} USD"
                      for r in missing)
    shown = " The chart shows the feasible points only." if feasible(data) else ""
    return f"The policy cannot be met at every buffer. {parts}.{shown}"


def figure(data: ReportData) -> go.Figure | None:
    rows = feasible(data)
    if not rows:
        return None
    k = [r["value"] for r in rows]
    s = data.summary
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=k, y=[r["locked"] for r in rows], mode="lines+markers", name="capital locked on venues",
                    line={"color": AFTER}, hovertemplate="k = %{x:g}: %{y:,.0f} USD locked<extra></extra>")
    fig.add_scatter(x=k, y=[r["objective_value"] for r in rows], mode="lines+markers",
                    name=f"{s.objective.replace('_', ' ')} ({s.carry_horizon_days:g} days)",
                    line={"color": UP, "dash": "dot"}, secondary_y=True,
                    hovertemplate="k = %{x:g}: %{y:,.2f} USD<extra></extra>")
    fig.add_scatter(x=[s.buffer], y=[s.locked_after], mode="markers", name="this recommendation",
                    marker={"symbol": "star", "size": 15, "color": AFTER, "line": {"color": "black", "width": 1}},
                    hovertemplate="k = %{x:g}: %{y:,.0f} USD locked<extra>this recommendation</extra>")
    fig.update_layout(height=420, font_family=FONT, margin={"t": 40}, template=TEMPLATE,
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
                      xaxis={"title": "buffer k"})
    fig.update_yaxes(title_text="capital locked, USD", tickformat="~s", secondary_y=False)
    fig.update_yaxes(title_text="objective, USD", tickformat=",.0f", secondary_y=True, showgrid=False)
    return fig


def draw(data: ReportData) -> Figure | None:
    rows = feasible(data)
    if not rows:
        return None
    s = data.summary
    k = [r["value"] for r in rows]
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(k, [r["locked"] for r in rows], marker="o", color=AFTER, label="capital locked on venues")
    ax.scatter([s.buffer], [s.locked_after], marker="*", s=200, color=AFTER, edgecolor="black", zorder=3,
               label="this recommendation")
    ax.set_xlabel("buffer k")
    ax.set_ylabel("capital locked, USD")
    ax.yaxis.set_major_formatter(usd_ticks())
    twin = ax.twinx()
    twin.plot(k, [r["objective_value"] for r in rows], marker="s", linestyle=":", color=UP,
              label=f"{s.objective.replace('_', ' ')} ({s.carry_horizon_days:g} days)")
    twin.set_ylabel("objective, USD")
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8, loc="upper left")
    ax.set_title(TITLE)
    return fig
