"""Chart (d): every position's liquidation distance |mark − liquidation| / mark, before and after."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure

from .data import ReportData
from .style import AFTER, BEFORE, FONT, REQUIREMENT, TEMPLATE

NAME = "liquidation_distance"
TITLE = "Liquidation distance per position, before and after"
NO_LIQUIDATION = "no liquidation price"
TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


def caption(data: ReportData) -> str:
    floor = data.liquidation_floor
    rule = (f" The red line is the policy's floor for isolated positions, {floor:.0%}." if floor > 0 else "")
    return ("How far the mark can move before each position is liquidated, |mark − liquidation| / mark (log scale), "
            "with the position's margin mode before → after. Where a move of the underlying alone cannot bring the "
            f"pool to its maintenance margin there is no bar but '{NO_LIQUIDATION}'." + rule)


def note(data: ReportData) -> str | None:
    return None if len(data.liquidation) else "The book has no position."


def labels(frame: pd.DataFrame) -> list[str]:
    """'venue/account SYMBOL (cross)', or '(isolated → cross)' when the mode changes."""
    out = []
    for row in frame.itertuples():
        mode = row.mode_before if row.mode_before == row.mode_after else f"{row.mode_before} → {row.mode_after}"
        out.append(f"{row.position} ({mode})")
    return out


def _axis_range(frame: pd.DataFrame, floor: float) -> tuple[float, float]:
    """log10 range of the distance axis, fractions."""
    values = frame[["distance_before", "distance_after"]].to_numpy().ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if floor > 0:
        values = np.append(values, floor)
    if not values.size:
        return -2.0, 0.0
    return math.log10(values.min()) - 0.15, math.log10(values.max()) + 0.35


def figure(data: ReportData) -> go.Figure | None:
    frame = data.liquidation.iloc[::-1]  # first position at the top
    if not len(frame):
        return None
    y = labels(frame)
    low, high = _axis_range(frame, data.liquidation_floor)
    fig = go.Figure()
    for state, colour in (("after", AFTER), ("before", BEFORE)):  # horizontal groups stack upwards
        distance = frame[f"distance_{state}"].to_numpy()
        missing = np.isnan(distance)
        fig.add_bar(y=y, x=np.where(missing, 10 ** low, distance), orientation="h", name=state, marker_color=colour,
                    text=np.where(missing, f"{state}: {NO_LIQUIDATION}", ""), textposition="outside",
                    textfont={"size": 11}, cliponaxis=False,
                    customdata=np.stack([frame["mark"], frame[f"liq_{state}"]], axis=1),
                    hovertemplate=(f"{state}: %{{x:.1%}}<br>mark %{{customdata[0]:,.6g}}, liquidation "
                                   "%{customdata[1]:,.6g}<extra>%{y}</extra>"))
    if data.liquidation_floor > 0:
        fig.add_vline(x=data.liquidation_floor, line={"color": REQUIREMENT, "dash": "dash"})
        fig.add_annotation(x=math.log10(data.liquidation_floor), y=1, yref="paper", yanchor="bottom",  # log units
                           showarrow=False, text=f"isolated floor {data.liquidation_floor:.0%}",
                           font={"color": REQUIREMENT})
    ticks = [t for t in TICKS if 10 ** low <= t <= 10 ** high]
    fig.update_layout(barmode="group", height=26 * len(frame) * 2 + 140, font_family=FONT, template=TEMPLATE,
                      xaxis={"type": "log", "range": [low, high], "tickvals": ticks, "tickformat": ".0%",
                             "title": "distance to liquidation (share of mark)"},
                      legend={"orientation": "h", "y": 1.02, "x": 0, "xanchor": "left", "yanchor": "bottom",
                              "traceorder": "reversed"},
                      margin={"t": 50, "l": 10})
    return fig


def draw(data: ReportData) -> Figure | None:
    frame = data.liquidation.iloc[::-1]
    if not len(frame):
        return None
    fig = Figure(figsize=(10, 0.42 * len(frame) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ys = np.arange(len(frame))
    low, high = _axis_range(frame, data.liquidation_floor)
    for offset, state, colour in ((0.2, "before", BEFORE), (-0.2, "after", AFTER)):
        distance = frame[f"distance_{state}"].to_numpy()
        missing = np.isnan(distance)
        ax.barh(ys + offset, np.where(missing, 0.0, distance - 10 ** low), height=0.4, color=colour,
                label=state, left=10 ** low)
        for y in ys[missing]:
            ax.text(10 ** (low + 0.02), y + offset, f"{state}: {NO_LIQUIDATION}", va="center", fontsize=7)
    if data.liquidation_floor > 0:
        ax.axvline(data.liquidation_floor, color=REQUIREMENT, linestyle="--",
                   label=f"isolated floor {data.liquidation_floor:.0%}")
    ax.set_xscale("log")
    ax.set_xlim(10 ** low, 10 ** high)
    ticks = [t for t in TICKS if 10 ** low <= t <= 10 ** high]
    ax.set_xticks(ticks, [f"{t:.0%}" if t >= 0.01 else f"{t:.1%}" for t in ticks])
    ax.xaxis.set_minor_formatter("")
    ax.set_yticks(ys, labels(frame), fontsize=8)
    ax.set_xlabel("distance to liquidation (share of mark)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(TITLE)
    return fig
