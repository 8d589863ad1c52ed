"""Section (f): the transfers, trades, margin-mode changes and binding constraints of the document, as HTML."""

from __future__ import annotations

from html import escape
from typing import Any

from .data import ReportData
from .style import usd


def table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped, columns in ``numeric`` right-aligned."""
    numeric = numeric or set()
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _or_none(html: str, rows: list[Any], empty: str) -> str:
    return html if rows else f"<p class=note>{escape(empty)}</p>"


def transfers(data: ReportData) -> str:
    rows = [[t["from"], t["to"], t["asset"], f"{t['amount']:,.8g}", usd(t["cost"], 2)] for t in data.transfers]
    return _or_none(table(["from", "to", "asset", "amount (units)", "cost (USD)"], rows, {3, 4}), rows,
                    "No transfer: the collateral stays where it is.")


def trades(data: ReportData) -> str:
    rows = [[f"{t['venue']}/{t['account']}", t["symbol"], t["action"].replace("_", " "), usd(t["cost"], 2)]
            for t in data.trades]
    return _or_none(table(["account", "symbol", "action", "cost (USD)"], rows, {3}), rows, "No trade.")


def margin_modes(data: ReportData) -> str:
    rows = [[f"{m['venue']}/{m['account']}", m["symbol"], m["before"], m["after"]] for m in data.margin_modes]
    return _or_none(table(["account", "symbol", "before", "after"], rows), rows, "No margin-mode change.")


def bindings(data: ReportData) -> str:
    """The binding constraints in words, then their names and shadow prices."""
    if not data.bindings:
        return "<p class=note>No constraint binds: the recommendation is limited by nothing but its costs.</p>"
    items = "".join(f"<li>{escape(_sentence(b['explanation']))}</li>" for b in data.bindings)
    rows = [[b["name"], f"{b['shadow_price']:.6g}", usd(b["slack"], 2), b["unit"]] for b in data.bindings]
    return f"<ul class=bindings>{items}</ul>" + table(["constraint", "shadow price", "slack (USD)", "unit"], rows,
                                                       {1, 2})


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
