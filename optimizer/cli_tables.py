"""`pmopt import tables`: a book from the positions, balances and prices tables a desk keeps (CSV or Parquet).

Added to the ``import`` group (:mod:`optimizer.cli_ccxt`) in :mod:`optimizer.cli`.  Notes on every choice go to
stderr and into the written book's header.
"""

from __future__ import annotations

from pathlib import Path

import click

_PATH = click.Path(path_type=Path)


def _rules_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``("binance=binance-usdm", ...)`` → ``{"binance": "binance-usdm"}``; a repeated venue is an error."""
    pairs: dict[str, str] = {}
    for value in values:
        venue, sep, ref = value.partition("=")
        venue, ref = venue.strip(), ref.strip()
        if not sep or not venue or not ref:
            raise click.BadParameter(f"{value!r}: write VENUE=RULESET, e.g. binance=binance-usdm-2024-10")
        if venue in pairs and pairs[venue] != ref:
            raise click.BadParameter(f"{venue} is given two rule sets ({pairs[venue]}, {ref}): give one")
        pairs[venue] = ref
    return pairs


@click.command("tables")
@click.option("--positions", type=_PATH, required=True,
              help="CSV or Parquet: venue, account, symbol, qty, entry_price [, mark_price, margin_mode, "
              "isolated_margin, leverage, pinned, rules].")
@click.option("--balances", type=_PATH, required=True,
              help="CSV or Parquet: venue, account, asset, amount; venue 'wallet' = off-venue holdings.")
@click.option("--prices", type=_PATH, help="CSV or Parquet: asset, price (USD per unit), or daily closes (date + "
              "one column per asset; the last row, or the row dated --as-of).")
@click.option("--rules", "rules", multiple=True, callback=_rules_pairs, metavar="VENUE=RULESET",
              help="A venue's rule set: a built-in name or a rules file (repeatable; or the positions' rules "
              "column).")
@click.option("--as-of", "as_of", help="ISO-8601 time of the book (its as_of); picks the daily-closes row.")
@click.option("-o", "--output", type=_PATH, required=True, help="The book to write (YAML).")
def import_tables_command(positions: Path, balances: Path, prices: Path | None, rules: dict[str, str],
                          as_of: str | None, output: Path) -> None:
    """A book (spec §1) from a positions table and a balances table (CSV or Parquet).

    qty is signed (+ long, − short): base units for linear contracts, contracts for inverse ones; prices in the
    contract's quote unit; isolated_margin and amounts in asset units. A bad cell, a missing column, a repeated
    (venue, account, symbol), a symbol the venue's rules do not define or a missing price is an error naming the
    file, the row (CSV: line, header = line 1; Parquet: row index from 0) and the column (exit code 2).

    \b
    Example:
      pmopt import tables --positions positions.csv --balances balances.csv --prices prices.csv \\
          --rules binance=binance-usdm-2024-10 --rules hyperliquid=hyperliquid -o book.yaml
    """
    from risk_models.ccxt_positions import write_imported
    from risk_models.table_import import import_tables

    result = import_tables(positions, balances, output, prices=prices, rules=rules, as_of=as_of)
    inputs = f"positions {positions}, balances {balances}" + (f", prices {prices}" if prices else "")
    written = write_imported(result, output, [f"Written by pmopt import tables: {inputs}."])
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    venues = result.book["venues"]
    count = sum(len(a["positions"]) for v in venues.values() for a in v["accounts"].values())
    accounts = sum(len(v["accounts"]) for v in venues.values())
    click.echo(f"wrote {', '.join(map(str, written))}: {count} positions in {accounts} account(s)", err=True)
