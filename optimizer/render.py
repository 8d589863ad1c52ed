"""Readable tables for the terminal (rich).  Rounding happens here and only here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from risk_models.margin_report import MarginReport


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x + 0.0:,.{digits}f}".replace("-0.00", "0.00")


def _qty(q: float) -> str:
    return f"{q:,.8f}".rstrip("0").rstrip(".")


def _price(x: float | None) -> str:
    if x is None:
        return "none"
    return f"{x:,.{max(2, 6 - len(str(int(abs(x)))))}f}"


def print_margin_table(report: MarginReport, console: Console | None = None) -> None:
    """One summary table of accounts, then one table of positions per account."""
    if console is None:
        probe = Console()
        console = probe if probe.is_terminal else Console(width=160)
    summary = Table(title="Venue margin per account (cross pools, USD)")
    for col in ("venue", "account", "rules", "equity", "maint. margin", "initial margin", "margin ratio",
                "available"):
        summary.add_column(col, justify="right" if col not in ("venue", "account", "rules") else "left")
    for a in report.accounts:
        ratio = "—" if a.margin_ratio is None else f"{a.margin_ratio:,.3f}"
        style = "red" if a.margin_ratio is not None and a.margin_ratio <= 1 else None
        summary.add_row(a.venue, a.account, a.rules, _num(a.equity), _num(a.maintenance_margin),
                        _num(a.initial_margin), ratio, _num(a.available), style=style)
    console.print(summary)
    for a in report.accounts:
        if not a.positions:
            continue
        t = Table(title=f"{a.venue}/{a.account} positions")
        for col in ("symbol", "mode", "qty", "notional USD", "MM USD", "MM settle", "uPnL USD", "isolated margin",
                    "liq. price", "liquidatable"):
            t.add_column(col, justify="left" if col in ("symbol", "mode") else "right")
        for p in a.positions:
            t.add_row(p.symbol, p.margin_mode, _qty(p.qty), _num(p.notional), _num(p.maintenance_margin),
                      f"{_num(p.maintenance_margin_settle, 6)} {p.settle}", _num(p.unrealized_pnl),
                      _num(p.isolated_margin, 6), _price(p.liquidation_price),
                      "YES" if p.liquidatable_now else "no", style="red" if p.liquidatable_now else None)
        console.print(t)
