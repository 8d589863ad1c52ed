"""`pmopt demo`: margin, risk and optimize on the example desk shipped inside the package (works from a wheel)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import click

from .cli_output import command_progress, output_options

DESK_FILES = ("book.yaml", "policy.yaml")
"""The example desk: a copy of examples/multi_venue/ shipped as package data (optimizer/demo_desk/)."""


@contextmanager
def demo_desk() -> Iterator[Path]:
    """The folder holding the packaged example desk's book.yaml and policy.yaml (a real path while open)."""
    with resources.as_file(resources.files("optimizer").joinpath("demo_desk")) as folder:
        yield Path(folder)


@click.command()
@click.option("--copy-to", type=click.Path(path_type=Path, file_okay=False),
              help="Copy the example book.yaml and policy.yaml into DIR (to edit and re-run), then run the demo.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document {margin, risk, optimize} (spec §4, §5, §6) instead of tables.")
@output_options
def demo(copy_to: Path | None, as_json: bool) -> None:
    """Run margin, risk and optimize on the example multi-venue desk that ships with pmopt.

    The desk (prices of 2025-02-20): 15 positions in 5 accounts on Binance, Hyperliquid, Deribit and OKX, with
    USDT, USDC, BTC, ETH and LTC as collateral; the policy asks for 99 % one-day ES with a 1.5× buffer.

    \b
    Example:
      pmopt demo
      pmopt demo --copy-to my_desk && pmopt optimize my_desk/book.yaml --policy my_desk/policy.yaml
    """
    from risk_models.margin_report import margin_report

    from . import api
    from .render import print_margin_table, print_recommendation, print_risk_tables

    with demo_desk() as folder:
        if copy_to is not None:
            copy_to.mkdir(parents=True, exist_ok=True)
            for name in DESK_FILES:
                shutil.copyfile(folder / name, copy_to / name)
            click.echo(f"copied {', '.join(DESK_FILES)} to {copy_to}", err=True)
        book, policy = folder / "book.yaml", folder / "policy.yaml"
        progress = command_progress()
        loaded = api.load(book)
        with progress.stage("venue margin and liquidation prices"):
            margin = margin_report(loaded)
        with progress.stage("net portfolio margin (99 % ES, 1,095 days of joint moves)"):
            risk = api.risk_report_of(loaded, policy)
        with progress.stage("optimizing collateral and margin modes, then re-checking"):
            _, result = api.optimize_result(loaded, policy)
    if as_json:
        click.echo(json.dumps({"version": 1, "margin": margin.to_dict(), "risk": risk.to_dict(),
                               "optimize": result.document}, indent=2, allow_nan=False))
        return
    click.echo("== 1. pmopt margin: venue margin and liquidation prices ==")
    print_margin_table(margin)
    click.echo("\n== 2. pmopt risk --policy: net portfolio margin ==")
    print_risk_tables(risk)
    click.echo("\n== 3. pmopt optimize: what to post where, what to isolate ==")
    print_recommendation(result.document)
