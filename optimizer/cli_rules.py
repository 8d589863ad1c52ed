"""`pmopt rules list` and `pmopt rules show`: the built-in rule sets, their dates, coverage and numbers.

The ``rules`` group itself is defined in :mod:`optimizer.cli`; these commands are added to it there.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from risk_models.rule_catalog import RuleSetDetail, RuleSetSummary, describe, list_rule_sets

from .render import _console


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def rules_list(as_json: bool) -> None:
    """Every built-in rule set: name, date, venue, contracts, collateral accepted, and the undated aliases.

    An undated name (binance-usdm) in a book means the newest dated set; the alias column shows which.

    \b
    Example:
      pmopt rules list
      pmopt rules list --json
    """
    sets = list_rule_sets()
    if as_json:
        click.echo(json.dumps({"version": 1, "rule_sets": [s.to_dict() for s in sets]}, indent=2))
    else:
        print_rule_sets(sets)


@click.command("show")
@click.argument("name")
@click.option("--symbols", metavar="PATTERN", help="Only contracts matching PATTERN (shell-style, e.g. 'BTC*').")
@click.option("--json", "as_json", is_flag=True, help="Print the rule set's description as JSON.")
def rules_show(name: str, symbols: str | None, as_json: bool) -> None:
    """One rule set in full: source, date, what it does not cover, contracts, collateral haircut tiers.

    NAME is a built-in name (binance-usdm-2024-10), an undated alias (binance-usdm: the newest) or a rules file.

    \b
    Example:
      pmopt rules show okx-pm
      pmopt rules show binance-usdm --symbols 'BTC*'
      pmopt rules show my_venue_rules.yaml --json
    """
    detail = describe(name, symbols, Path.cwd())
    if as_json:
        click.echo(json.dumps({"version": 1, **detail.to_dict()}, indent=2, allow_nan=False))
    else:
        print_rule_set(detail)


def print_rule_sets(sets: list[RuleSetSummary], console: Console | None = None) -> None:
    """One row per built-in rule set."""
    console = _console(console)
    t = Table(title="Built-in rule sets (an alias names the newest dated set of its venue)")
    for col in ("name", "alias", "date", "venue", "margin", "contracts", "collateral accepted"):
        t.add_column(col, justify="right" if col == "contracts" else "left")
    for s in sets:
        t.add_row(s.name, ", ".join(s.aliases) or "—", s.date or "—", s.venue, s.margin_model, f"{s.contracts:,}",
                  ", ".join(s.collateral))
    console.print(t)


def print_rule_set(d: RuleSetDetail, console: Console | None = None) -> None:
    """Header (source, date, coverage, venue mechanics), then the contracts and collateral tables."""
    console = _console(console)
    alias = f" (alias {d.requested})" if d.requested != d.name else ""
    console.print(f"[bold]{escape(d.name)}[/bold]{escape(alias)} — venue {escape(d.venue)}, "
                  f"date {d.date or 'not given'}", highlight=False)
    console.print(f"[bold]Source:[/bold] {escape(d.source)}", highlight=False, soft_wrap=True)
    console.print(f"[bold]Not covered:[/bold] {escape(d.not_covered or 'not stated')}", highlight=False,
                  soft_wrap=True)
    console.print(f"Margin: {d.margin_model}; mode switch: {d.mode_switch}; isolated positions with Multi-Assets "
                  f"collateral: {'allowed' if d.isolated_with_multi_asset else 'not allowed'}; liquidation fee rate "
                  f"{d.liquidation_fee_rate:g}", highlight=False)
    shown = f"{len(d.contracts):,} of {d.contracts_total:,}" if len(d.contracts) != d.contracts_total \
        else f"{d.contracts_total:,}"
    t = Table(title=f"Contracts ({shown}); caps and limits in settle units")
    for col in ("symbol", "underlying", "settle", "kind", "size", "brackets", "first MMR", "max lev.",
                "position limit", "isolated"):
        t.add_column(col, justify="left" if col in ("symbol", "underlying", "settle", "kind", "isolated") else "right")
    for c in d.contracts:
        t.add_row(c.symbol, c.underlying, c.settle, c.kind, f"{c.contract_size:g}", str(c.brackets),
                  "—" if c.first_mmr is None else f"{c.first_mmr:.4%}",
                  "—" if c.first_max_leverage is None else f"{c.first_max_leverage:g}x",
                  "unbounded" if c.position_limit is None else f"{c.position_limit:,.0f}",
                  "yes" if c.isolated_allowed else "no")
    console.print(t)
    t = Table(title="Collateral accepted in the cross pool (haircut tiers slice by slice)")
    for col in ("asset", "tiers", "unit", "bid rate", "ask rate", "size discount k"):
        t.add_column(col, justify="right" if col in ("bid rate", "ask rate", "size discount k") else "left")
    for row in d.collateral:
        tiers = _tiers_text(row.tiers)
        if row.implicit:
            tiers += " (settle asset, not listed)"
        t.add_row(row.asset, tiers, row.tier_unit, f"{row.bid_rate:g}", f"{row.ask_rate:g}",
                  f"{row.size_discount_k:g}")
    console.print(t)


def _tiers_text(tiers: tuple[tuple[float | None, float], ...]) -> str:
    """``to 100,000,000: 100%; to 120,000,000: 97.5%; above: 95%`` (one unbounded tier: ``all: 100%``)."""
    parts = []
    for i, (cap, ratio) in enumerate(tiers):
        where = f"to {cap:,.0f}" if cap is not None else ("above" if i else "all")
        parts.append(f"{where}: {ratio * 100:g}%")
    return "; ".join(parts)
