"""A book (spec §1) from the tables a desk keeps: positions, balances and prices (CSV or Parquet).

Tables (columns named exactly as below, any order; see docs/format-extensions.md, "Tables"):

- positions: ``venue, account, symbol, qty, entry_price`` and optionally ``mark_price, margin_mode, isolated_margin,
  leverage, pinned, rules``.  One row per position, in spec §1's units: ``qty`` signed (+ long, − short), in base
  units for linear contracts and in contracts for inverse ones; prices in the contract's quote unit (the settle
  asset for linear contracts, USD for inverse ones); ``isolated_margin`` in settle-asset units.
- balances: ``venue, account, asset, amount``, amounts in asset units (negative = a loan).  Rows whose venue is
  ``wallet`` are the off-venue holdings (spec §1 ``wallet``); their account is an optional label and amounts of
  one asset are summed over labels.
- prices (optional): a long table ``asset, price`` (USD per unit), or a wide table of daily closes (``date`` and one
  column per asset, as ``--prices`` elsewhere) of which the last row, or the row dated ``as_of``, is used.

Where a problem is: a CSV row is its line number (the header is line 1); a Parquet row is its row index, from 0.
Every problem is an :class:`~risk_models.errors.InputError` naming the file, the row and the column; all of them
are raised at once as :class:`~risk_models.errors.InputErrors` (exit code 2).  No row is ever dropped.  Position
values are checked by the book's own model and :func:`~risk_models.loading.check_book`, so messages read as for a
hand-written book.

Prices of the assets the book uses: the prices table first; then USD stablecoins at 1.0; then an underlying's
price from the first position with a ``mark_price`` (× the settle asset's price for linear contracts).  Each choice
is a note.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .ccxt_positions import USD_STABLECOINS, ImportedBook
from .errors import InputError, InputErrors
from .loading import VenueRules, check_book, load_rules
from .schema import Book
from .schema.book import Position
from .yaml_io import validation_errors

WALLET = "wallet"
"""The ``venue`` value of balance rows held off every venue (the book's ``wallet``)."""

POSITION_COLUMNS = ("venue", "account", "symbol", "qty", "entry_price")
POSITION_OPTIONAL = ("mark_price", "margin_mode", "isolated_margin", "leverage", "pinned", "rules")
BALANCE_COLUMNS = ("venue", "account", "asset", "amount")
PRICE_COLUMNS = ("asset", "price")

_NUMBER_FIELDS = ("qty", "entry_price", "mark_price", "isolated_margin", "leverage")
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


@dataclass(frozen=True)
class Table:
    """One table as read: its columns and rows (label such as ``line 3`` or ``row 2``, cells; None = empty)."""

    file: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, dict[str, Any]], ...]
    header: str
    """Where the column names are: ``line 1`` (CSV) or ``schema`` (Parquet)."""


@dataclass
class _Cells:
    """Typed access to one row's cells; problems are collected with file, row and column."""

    table: Table
    label: str
    cells: Mapping[str, Any]
    errors: list[InputError] = field(default_factory=list)

    def where(self, column: str) -> str:
        return f"{self.label}, column {column}"

    def error(self, column: str, reason: str, remedy: str = "") -> None:
        self.errors.append(InputError(self.table.file, self.where(column), reason, remedy))

    def raw(self, column: str) -> Any:
        value = self.cells.get(column)
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def text(self, column: str, *, required: bool) -> str | None:
        value = self.raw(column)
        if value is None:
            if required:
                self.error(column, "empty cell", f"every row needs its {column}")
            return None
        if isinstance(value, (bool, float)):
            self.error(column, f"must be text (got {value!r})")
            return None
        return str(value)

    def number(self, column: str, *, required: bool) -> float | None:
        value = self.raw(column)
        if value is None:
            if required:
                self.error(column, "empty cell", f"every row needs its {column}")
            return None
        if isinstance(value, bool):
            self.error(column, f"must be a number (got {value!r})")
            return None
        if isinstance(value, (int, float, Decimal)):
            number = float(value)
        else:
            try:
                number = float(str(value))
            except ValueError:
                self.error(column, f"must be a number (got {value!r})", "write plain numbers: 0.5, -12, 1e6")
                return None
        if not math.isfinite(number):
            self.error(column, f"must be a finite number (got {value!r})",
                       "write the number, or leave an optional cell empty")
            return None
        return number

    def flag(self, column: str) -> bool | None:
        value = self.raw(column)
        if value is None or isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        self.error(column, f"must be true or false (got {value!r})")
        return None


@dataclass
class _PositionRow:
    label: str
    venue: str
    account: str
    fields: dict[str, Any]


@dataclass
class _BalanceRow:
    label: str
    venue: str
    account: str
    asset: str
    amount: float


# --- reading tables -----------------------------------------------------------------------------------------------


def read_table(path: Path | str) -> Table:
    """A CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) table.  Raises InputError for an unreadable file."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InputError(file, "", "no such file", "check the path (a .csv or .parquet table)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, file)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, file)
    raise InputError(file, "", f"unsupported table type {suffix!r}", "use a .csv or .parquet file")


def _read_csv(path: Path, file: str) -> Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows: list[tuple[str, dict[str, Any]]] = []
            width_errors: list[InputError] = []
            if header is not None:
                header = [h.strip() for h in header]
                for cells in reader:
                    if not any(c.strip() for c in cells):
                        continue  # a blank line holds no row
                    label = f"line {reader.line_num}"
                    if len(cells) != len(header):
                        width_errors.append(InputError(file, label, f"{len(cells)} cells, the header has "
                                                       f"{len(header)}", "one cell per column (quote commas)"))
                        continue
                    rows.append((label, dict(zip(header, cells, strict=True))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(file, "", f"cannot parse the CSV ({exc})", "write UTF-8 text with one header row") from None
    if not header:
        raise InputError(file, "", "the file is empty", "write a header row of column names")
    _check_header(file, "line 1", header)
    if width_errors:
        raise InputErrors(width_errors)
    return Table(file, tuple(header), tuple(rows), "line 1")


def _read_parquet(path: Path, file: str) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(file, "", f"cannot read the Parquet file ({exc})", "write a valid Parquet table") from None
    # pandas stores a non-default index as __index_level_N__: it is not a column of the desk's table
    names = [n for n in table.column_names if not (n.startswith("__index_level_") and n.endswith("__"))]
    _check_header(file, "schema", names)
    columns = {n: table.column(n).to_pylist() for n in names}
    rows = tuple((f"row {i}", {n: columns[n][i] for n in names}) for i in range(table.num_rows))
    return Table(file, tuple(names), rows, "schema")


def _check_header(file: str, where: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputError(file, where, "a column has no name", "name every column")
        if name in seen:
            raise InputError(file, f"{where}, column {name}", "duplicated column", "keep one column of each name")
        seen.add(name)


def _column_errors(table: Table, required: Sequence[str], optional: Sequence[str]) -> list[InputError]:
    known = (*required, *optional)
    errors = []
    for name in table.columns:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            errors.append(InputError(table.file, f"{table.header}, column {name}", "unknown column",
                                     f"{hint}columns: {', '.join(known)}"))
    for name in required:
        if name not in table.columns:
            errors.append(InputError(table.file, table.header, f"missing column {name}",
                                     f"required columns: {', '.join(required)}"))
    return errors


# --- the import ---------------------------------------------------------------------------------------------------


def import_tables(positions: Path | str, balances: Path | str, out: Path | str, *,
                  prices: Path | str | None = None, rules: Mapping[str, str] | None = None,
                  as_of: str | None = None) -> ImportedBook:
    """The book the tables describe, to be written at ``out`` (rules paths are made relative to its folder).

    ``rules`` maps venue ids to a built-in rule-set name or a rules file (relative to the working directory);
    ``as_of`` (ISO-8601) becomes the book's ``as_of`` and picks the row of a wide prices table.
    """
    out = Path(out)
    errors: list[InputError] = []
    notes: list[str] = []
    day = _as_of_day(as_of, errors)
    tables: dict[str, Table | None] = {}
    for what, path, required, optional in (("positions", positions, POSITION_COLUMNS, POSITION_OPTIONAL),
                                           ("balances", balances, BALANCE_COLUMNS, ())):
        try:
            table = read_table(path)
        except (InputError, InputErrors) as exc:
            errors.extend(exc.errors if isinstance(exc, InputErrors) else [exc])
            tables[what] = None
            continue
        column_errors = _column_errors(table, required, optional)
        errors.extend(column_errors)
        # unknown columns are reported and the rows still read; without a required column they cannot be
        tables[what] = None if any(e.key == table.header for e in column_errors) else table
    pos_table, bal_table = tables["positions"], tables["balances"]
    position_rows, rules_cells = _position_rows(pos_table, errors) if pos_table else ([], [])
    balance_rows = _balance_rows(bal_table, errors) if bal_table else []
    table_prices, price_source = _table_prices(prices, day, errors, notes)
    venue_rules, book_rules = _venue_rules(position_rows, balance_rows, rules_cells, pos_table, bal_table,
                                           dict(rules or {}), out, errors, notes)

    # the book from every row that is not already in error; where each of its keys came from
    origin: dict[str, tuple[str, str, str]] = {}  # book key → (file, row, column)
    venues: dict[str, Any] = {}
    for venue in venue_rules:
        venues[venue] = {"rules": book_rules[venue], "accounts": {}}
    wallet: dict[str, float] = {}
    wallet_rows: dict[str, list[str]] = {}
    seen_balance: dict[tuple[str, str, str], str] = {}
    for b in balance_rows:
        assert bal_table is not None
        first = seen_balance.setdefault((b.venue, b.account, b.asset), b.label)
        if first != b.label:
            errors.append(InputError(bal_table.file, f"{b.label}, column asset", f"{b.asset} of {b.venue}/"
                                     f"{b.account} is already given at {first}", "keep one row per asset"))
            continue
        if b.venue == WALLET:
            wallet[b.asset] = float(Decimal(repr(wallet.get(b.asset, 0.0))) + Decimal(repr(b.amount)))
            wallet_rows.setdefault(b.asset, []).append(b.label)
            origin.setdefault(f"wallet.{b.asset}", (bal_table.file, b.label, "asset"))
            continue
        if b.venue not in venues:
            continue  # its venue has no rules: reported once, by venue
        account = venues[b.venue]["accounts"].setdefault(b.account, {"collateral": {}, "positions": []})
        account["collateral"][b.asset] = b.amount
        origin[f"venues.{b.venue}.accounts.{b.account}.collateral.{b.asset}"] = (bal_table.file, b.label, "asset")
        origin.setdefault(f"venues.{b.venue}.accounts.{b.account}.collateral",
                          (bal_table.file, f"venue {b.venue}, account {b.account}", ""))
    for asset, labels in wallet_rows.items():
        if len(labels) > 1:
            notes.append(f"wallet {asset}: the sum of {len(labels)} rows ({', '.join(labels)})")
    for p in position_rows:
        assert pos_table is not None
        if p.venue not in venues:
            continue
        account = venues[p.venue]["accounts"].setdefault(p.account, {"collateral": {}, "positions": []})
        key = f"venues.{p.venue}.accounts.{p.account}.positions[{len(account['positions'])}]"
        account["positions"].append(p.fields)
        origin[key] = (pos_table.file, p.label, "symbol")

    venues = {v: venue for v, venue in venues.items() if venue["accounts"]}
    book_prices = _book_prices(venues, wallet, venue_rules, table_prices, price_source, origin, errors, notes)
    book: dict[str, Any] = {"version": 1}
    if as_of is not None and day is not None:
        book["as_of"] = as_of
    book["prices"] = book_prices
    book["venues"] = venues
    if wallet:
        book["wallet"] = wallet
    if not venues and not errors:
        errors.append(InputError(str(positions), "", "no account on any venue in either table",
                                 "add positions, or balance rows whose venue is not 'wallet'"))
    if venues:
        errors.extend(_book_errors(book, out, venue_rules, origin))
    if errors:
        raise InputErrors(_in_file_order(errors, [str(positions), str(balances), str(prices)]))
    return ImportedBook(book, {}, tuple(notes))


def _in_file_order(errors: list[InputError], files: Sequence[str]) -> list[InputError]:
    """Errors sorted by file (positions, balances, prices, then the rest) and row number; stable otherwise."""

    def order(error: InputError) -> tuple[int, int]:
        rank = files.index(error.file) if error.file in files else len(files)
        head = error.key.split(",")[0].split()
        row = int(head[1]) if len(head) == 2 and head[0] in ("line", "row") and head[1].isdigit() else -1
        return rank, row

    return sorted(errors, key=order)


def _as_of_day(as_of: str | None, errors: list[InputError]) -> str | None:
    """The UTC date (``YYYY-MM-DD``) of ``as_of``, or None (absent or unreadable: then reported)."""
    if as_of is None:
        return None
    try:
        moment = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError:
        errors.append(InputError("--as-of", as_of, "not an ISO-8601 date or time", "e.g. 2025-02-20T00:00:00Z"))
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date().isoformat()


def _position_rows(table: Table, errors: list[InputError]) -> tuple[list[_PositionRow], list[tuple[str, str, str]]]:
    """The rows whose cells all parse, and the (venue, rules, row) of every filled ``rules`` cell."""
    rows: list[_PositionRow] = []
    rules_cells: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str, str], str] = {}
    for label, cells in table.rows:
        row = _Cells(table, label, cells)
        venue = row.text("venue", required=True)
        account = row.text("account", required=True)
        symbol = row.text("symbol", required=True)
        if venue == WALLET:
            row.error("venue", f"'{WALLET}' is the off-venue holdings of the balances table, not a venue",
                      "give the venue id the position is held on")
        if venue is not None and account is not None and symbol is not None:
            first = seen.setdefault((venue, account, symbol), label)
            if first != label:
                row.error("symbol", f"{symbol} of {venue}/{account} is already held at {first}",
                          "one-way mode, spec §1: merge the rows into one signed qty")
        fields: dict[str, Any] = {"symbol": symbol}
        for name in _NUMBER_FIELDS:
            value = row.number(name, required=name in ("qty", "entry_price"))
            if value is not None:
                fields[name] = value
        mode = row.text("margin_mode", required=False)
        if mode is not None:
            fields["margin_mode"] = mode
        pinned = row.flag("pinned")
        if pinned is not None:
            fields["pinned"] = pinned
        ref = row.text("rules", required=False)
        if ref is not None and venue is not None:
            rules_cells.append((venue, ref, label))
        bad = {e.key for e in row.errors}
        try:
            Position.model_validate(fields)
        except ValidationError as exc:  # the book's own checks of values (signs, modes), cells already in error aside
            for e in validation_errors(table.file, exc).errors:
                if row.where(e.key) not in bad and e.reason != "required key is missing":
                    row.error(e.key, e.reason, e.remedy)
        errors.extend(row.errors)
        if not row.errors and venue is not None and account is not None:
            rows.append(_PositionRow(label, venue, account, _ordered(fields)))
    return rows, rules_cells


def _ordered(fields: dict[str, Any]) -> dict[str, Any]:
    """Spec §1's key order."""
    order = ("symbol", "qty", "entry_price", "mark_price", "margin_mode", "isolated_margin", "leverage", "pinned")
    return {k: fields[k] for k in order if k in fields}


def _balance_rows(table: Table, errors: list[InputError]) -> list[_BalanceRow]:
    rows = []
    for label, cells in table.rows:
        row = _Cells(table, label, cells)
        venue = row.text("venue", required=True)
        account = row.text("account", required=venue != WALLET)
        asset = row.text("asset", required=True)
        amount = row.number("amount", required=True)
        errors.extend(row.errors)
        if not row.errors and venue is not None and asset is not None and amount is not None:
            rows.append(_BalanceRow(label, venue, account or "", asset, amount))
    return rows


# --- rules --------------------------------------------------------------------------------------------------------


def _venue_rules(positions: Sequence[_PositionRow], balances: Sequence[_BalanceRow],
                 rules_cells: Sequence[tuple[str, str, str]], pos_table: Table | None, bal_table: Table | None,
                 given: dict[str, str], out: Path, errors: list[InputError], notes: list[str]
                 ) -> tuple[dict[str, VenueRules], dict[str, str]]:
    """(venue → loaded rules, venue → the book's ``rules`` value) for every venue whose rules load."""
    first_seen: dict[str, tuple[str, str]] = {}  # venue → (file, row) of its first row
    for p in positions:
        assert pos_table is not None
        first_seen.setdefault(p.venue, (pos_table.file, p.label))
    for b in balances:
        assert bal_table is not None
        if b.venue != WALLET:
            first_seen.setdefault(b.venue, (bal_table.file, b.label))
    pos_file = pos_table.file if pos_table else ""
    # where each venue's rules come from: (ref, file, key)
    chosen: dict[str, tuple[str, str, str]] = {}
    for venue, ref, label in rules_cells:
        key = f"{label}, column rules"
        previous = chosen.get(venue)
        if previous is not None and previous[0] != ref:
            errors.append(InputError(pos_file, key, f"venue {venue} already has rules {previous[0]!r} "
                                     f"({previous[2]})", "one venue id has one rule set: use another venue id"))
            continue
        chosen.setdefault(venue, (ref, pos_file, key))
    for venue, ref in given.items():
        previous = chosen.get(venue)
        if previous is not None and previous[0] != ref:
            errors.append(InputError("--rules", f"{venue}={ref}", f"the positions table gives rules "
                                     f"{previous[0]!r} to {venue} ({previous[2]})",
                                     "give one rule set per venue: drop --rules or fix the rules column"))
        elif venue not in first_seen and venue not in {v for v, _, _ in rules_cells}:
            errors.append(InputError("--rules", f"{venue}={ref}", f"venue {venue} is in neither table",
                                     f"venues: {', '.join(first_seen) or 'none'}"))
        else:
            chosen[venue] = (ref, "--rules", f"{venue}={ref}")
    loaded: dict[str, VenueRules] = {}
    book_refs: dict[str, str] = {}
    for venue, (file, row) in first_seen.items():
        if venue not in chosen:
            errors.append(InputError(file, f"{row}, column venue", f"venue {venue} has no rule set",
                                     f"pass --rules {venue}=RULESET or fill the positions table's rules "
                                     "column; pmopt rules list shows the built-in sets"))
            continue
        ref, ref_file, ref_key = chosen[venue]
        try:
            vr = load_rules(ref, None, file=ref_file, key=ref_key)
        except InputError as exc:
            errors.append(exc)
            continue
        except InputErrors as exc:
            errors.extend(exc.errors)
            continue
        loaded[venue] = vr
        is_path = Path(ref).suffix in (".yaml", ".yml", ".json") or "/" in ref or "\\" in ref
        book_refs[venue] = os.path.relpath(Path(ref).resolve(), out.resolve().parent) if is_path else ref
        if not is_path and vr.name != ref:
            notes.append(f"{venue}: rules {ref} are {vr.name}")
    return loaded, book_refs


# --- prices -------------------------------------------------------------------------------------------------------


def _table_prices(path: Path | str | None, day: str | None, errors: list[InputError], notes: list[str]
                  ) -> tuple[dict[str, float], str]:
    """(asset → USD price, a description of where they come from) from the prices table, long or wide."""
    if path is None:
        return {}, ""
    try:
        columns = _column_names(Path(path))
    except InputError as exc:
        errors.append(exc)
        return {}, str(path)
    if "asset" in columns and not any(c.lower() == "date" for c in columns):
        return _long_prices(Path(path), errors, notes)
    return _wide_prices(Path(path), day, errors, notes)


def _column_names(path: Path) -> list[str]:
    if path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise InputError(str(path), "", f"cannot read the Parquet file ({exc})", "write a valid Parquet table"
                             ) from None
        return [n for n in names if not (n.startswith("__index_level_") and n.endswith("__"))]
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                return [h.strip() for h in next(csv.reader(fh), [])]
        except (UnicodeDecodeError, csv.Error):
            return []  # read_table or load_prices reports it
    return []


def _long_prices(path: Path, errors: list[InputError], notes: list[str]) -> tuple[dict[str, float], str]:
    try:
        table = read_table(path)
    except (InputError, InputErrors) as exc:
        errors.extend(exc.errors if isinstance(exc, InputErrors) else [exc])
        return {}, str(path)
    column_errors = _column_errors(table, PRICE_COLUMNS, ())
    errors.extend(column_errors)
    if any(e.key == table.header for e in column_errors):
        return {}, str(path)
    prices: dict[str, float] = {}
    first: dict[str, str] = {}
    for label, cells in table.rows:
        row = _Cells(table, label, cells)
        asset = row.text("asset", required=True)
        price = row.number("price", required=True)
        if price is not None and price <= 0:
            row.error("price", f"must be > 0 (got {price:g})", "USD per unit of the asset")
        if asset is not None and asset in first:
            row.error("asset", f"{asset} is already priced at {first[asset]}", "keep one row per asset")
        errors.extend(row.errors)
        if not row.errors and asset is not None and price is not None:
            prices[asset] = price
            first[asset] = label
    source = f"{table.file}"
    notes.append(f"prices: {source} (USD per unit)")
    return prices, source


def _wide_prices(path: Path, day: str | None, errors: list[InputError], notes: list[str]
                 ) -> tuple[dict[str, float], str]:
    from .market_data import iso, load_prices

    try:
        history = load_prices(path)
    except (InputError, InputErrors) as exc:
        errors.extend(exc.errors if isinstance(exc, InputErrors) else [exc])
        return {}, str(path)
    frame = history.prices
    dates = [iso(d) for d in frame.index]
    if day is None:
        at = len(dates) - 1
    elif day in dates:
        at = dates.index(day)
    else:
        errors.append(InputError(str(path), "date", f"no row dated {day} (the --as-of date)",
                                 f"the file covers {dates[0]} to {dates[-1]}: give an --as-of inside it, or add "
                                 "that day's closes"))
        return {}, str(path)
    row = frame.iloc[at]
    prices = {str(a): float(v) for a, v in row.items() if math.isfinite(float(v))}
    which = f"the row dated {dates[at]}" + ("" if day else " (the last)")
    notes.append(f"prices: {path}, {which} (daily USD closes)")
    return prices, f"{path}, {which},"


def _book_prices(venues: Mapping[str, Any], wallet: Mapping[str, float], rules: Mapping[str, VenueRules],
                 table: Mapping[str, float], source: str, origin: Mapping[str, tuple[str, str, str]],
                 errors: list[InputError], notes: list[str]) -> dict[str, float]:
    """USD prices of every asset the book uses; a missing one is an error at the first row that uses it."""
    needed: dict[str, tuple[str, str, str, str]] = {}  # asset → (file, row, column, why) of its first use
    marks: dict[str, tuple[Any, float]] = {}  # underlying → (contract, mark) of its first marked position
    for venue_id, venue in venues.items():
        contracts = rules[venue_id].rules.contracts
        for account_id, account in venue["accounts"].items():
            base = f"venues.{venue_id}.accounts.{account_id}"
            for i, p in enumerate(account["positions"]):
                contract = contracts.get(p["symbol"])
                if contract is None:
                    continue  # an unknown symbol: check_book names it
                file, row, _ = origin[f"{base}.positions[{i}]"]
                needed.setdefault(contract.underlying, (file, row, "symbol", f"the underlying of {p['symbol']}"))
                needed.setdefault(contract.settle, (file, row, "symbol", f"the settle asset of {p['symbol']}"))
                if "mark_price" in p:
                    marks.setdefault(contract.underlying, (contract, p["mark_price"]))
            for asset in account["collateral"]:
                file, row, column = origin[f"{base}.collateral.{asset}"]
                needed.setdefault(asset, (file, row, column, f"collateral of {venue_id}/{account_id}"))
    for asset in wallet:
        file, row, column = origin[f"wallet.{asset}"]
        needed.setdefault(asset, (file, row, column, "held in the wallet"))
    prices = {a: table[a] for a in needed if a in table}
    stable = sorted(a for a in needed if a not in prices and a in USD_STABLECOINS)
    for asset in stable:
        prices[asset] = 1.0
    from_marks: list[str] = []
    for _ in range(3):  # a linear contract settled in a priced coin needs that coin's price first
        for asset, (contract, mark) in marks.items():
            if asset in prices:
                continue
            if contract.kind == "inverse":
                prices[asset] = mark
            elif contract.settle in prices:
                prices[asset] = float(Decimal(repr(mark)) * Decimal(repr(prices[contract.settle])))
            else:
                continue
            from_marks.append(asset)
    if stable:
        notes.append(f"prices of {', '.join(stable)}: 1.0 USD (stablecoin{'s' if len(stable) > 1 else ''})")
    if from_marks:
        notes.append(f"prices of {', '.join(sorted(from_marks))}: the first position's mark_price (× its settle "
                     "asset's price for linear contracts)")
    for asset, (file, row, column, why) in needed.items():
        if asset not in prices:
            where = f"{source} has no {asset}" if source else "no prices table"
            errors.append(InputError(file, f"{row}, column {column}",
                                     f"no USD price for {asset}, {why} ({where}, no position mark_price)",
                                     f"add {asset} to the --prices table, or a mark_price to a position on "
                                     f"{asset}"))
    return {a: prices[a] for a in sorted(prices, key=lambda a: (a in USD_STABLECOINS, a))}


# --- the book's own checks ----------------------------------------------------------------------------------------


def _book_errors(book: dict[str, Any], out: Path, rules: Mapping[str, VenueRules],
                 origin: Mapping[str, tuple[str, str, str]]) -> list[InputError]:
    """The book model's and :func:`check_book`'s findings, placed at the table row and column they come from."""
    try:
        validated = Book.model_validate(book)
    except ValidationError as exc:
        return [_placed(e, origin) for e in validation_errors(str(out), exc).errors]
    found = check_book(str(out), validated, dict(rules))
    # missing prices are reported at the row that needs them (see _book_prices)
    return [_placed(e, origin) for e in found if not e.key.startswith("prices.")]


def _placed(error: InputError, origin: Mapping[str, tuple[str, str, str]]) -> InputError:
    """``error`` (keyed by a book key path) re-keyed to the table file, row and column behind that key."""
    for prefix in sorted(origin, key=len, reverse=True):
        if error.key == prefix or error.key.startswith(prefix + "."):
            file, row, column = origin[prefix]
            rest = error.key[len(prefix) + 1:]
            if "." in rest or not rest:
                rest = column
            where = f"{row}, column {rest}" if rest else row
            return InputError(file, where, error.reason, error.remedy)
    return error

