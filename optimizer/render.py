"""Readable tables for the terminal (rich).  Rounding happens here and only here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from risk_models.margin_report import MarginReport
    from risk_models.risk_report import RiskReport


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x + 0.0:,.{digits}f}".replace("-0.00", "0.00")


def _qty(q: float) -> str:
    return f"{q:,.8f}".rstrip("0").rstrip(".")


def _price(x: float | None) -> str:
    if x is None:
        return "none"
    return f"{x:,.{max(2, 6 - len(str(int(abs(x)))))}f}"


def _console(console: Console | None) -> Console:
    if console is not None:
        return console
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def print_margin_table(report: MarginReport, console: Console | None = None) -> None:
    """One summary table of accounts, then one table of positions per account."""
    console = _console(console)
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


def print_risk_tables(report: RiskReport, console: Console | None = None) -> None:
    """Net portfolio margin per account, then each account's attribution and worst scenarios."""
    console = _console(console)
    m = report.model
    window = f", data {m.window[0]} … {m.window[1]}" if m.window else ""
    measure = "worst case" if m.measure == "worst" else f"{m.measure} {m.confidence:.3g}"
    title = (f"Net portfolio margin (USD): {m.kind}, {measure}, {m.horizon_days}-day horizon, "
             f"{m.scenarios:,} scenarios{window}")
    t = Table(title=title)
    for col in ("venue", "account", "equity", "venue MM", "net portfolio margin", "standalone", "diversification",
                "stressed equity"):
        t.add_column(col, justify="left" if col in ("venue", "account") else "right")
    for a in report.accounts:
        short = a.stressed_equity < 0 or a.net_portfolio_margin > a.equity
        t.add_row(a.venue, a.account, _num(a.equity), _num(a.maintenance_margin), _num(a.net_portfolio_margin),
                  _num(a.standalone_margin), _num(a.diversification_benefit), _num(a.stressed_equity),
                  style="red" if short else None)
    console.print(t)
    for a in report.accounts:
        d = Table(title=f"{a.venue}/{a.account}: contributions and worst scenarios")
        d.add_column("item")
        d.add_column("contribution USD", justify="right")
        d.add_column("worst scenario")
        d.add_column("loss USD", justify="right")
        items = sorted(a.contributions.items(), key=lambda kv: -abs(kv[1]))
        worst = a.worst_scenarios
        for i in range(max(len(items), len(worst))):
            name, value = items[i] if i < len(items) else ("", None)
            label, loss = (worst[i]["label"], worst[i]["loss"]) if i < len(worst) else ("", None)
            d.add_row(name, _num(value) if value is not None else "", str(label),
                      _num(loss) if loss is not None else "")
        for iso in a.isolated:
            d.add_row(f"isolated {iso.symbol}", _num(iso.net_portfolio_margin), "isolated margin",
                      _num(iso.isolated_margin))
        console.print(d)


def print_recommendation(doc: dict, console: Console | None = None) -> None:
    """The recommendation: summary, transfers, mode changes, before/after per account, binding constraints."""
    console = _console(console)
    solver = doc["solver"]
    console.print(f"[bold]Recommendation[/bold] — status {doc['status']}, {doc['objective']}: "
                  f"{_num(doc['objective_value_before'])} → {_num(doc['objective_value'])} USD over the carry horizon "
                  f"(carry saved {_num(doc['carry_saved_per_year'])} USD/year); {solver['name']} "
                  f"{solver['seconds']:.2f} s{_detail(solver)}, gap {solver['mip_gap']:.1e}")
    console.print(f"Locked {_num(doc['before']['locked'])} → {_num(doc['after']['locked'])} USD; "
                  f"free {_num(doc['before']['free'])} → {_num(doc['after']['free'])} USD")
    if doc["transfers"]:
        t = Table(title="Transfers to make (in this order)")
        for col in ("from", "to", "asset", "amount", "cost USD"):
            t.add_column(col, justify="right" if col in ("amount", "cost USD") else "left")
        for row in doc["transfers"]:
            t.add_row(row["from"], row["to"], row["asset"], _qty(row["amount"]), _num(row["cost"]))
        console.print(t)
    else:
        console.print("No transfers: the current collateral is already optimal.")
    if doc["margin_modes"]:
        t = Table(title="Margin modes")
        for col in ("venue", "account", "symbol", "before", "after", "how"):
            t.add_column(col)
        trades = {(r["venue"], r["account"], r["symbol"]): r for r in doc["trades"]}
        for row in doc["margin_modes"]:
            trade = trades.get((row["venue"], row["account"], row["symbol"]))
            how = f"close and reopen ({_num(trade['cost'])} USD)" if trade else "switch"
            t.add_row(row["venue"], row["account"], row["symbol"], row["before"], row["after"], how)
        console.print(t)
    t = Table(title="Before → after per account (USD)")
    for col in ("venue", "account", "equity", "maint. margin", "margin ratio", "net portfolio margin",
                "stressed equity", "capital efficiency"):
        t.add_column(col, justify="left" if col in ("venue", "account") else "right")
    for before, after in zip(doc["before"]["accounts"], doc["after"]["accounts"], strict=True):
        def pair(key: str, digits: int = 2, b: dict = before, a: dict = after) -> str:
            def fmt(v: float | None) -> str:
                return "—" if v is None else f"{v:,.{digits}f}"

            return f"{fmt(b[key])} → {fmt(a[key])}"
        t.add_row(before["venue"], before["account"], pair("equity", 0), pair("maintenance_margin", 0),
                  pair("margin_ratio"), pair("net_portfolio_margin", 0), pair("stressed_equity", 0),
                  pair("capital_efficiency"))
    console.print(t)
    if doc["binding_constraints"]:
        console.print("[bold]What shapes this answer[/bold] (binding constraints and their shadow prices):")
        for row in doc["binding_constraints"]:
            console.print(f"  • {row['explanation']}")


def print_sweep(param: str, rows: list[dict], console: Console | None = None) -> None:
    console = _console(console)
    t = Table(title=f"Capital needed as {param} varies (USD)")
    for col in (param, "status", "locked", "free", "objective", "top-up needed"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['value']:g}", r["status"], _num(r["locked"]), _num(r["free"]), _num(r["objective_value"]),
                  _num(r["top_up"]))
    console.print(t)


def print_infeasible(doc: dict, note: str = "", console: Console | None = None) -> None:
    """The two remedies of an infeasible policy: the smallest top-up, and the smallest position reductions."""
    console = _console(console)
    console.print("[bold]The policy cannot be met.[/bold] Either remedy alone makes it feasible:")
    t = Table(title=f"1. Smallest top-up: {_num(sum(r['value'] for r in doc['top_up']))} USD")
    for col in ("bucket", "asset", "amount", "value USD"):
        t.add_column(col, justify="right" if col in ("amount", "value USD") else "left")
    for row in doc["top_up"]:
        t.add_row(row["bucket"], row["asset"], _qty(row["amount"]), _num(row["value"]))
    console.print(t)
    if not doc["reductions"]:
        console.print(f"2. No reduction of positions alone meets the policy{': ' + note if note else ''}.")
        return
    total = sum(r["notional_reduced"] for r in doc["reductions"])
    t = Table(title=f"2. Or, without a top-up, smallest position reductions: {_num(total)} USD of notional "
                    "(verified on the reduced book)")
    for col in ("venue", "account", "symbol", "qty before", "qty after", "reduce qty", "notional USD"):
        t.add_column(col, justify="left" if col in ("venue", "account", "symbol") else "right")
    for row in doc["reductions"]:
        t.add_row(row["venue"], row["account"], row["symbol"], _qty(row["qty_before"]), _qty(row["qty_after"]),
                  _qty(row["reduce_qty"]), _num(row["notional_reduced"]))
    console.print(t)


def _detail(solver: dict) -> str:
    """" (compile 0.12 s, solver 0.05 s, 5 rounds of scenario cuts)" from the solver section, or ""."""
    if "compile_seconds" not in solver:
        return ""
    how = {"cuts": "scenario cuts", "rows": "scenario working sets"}.get(solver.get("scenario_constraints"), "")
    rounds = f", {solver['rounds']} rounds of {how}" if how else ""
    return f" (compile {solver['compile_seconds']:.2f} s, solver {solver['solve_seconds']:.2f} s{rounds})"

