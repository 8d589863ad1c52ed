"""Assembles the report: one self-contained HTML page (plotly.js inline, no network) of every chart and table."""

from __future__ import annotations

from html import escape
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from . import tables
from .charts import CHARTS
from .data import ReportData
from .style import PLOTLY_CONFIG, usd

STYLE = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:0 auto;max-width:1320px;padding:16px 28px;color:#1d2329}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 4px;border-bottom:1px solid #d5dbe1}
p.caption{color:#4a5560;font-size:13px;margin:4px 0 8px;max-width:1100px}
p.note{background:#fff6e0;border-left:4px solid #e8a33a;padding:8px 12px;font-size:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#f3f6f9;border-radius:6px;padding:10px 14px;min-width:170px}
.card b{display:block;font-size:18px}.card span{font-size:12px;color:#4a5560}
table{border-collapse:collapse;font-size:13px;margin:6px 0 14px}
th,td{border-bottom:1px solid #e1e6eb;padding:4px 10px;text-align:left}th{background:#f3f6f9}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
ul.bindings{font-size:14px;line-height:1.45}
"""


def render_html(data: ReportData) -> str:
    """The page as one string; plotly.js is embedded once, in the head."""
    sections = [_chart(module, data) for module in CHARTS]
    sections.append("<h2>Transfers</h2>" + tables.transfers(data))
    if data.trades:
        sections.append("<h2>Trades</h2>" + tables.trades(data))
    sections.append("<h2>Margin modes</h2>" + tables.margin_modes(data))
    sections.append("<h2>Binding constraints</h2>" + tables.bindings(data))
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(data.title)}</title>"
            f"<style>{STYLE}</style><script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            f"<h1>{escape(data.title)}</h1>{_cards(data)}{''.join(sections)}</body></html>")


def write_html(data: ReportData, path: Path) -> Path:
    """Write the report to ``path`` (UTF-8); returns the path."""
    path.write_text(render_html(data), encoding="utf-8")
    return path


def _chart(module, data: ReportData) -> str:
    parts = [f"<h2 id={module.NAME}>{escape(module.TITLE)}</h2>",
             f"<p class=caption>{escape(module.caption(data))}</p>"]
    note = module.note(data)
    if note:
        parts.append(f"<p class=note>{escape(note)}</p>")
    fig = module.figure(data)
    if fig is not None:
        parts.append(pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG,
                                 div_id=f"chart-{module.NAME}"))
    return "".join(parts)


def _cards(data: ReportData) -> str:
    s = data.summary
    objective = s.objective.replace("_", " ")
    cards = [
        (s.status.replace("_", " "), f"status; solved in {s.solver_seconds:.2f} s"),
        (f"{usd(s.objective_value_before)} → {usd(s.objective_value)}",
         f"{objective}, USD over {s.carry_horizon_days:g} days"),
        (usd(s.carry_saved_per_year), "carry saved per year, USD"),
        (f"{usd(s.locked_before)} → {usd(s.locked_after)}", "locked on venues, USD"),
        (f"{usd(s.free_before)} → {usd(s.free_after)}", "free in the wallet, USD"),
        (f"k = {s.buffer:g}, {s.measure}", "buffer and risk measure"),
    ]
    body = "".join(f"<div class=card><b>{escape(v)}</b><span>{escape(label)}</span></div>" for v, label in cards)
    return f"<div class=cards>{body}</div>"
