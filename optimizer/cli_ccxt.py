"""`pmopt import ccxt`, `pmopt rules import-ccxt` and `pmopt fetch`: books and rules from the venues' own data.

The ``import`` group and ``fetch`` are added to the command line in :mod:`optimizer.cli`, ``import-ccxt`` to its
``rules`` group.  Notes on every mapping choice go to stderr (and into the written book's header).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

_FEE_HELP = ("Closing-fee rate added to every maintenance requirement (BingX, MEXC, WEEX liquidate at MM + "
             "closing fee: give their taker fee rate, or 0).")
_PATH = click.Path(path_type=Path)


@click.group("import")
def import_group() -> None:
    """Build a book from data saved from the venues.

    \b
    Example:
      pmopt import ccxt --positions positions.json --balance balance.json --venue binanceusdm -o book.yaml
    """


@import_group.command("ccxt")
@click.option("--positions", type=_PATH, help="JSON saved from ccxt fetch_positions().")
@click.option("--balance", type=_PATH, help="JSON saved from ccxt fetch_balance().")
@click.option("--venue", help="The book's venue id (default: --exchange); also the ccxt exchange id if it is one.")
@click.option("--exchange", help="The ccxt exchange id whose conventions apply (default: --venue).")
@click.option("--account", default="main", show_default=True, help="The book's account id.")
@click.option("--rules", "rules_ref", help="Built-in rule-set name or rules file (default: the exchange's usual set).")
@click.option("--tiers", type=_PATH, help="Instead of --rules: JSON saved from fetch_leverage_tiers(); written as "
              "VENUE-rules.yaml beside the book.")
@click.option("--markets", type=_PATH, help="JSON of the exchange's markets (contract sizes for --tiers).")
@click.option("--liquidation-fee-rate", type=click.FloatRange(0, 1, max_open=True), help=_FEE_HELP)
@click.option("--max-leverage", type=click.FloatRange(0, min_open=True),
              help="Max leverage for tiers that carry none (BingX).")
@click.option("--default-margin-mode", type=click.Choice(["cross", "isolated"]),
              help="Margin mode of positions whose marginMode ccxt leaves empty (Bybit).")
@click.option("--accounts", "accounts_map", type=_PATH,
              help="Several accounts at once: a YAML map of accounts and their files (see README).")
@click.option("--prices", type=_PATH, help="CSV or Parquet of daily USD closes: their last quotes price stablecoins "
              "and assets without a position mark (default: stablecoins at 1.0).")
@click.option("-o", "--output", type=_PATH, required=True, help="The book to write (YAML).")
def import_ccxt_command(positions: Path | None, balance: Path | None, venue: str | None, exchange: str | None,
                        account: str, rules_ref: str | None, tiers: Path | None, markets: Path | None,
                        liquidation_fee_rate: float | None, max_leverage: float | None,
                        default_margin_mode: str | None, accounts_map: Path | None, prices: Path | None,
                        output: Path) -> None:
    """A book (spec §1) from ccxt's fetch_positions() and fetch_balance() output.

    Each position is mapped to the rule set's contract by the venue id ccxt keeps in info (Binance symbol, OKX
    instId, ...) or the venue's id convention; qty = ±contracts × contractSize / the rule set's contract size;
    isolated_margin = positionMargin (else collateral − unrealizedPnl); collateral = the venue's cross wallet
    balance. A position that cannot be mapped, a missing field or a NaN is an error naming the file, the
    position and the key (exit code 2).

    \b
    Example:
      pmopt import ccxt --positions pos.json --balance bal.json --venue binanceusdm -o book.yaml
      pmopt import ccxt --positions pos.json --balance bal.json --venue bingx --tiers tiers.json \\
          --liquidation-fee-rate 0.0005 --max-leverage 50 -o book.yaml
      pmopt import ccxt --accounts accounts.yaml -o book.yaml
    """
    from risk_models.ccxt_positions import AccountSource, MarginMode, import_ccxt, sources_from_map, write_imported

    single = [positions, balance, venue, exchange, rules_ref, tiers, markets, liquidation_fee_rate, max_leverage,
              default_margin_mode]
    if accounts_map is not None:
        if any(v is not None for v in single):
            raise click.UsageError("--accounts takes every account from the map; give the other options there")
        sources, map_prices = sources_from_map(accounts_map)
        prices = prices or map_prices
    else:
        if positions is None or balance is None:
            raise click.UsageError("give --positions and --balance (or --accounts MAP.yaml)")
        venue = venue or exchange
        if venue is None:
            raise click.UsageError("give --venue (the book's venue id, e.g. binanceusdm)")
        sources = [AccountSource(venue=venue, account=account, positions=positions, balance=balance,
                                 exchange=exchange, rules=rules_ref, tiers=tiers, markets=markets,
                                 liquidation_fee_rate=liquidation_fee_rate, max_leverage=max_leverage,
                                 default_margin_mode=cast("MarginMode | None", default_margin_mode))]
    result = import_ccxt(sources, output, prices_file=prices)
    inputs = ", ".join(f"{s.venue}/{s.account} from {s.positions} and {s.balance}" for s in sources)
    written = write_imported(result, output, [f"Written by pmopt import ccxt: {inputs}."])
    _notes(result.notes)
    count = sum(len(a["positions"]) for v in result.book["venues"].values() for a in v["accounts"].values())
    click.echo(f"wrote {', '.join(map(str, written))}: {count} positions in {len(sources)} account(s)", err=True)


@click.command("import-ccxt")
@click.argument("tiers", type=_PATH)
@click.option("--venue", required=True, help="The rule set's venue name (and the ccxt id, unless --exchange).")
@click.option("--exchange", help="The ccxt exchange id whose conventions apply (default: --venue).")
@click.option("-o", "--output", type=_PATH, required=True,
              help="The rules file to write: YAML, or JSON syntax (faster to load) when it ends in .json.")
@click.option("--liquidation-fee-rate", type=click.FloatRange(0, 1, max_open=True), help=_FEE_HELP)
@click.option("--source", help="Where the tiers come from and their date (written as the rule set's source).")
@click.option("--date", help="ISO date of the tiers snapshot.")
@click.option("--markets", type=_PATH, help="JSON of the exchange's markets: venue ids, contract sizes (needed for "
              "inverse contracts and for tiers sized in contracts: OKX, MEXC).")
@click.option("--prices", type=_PATH, help="CSV or Parquet of daily USD closes, to convert tiers sized in contracts.")
@click.option("--max-leverage", type=click.FloatRange(0, min_open=True),
              help="Max leverage for tiers that carry none (BingX).")
def rules_import_ccxt(tiers: Path, venue: str, exchange: str | None, output: Path, liquidation_fee_rate: float | None,
                      source: str | None, date: str | None, markets: Path | None, prices: Path | None,
                      max_leverage: float | None) -> None:
    """A rules file (spec §2) from any venue's ccxt fetch_leverage_tiers() output.

    Brackets: cap = maxNotional, mmr = maintenanceMarginRate, max_leverage = maxLeverage; contract ids are the
    venue's own. The file loads with pmopt margin like any rules file.

    \b
    Example:
      pmopt rules import-ccxt tiers.json --venue binanceusdm -o binance.yaml --source "fetched 2025-02-20"
      pmopt rules import-ccxt tiers.json --venue bingx --liquidation-fee-rate 0.0005 --max-leverage 50 -o bingx.yaml
    """

    from risk_models.ccxt_positions import last_closes
    from risk_models.ccxt_rules import read_markets, rules_from_tiers_file
    from risk_models.ccxt_tiers import dump_rules_json, write_rules_yaml
    from risk_models.schema import Rules
    from risk_models.yaml_io import validate_model

    closes, closes_note = last_closes(prices)
    imported = rules_from_tiers_file(tiers, venue=venue, exchange=exchange, source=source, date=date,
                                     liquidation_fee_rate=liquidation_fee_rate, max_leverage=max_leverage,
                                     markets=read_markets(markets) if markets else None, prices=closes,
                                     price_note=closes_note.removeprefix("prices: "))
    validate_model(Rules, imported.rules, str(tiers))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".json":
        output.write_text(dump_rules_json(imported.rules), encoding="utf-8")
    else:
        write_rules_yaml(imported.rules, output)
    _notes(imported.notes)
    click.echo(f"wrote {output}: {len(imported.rules['contracts'])} contract(s)", err=True)


@click.command("fetch")
@click.option("--exchange", required=True, help="ccxt exchange id, e.g. binanceusdm, okx, bybit, bingx.")
@click.option("--symbols", help="Comma-separated ccxt symbols (default: those of the open positions).")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for positions.json, balance.json, tiers.json and markets.json.")
@click.option("--sandbox", is_flag=True, help="Use the exchange's testnet.")
@click.option("--book", type=_PATH, help="Then import the files into this book (as pmopt import ccxt).")
@click.option("--venue", help="With --book: the book's venue id (default: --exchange).")
@click.option("--account", default="main", show_default=True, help="With --book: the book's account id.")
@click.option("--rules", "rules_ref", help="With --book: rule set (default: the exchange's usual set, else the tiers).")
@click.option("--liquidation-fee-rate", type=click.FloatRange(0, 1, max_open=True), help=_FEE_HELP)
@click.option("--max-leverage", type=click.FloatRange(0, min_open=True),
              help="With --book and tiers: max leverage for tiers that carry none (BingX).")
@click.option("--prices", type=_PATH, help="With --book: CSV or Parquet of daily USD closes.")
def fetch(exchange: str, symbols: str | None, out_dir: Path, sandbox: bool, book: Path | None, venue: str | None,
          account: str, rules_ref: str | None, liquidation_fee_rate: float | None, max_leverage: float | None,
          prices: Path | None) -> None:
    """Save an account's positions, balance, leverage tiers and markets through ccxt (needs pmopt[live]).

    API keys come from the environment: PMOPT_<EXCHANGE>_API_KEY and PMOPT_<EXCHANGE>_SECRET (and
    PMOPT_<EXCHANGE>_PASSWORD for a passphrase, OKX), <EXCHANGE> being the ccxt id in upper case.

    \b
    Example:
      pmopt fetch --exchange binanceusdm -o data/binance/ --book book.yaml
      pmopt fetch --exchange okx --symbols BTC/USDT:USDT,ETH/USDT:USDT -o data/okx/
    """
    from risk_models.ccxt_positions import AccountSource, import_ccxt, write_imported
    from risk_models.ccxt_venues import profile_for

    from .ccxt_fetch import credentials, fetch_account, make_exchange

    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    instance = make_exchange(exchange, credentials(exchange), sandbox=sandbox)
    result = fetch_account(instance, out_dir, wanted)
    _notes(result.notes)
    click.echo(f"wrote {', '.join(map(str, result.files))}: {result.positions} positions", err=True)
    if book is None:
        return
    use_tiers = rules_ref is None and profile_for(exchange, venue).default_rules is None
    source = AccountSource(venue=venue or exchange, account=account, positions=out_dir / "positions.json",
                           balance=out_dir / "balance.json", exchange=exchange, rules=rules_ref,
                           tiers=out_dir / "tiers.json" if use_tiers else None,
                           markets=out_dir / "markets.json" if use_tiers else None,
                           liquidation_fee_rate=liquidation_fee_rate, max_leverage=max_leverage)
    imported = import_ccxt([source], book, prices_file=prices)
    written = write_imported(imported, book, [f"Written by pmopt fetch --exchange {exchange}: files in {out_dir}."])
    _notes(imported.notes)
    click.echo(f"wrote {', '.join(map(str, written))}", err=True)


def _notes(notes: tuple[str, ...] | list[str]) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)
