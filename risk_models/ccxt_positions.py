"""A book (spec §1) from saved ccxt ``fetch_positions()`` and ``fetch_balance()`` output.

One :class:`AccountSource` per account: the two JSON files, the venue and account ids of the book, the ccxt
exchange whose conventions apply and the rules (a built-in name, a rules file, or saved leverage tiers).
:func:`import_ccxt` maps every position and balance and returns the book dict, the rules files to write beside
it and notes on every choice made; :func:`write_imported` writes them.  Nothing is dropped silently: a position
that cannot be mapped, a missing field or a non-finite number is an :class:`~risk_models.errors.InputError`
naming the file, the key path (``[3].symbol``) and the reason, all problems at once (exit code 2); zero-size
positions and balances the rules do not accept as collateral are left out with a note.

Mappings (see also docs/format-extensions.md, "pmopt import ccxt"):

- contract: the first of the venue ids in the position's ``info`` (Binance ``symbol``, OKX ``instId``, …) and
  the venue's id convention that the rule set defines; ``symbols`` overrides both;
- ``qty`` = ±``contracts`` × ``contractSize`` / the rule set's ``contract_size`` (− for ``side: short``): base
  units for linear contracts of size 1 (spec §1), contracts for inverse ones;
- ``entry_price`` = ``entryPrice``, ``mark_price`` = ``markPrice``, ``leverage`` = ``leverage`` when given;
- ``isolated_margin`` = ``positionMargin`` (ccxt: the margin held by the position, without unrealized PnL),
  else ``collateral − unrealizedPnl`` (ccxt's ``collateral`` includes the PnL); never ``initialMargin``
  (Binance reports notional / leverage there, not the isolated wallet);
- ``collateral``: the venue's cross wallet balance from the balance's ``info`` (:mod:`risk_models.ccxt_venues`),
  else ccxt's unified ``total`` (reported);
- ``prices``: USD stablecoins 1.0 (or the price file's last close), underlyings from the first position's
  ``markPrice`` (× the settle asset's price for linear contracts), other assets from the price file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from .ccxt_rules import read_json, read_markets, rules_from_tiers_file
from .ccxt_tiers import CcxtSymbol, parse_ccxt_symbol
from .ccxt_venues import VenueProfile, balance_rows, candidate_ids, profile_for
from .errors import InputError, InputErrors
from .loading import VenueRules, check_book, load_rules
from .schema import Book, Rules
from .schema.imports import ImportMap
from .schema.rules import Contract
from .yaml_io import read_yaml, validate_model

USD_STABLECOINS = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI", "USDP", "PYUSD", "USDE", "USD1"})
"""Priced at 1.0 USD unless the price file has a column for them."""

MarginMode = Literal["cross", "isolated"]


@dataclass(frozen=True)
class AccountSource:
    """One account's saved ccxt output and how to read it.  Paths as the user gave them."""

    venue: str
    account: str
    positions: Path
    balance: Path
    exchange: str | None = None
    rules: str | None = None
    """Built-in rule-set name or rules-file path; None with ``tiers`` None = the exchange's usual built-in set."""
    tiers: Path | None = None
    markets: Path | None = None
    liquidation_fee_rate: float | None = None
    max_leverage: float | None = None
    default_margin_mode: MarginMode | None = None
    """For positions whose ``marginMode`` ccxt leaves empty (Bybit)."""
    symbols: tuple[tuple[str, str], ...] = ()
    """(ccxt symbol, contract id) overrides."""
    origin: str = "command line"
    """Where this source was declared (the map file and entry), for errors about the source itself."""


@dataclass(frozen=True)
class ImportedBook:
    """The book dict, rules files to write beside it (file name → rules dict) and the notes."""

    book: dict[str, Any]
    rules_files: dict[str, dict[str, Any]]
    notes: tuple[str, ...]


@dataclass
class _Position:
    source: AccountSource
    index: int
    ccxt_symbol: CcxtSymbol
    contract_id: str
    contract: Contract
    qty: float
    entry: float
    mark: float | None
    mode: MarginMode
    isolated_margin: float | None
    leverage: float | None


@dataclass
class _Account:
    source: AccountSource
    profile: VenueProfile
    positions: list[_Position] = field(default_factory=list)
    collateral: dict[str, float] = field(default_factory=dict)
    collateral_key: dict[str, str] = field(default_factory=dict)


def sources_from_map(path: Path | str) -> tuple[list[AccountSource], Path | None]:
    """The accounts of an import map (schema :class:`~risk_models.schema.imports.ImportMap`) and its price file."""
    path = Path(path)
    data = read_yaml(path)
    spec = validate_model(ImportMap, data, str(path))
    base = path.parent

    def rel(value: str | None) -> Path | None:
        return None if value is None else base / value

    sources = []
    for i, a in enumerate(spec.accounts):
        rules = a.rules
        if rules is not None and (rules.endswith((".yaml", ".yml", ".json")) or "/" in rules or "\\" in rules):
            rules = str(base / rules)
        sources.append(AccountSource(
            venue=a.venue, account=a.account, positions=base / a.positions, balance=base / a.balance,
            exchange=a.exchange, rules=rules, tiers=rel(a.tiers), markets=rel(a.markets),
            liquidation_fee_rate=a.liquidation_fee_rate, max_leverage=a.max_leverage,
            default_margin_mode=a.default_margin_mode, symbols=tuple(a.symbols.items()),
            origin=f"{path}: accounts[{i}]"))
    return sources, rel(spec.prices)


def import_ccxt(sources: Sequence[AccountSource], out: Path | str, *, prices_file: Path | str | None = None
                ) -> ImportedBook:
    """Map every source into one book written at ``out`` (rules paths are made relative to its folder)."""
    out = Path(out)
    notes: list[str] = []
    errors: list[InputError] = []
    closes, closes_note = last_closes(prices_file)
    if closes_note:
        notes.append(closes_note)
    seen_accounts: dict[tuple[str, str], str] = {}
    venue_rules: dict[str, tuple[str, VenueRules]] = {}
    rules_files: dict[str, dict[str, Any]] = {}
    accounts: list[_Account] = []
    for source in sources:
        key = (source.venue, source.account)
        if key in seen_accounts:
            errors.append(InputError(source.origin, "account", f"account {source.venue}/{source.account} is "
                                     f"already imported from {seen_accounts[key]}", "give each account its own id"))
            continue
        seen_accounts[key] = source.origin
        profile = profile_for(source.exchange, source.venue)
        try:
            ref, vr, written = _rules_for(source, profile, out, closes, notes)
        except (InputError, InputErrors) as exc:
            errors.extend(exc.errors if isinstance(exc, InputErrors) else [exc])
            continue
        if written is not None:
            if ref in rules_files and rules_files[ref] != written:
                errors.append(InputError(source.origin, "tiers", f"venue {source.venue} already has rules made "
                                         "from other tiers", "one venue id has one rule set: use another venue id"))
                continue
            rules_files[ref] = written
        previous = venue_rules.get(source.venue)
        if previous is not None and previous[0] != ref:
            errors.append(InputError(source.origin, "rules", f"venue {source.venue} already uses rules {previous[0]}"
                                     f", not {ref}", "one venue id has one rule set: use another venue id"))
            continue
        venue_rules[source.venue] = (ref, vr)
        if profile.exchange == "generic":
            notes.append(f"{source.venue}: {source.exchange or source.venue!r} is not an exchange pmopt knows; "
                         "contract ids are matched by every known convention")
        account = _Account(source, profile)
        errors.extend(_read_positions(account, vr, notes))
        errors.extend(_read_balance(account, vr, notes))
        accounts.append(account)
    if errors:
        raise InputErrors(errors)
    prices, price_errors = _prices(accounts, closes, notes)
    if price_errors:
        raise InputErrors(price_errors)
    book = _book(accounts, {v: ref for v, (ref, _) in venue_rules.items()}, prices)
    _validate(book, out, {v: vr for v, (_, vr) in venue_rules.items()})
    return ImportedBook(book, rules_files, tuple(notes))


def write_imported(result: ImportedBook, out: Path | str, header: Sequence[str] = ()) -> list[Path]:
    """Write the rules files (beside ``out``) and the book; the header lines become YAML comments."""
    from .ccxt_tiers import write_rules_yaml

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rules in result.rules_files.items():
        path = out.parent / name
        write_rules_yaml(rules, path)
        written.append(path)
    lines = [f"# {line}" for line in header] + [f"# note: {n}" for n in result.notes]
    text = "\n".join(lines) + ("\n" if lines else "") + _yaml_text(result.book)
    out.write_text(text, encoding="utf-8")
    written.append(out)
    return written


# --- rules --------------------------------------------------------------------------------------------------------


def _rules_for(source: AccountSource, profile: VenueProfile, out: Path, closes: Mapping[str, float],
               notes: list[str]) -> tuple[str, VenueRules, dict[str, Any] | None]:
    """(the book's ``rules`` value, the loaded rules, the rules dict to write beside the book or None)."""
    if source.tiers is not None and source.rules is not None:
        raise InputError(source.origin, "rules", "both rules and tiers given", "give one of them")
    if source.tiers is not None:
        markets = read_markets(source.markets) if source.markets is not None else None
        imported = rules_from_tiers_file(
            source.tiers, venue=source.venue, exchange=source.exchange,
            liquidation_fee_rate=source.liquidation_fee_rate, max_leverage=source.max_leverage, markets=markets,
            prices=closes, price_note="the price file's last closes")
        name = f"{_slug(source.venue)}-rules.yaml"
        rules = validate_model(Rules, imported.rules, str(source.tiers))
        notes.extend(f"{source.venue} rules: {n}" for n in imported.notes)
        notes.append(f"{source.venue}: rules made from {source.tiers} and written to {name}")
        return name, VenueRules(name, rules), imported.rules
    ref = source.rules or profile.default_rules
    if ref is None:
        raise InputError(source.origin, "rules", f"no built-in rule set for {profile.exchange} "
                         f"(venue {source.venue})", "pass --rules NAME_OR_FILE, or --tiers TIERS.json")
    vr = load_rules(ref, None, file=source.origin, key="rules")
    if source.rules is None:
        notes.append(f"{source.venue}: rules {vr.name} (the built-in set for {profile.exchange})")
    is_path = Path(ref).suffix in (".yaml", ".yml", ".json") or "/" in ref or "\\" in ref
    book_ref = os.path.relpath(Path(ref).resolve(), out.resolve().parent) if is_path else ref
    return book_ref, vr, None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "venue"


# --- positions ----------------------------------------------------------------------------------------------------


def _read_positions(account: _Account, vr: VenueRules, notes: list[str]) -> list[InputError]:
    source = account.source
    file = str(source.positions)
    try:
        data = read_json(source.positions, "positions")
    except InputError as exc:
        return [exc]
    if not isinstance(data, list):
        return [InputError(file, "", "expected a list of ccxt position structures",
                           "save the result of exchange.fetch_positions()")]
    errors: list[InputError] = []
    overrides = dict(source.symbols)
    held: dict[str, int] = {}
    zero: list[str] = []
    isolated_from: dict[str, int] = {}
    for i, raw in enumerate(data):
        if not isinstance(raw, Mapping):
            errors.append(InputError(file, f"[{i}]", "not a position structure (a JSON object)"))
            continue
        reader = _Fields(file, i, raw)
        position = _position(account, vr, reader, overrides, zero, isolated_from)
        errors.extend(reader.errors)
        if position is None or reader.errors:
            continue
        if position.contract_id in held:
            errors.append(InputError(file, f"[{i}].symbol", f"{raw.get('symbol')} is already held at "
                                     f"[{held[position.contract_id]}] (hedge mode: a long and a short leg)",
                                     "pmopt books are one-way (spec §1): net the two legs into one position"))
            continue
        held[position.contract_id] = i
        account.positions.append(position)
    tag = f"{source.venue}/{source.account}"
    if zero:
        notes.append(f"{tag}: {len(zero)} zero-size position(s) left out ({', '.join(zero)})")
    for how, n in isolated_from.items():
        notes.append(f"{tag}: isolated_margin of {n} position(s) from {how}")
    return errors


class _Fields:
    """Typed access to one position's fields; problems are collected with their key path."""

    def __init__(self, file: str, index: int, raw: Mapping[str, Any]) -> None:
        self.file = file
        self.index = index
        self.raw = raw
        self.errors: list[InputError] = []

    def error(self, key: str, reason: str, remedy: str = "") -> None:
        self.errors.append(InputError(self.file, f"[{self.index}].{key}", reason, remedy))

    def number(self, key: str, *, required: bool, minimum: float | None = None, strict: bool = False
               ) -> float | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.error(key, "missing (null or absent)", _REMEDY.get(key, ""))
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(key, f"must be a number (got {value!r})")
            return None
        if not math.isfinite(value):
            self.error(key, f"must be a finite number (got {value!r})")
            return None
        if minimum is not None and (value < minimum or (strict and value == minimum)):
            self.error(key, f"must be {'>' if strict else '>='} {minimum:g} (got {value!r})")
            return None
        return float(value)


_REMEDY = {
    "contracts": "save the positions as ccxt's fetch_positions() returns them",
    "contractSize": "ccxt fills contractSize from the markets: call load_markets() before fetch_positions()",
    "entryPrice": "the venue did not report an entry price; add it to the file",
}


def _position(account: _Account, vr: VenueRules, f: _Fields, overrides: Mapping[str, str], zero: list[str],
              isolated_from: dict[str, int]) -> _Position | None:
    raw = f.raw
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        f.error("symbol", "missing: a position needs its ccxt symbol (BASE/QUOTE:SETTLE)")
        return None
    try:
        parsed = parse_ccxt_symbol(symbol)
    except ValueError as exc:
        f.error("symbol", str(exc), "only perpetual and dated futures positions go into a book")
        return None
    contracts = f.number("contracts", required=True, minimum=0)
    if contracts == 0:
        zero.append(symbol)
        return None
    size = f.number("contractSize", required=True, minimum=0, strict=True)
    entry = f.number("entryPrice", required=True, minimum=0, strict=True)
    mark = f.number("markPrice", required=False, minimum=0, strict=True)
    leverage = f.number("leverage", required=False, minimum=0, strict=True)
    side = raw.get("side")
    if side not in ("long", "short"):
        f.error("side", f"must be 'long' or 'short' (got {side!r})",
                "ccxt could not tell the side: set it from the venue's own record in info")
    mode = raw.get("marginMode") or account.source.default_margin_mode
    if mode not in ("cross", "isolated"):
        f.error("marginMode", f"must be 'cross' or 'isolated' (got {raw.get('marginMode')!r})",
                "ccxt leaves it empty on some venues (Bybit): pass --default-margin-mode cross|isolated")
    mapped = _contract(account, vr, f, parsed, overrides)
    if mapped is None or f.errors or contracts is None or size is None or entry is None:
        return None
    cid, contract = mapped
    isolated_margin = _isolated_margin(f, isolated_from) if mode == "isolated" else None
    if f.errors:
        return None
    qty = float(Decimal(repr(contracts)) * Decimal(repr(size)) / Decimal(repr(contract.contract_size)))
    return _Position(account.source, f.index, parsed, cid, contract, -qty if side == "short" else qty, entry, mark,
                     mode, isolated_margin, leverage)


def _contract(account: _Account, vr: VenueRules, f: _Fields, parsed: CcxtSymbol, overrides: Mapping[str, str]
              ) -> tuple[str, Contract] | None:
    symbol = f.raw["symbol"]
    contracts = vr.rules.contracts
    tried: list[str] = []
    if symbol in overrides:
        cid = overrides[symbol]
        if cid not in contracts:
            f.error("symbol", f"{symbol} is mapped to {cid!r}, which {vr.name} does not define",
                    "fix the symbols entry of the import map")
            return None
        chosen = cid
    else:
        info = f.raw.get("info") if isinstance(f.raw.get("info"), Mapping) else {}
        chosen = None
        for cid, how in candidate_ids(account.profile, parsed, info):
            tried.append(f"{cid} ({how})")
            if cid in contracts:
                chosen = cid
                break
        if chosen is None:
            f.error("symbol", f"cannot map {symbol} to a contract of {vr.name}: tried "
                    f"{', '.join(tried) or 'no candidate'}",
                    "use rules that define it (--rules, --tiers), or map it in an import map's symbols")
            return None
    contract = contracts[chosen]
    problems = []
    if contract.kind != parsed.kind:
        problems.append(f"ccxt says {parsed.kind}, {vr.name} says {contract.kind}")
    if contract.settle != parsed.settle:
        problems.append(f"ccxt settles in {parsed.settle}, {vr.name} in {contract.settle}")
    if contract.underlying != parsed.base:
        problems.append(f"ccxt base {parsed.base}, {vr.name} underlying {contract.underlying}")
    if problems:
        f.error("symbol", f"{symbol} maps to {chosen} but {'; '.join(problems)}",
                "check the rule set, or map the symbol explicitly")
        return None
    return chosen, contract


def _isolated_margin(f: _Fields, isolated_from: dict[str, int]) -> float | None:
    margin = f.number("positionMargin", required=False, minimum=0)
    how = "positionMargin"
    if margin is None and not f.errors:
        collateral = f.number("collateral", required=False)
        pnl = f.number("unrealizedPnl", required=False)
        if collateral is None or pnl is None:
            f.error("positionMargin", "an isolated position needs its margin: positionMargin, or collateral and "
                    "unrealizedPnl, are missing", "add positionMargin (the isolated wallet, settle-asset units)")
            return None
        margin = float(Decimal(repr(collateral)) - Decimal(repr(pnl)))
        how = "collateral − unrealizedPnl"
        if margin < 0:
            f.error("collateral", f"collateral − unrealizedPnl = {margin:g} is negative",
                    "add positionMargin (the isolated wallet, settle-asset units)")
            return None
    if margin is not None:
        isolated_from[how] = isolated_from.get(how, 0) + 1
    return margin


# --- balance ------------------------------------------------------------------------------------------------------


def _read_balance(account: _Account, vr: VenueRules, notes: list[str]) -> list[InputError]:
    source = account.source
    file = str(source.balance)
    tag = f"{source.venue}/{source.account}"
    try:
        data = read_json(source.balance, "balance")
    except InputError as exc:
        return [exc]
    if not isinstance(data, Mapping):
        return [InputError(file, "", "expected a ccxt balance structure (a JSON object)",
                           "save the result of exchange.fetch_balance()")]
    errors: list[InputError] = []
    amounts: dict[str, float] = {}
    keys: dict[str, str] = {}
    field_ = account.profile.balance_field
    if field_ is not None:
        rows = list(balance_rows(field_, data.get("info")))
        if not rows:
            return [InputError(file, "info", f"no per-asset rows with {field_.amount} in the balance's info "
                               f"({account.profile.exchange} reports the cross wallet as {field_.what})",
                               "save fetch_balance() of the derivatives account, unmodified")]
        for key, row in rows:
            asset, amount = row.get(field_.asset), row.get(field_.amount)
            if not isinstance(asset, str) or not asset:
                errors.append(InputError(file, f"{key}.{field_.asset}", "missing asset name"))
                continue
            value = _decimal_number(amount)
            if value is None:
                errors.append(InputError(file, f"{key}.{field_.amount}", f"must be a finite number (got {amount!r})",
                                         "save fetch_balance() unmodified"))
                continue
            amounts[asset] = amounts.get(asset, 0.0) + value
            keys.setdefault(asset, f"{key}.{field_.amount}")
        notes.append(f"{tag}: collateral = the balance's info {field_.amount} per asset ({field_.what})")
    else:
        total = data.get("total")
        if not isinstance(total, Mapping):
            return [InputError(file, "total", "missing: a ccxt balance has a 'total' mapping of currencies",
                               "save the result of exchange.fetch_balance()")]
        for asset, amount in total.items():
            if amount is None:
                continue
            value = _decimal_number(amount)
            if value is None:
                errors.append(InputError(file, f"total.{asset}", f"must be a finite number (got {amount!r})"))
                continue
            amounts[asset] = value
            keys[asset] = f"total.{asset}"
        notes.append(f"{tag}: collateral from ccxt's unified 'total' ({account.profile.exchange} has no known "
                     "cross-wallet field): check that it excludes unrealized PnL and isolated margins")
    if errors:
        return errors
    if field_ is not None and field_.includes_isolated:
        for p in account.positions:
            if p.isolated_margin and p.contract.settle in amounts:
                amounts[p.contract.settle] -= p.isolated_margin
        if any(p.isolated_margin for p in account.positions):
            notes.append(f"{tag}: isolated margins subtracted from the wallet balance of their settle asset")
    left_out = []
    for asset, amount in amounts.items():
        if amount == 0:
            continue
        if vr.rules.collateral_rule(asset) is None:
            left_out.append(f"{asset} {amount:g}")
            continue
        account.collateral[asset] = amount
        account.collateral_key[asset] = keys[asset]
    if left_out:
        notes.append(f"{tag}: left out, not collateral under {vr.name}: {', '.join(left_out)}")
    return []


def _decimal_number(value: Any) -> float | None:
    """A finite number from a number or a numeric string (venues send strings in ``info``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return float(number) if number.is_finite() else None
    return None


# --- prices and the book ------------------------------------------------------------------------------------------


def last_closes(path: Path | str | None) -> tuple[dict[str, float], str]:
    if path is None:
        return {}, ""
    from .market_data import load_prices

    history = load_prices(path)
    closes: dict[str, float] = {}
    last_days = set()
    for asset in history.assets:
        series = history.prices[asset].dropna()
        if len(series):
            closes[asset] = float(series.iloc[-1])
            last_days.add(series.index[-1].date().isoformat())
    days = ", ".join(sorted(last_days))
    return closes, f"prices: last closes of {path} ({days}) for stablecoins and assets without a position mark"


def _prices(accounts: Sequence[_Account], closes: Mapping[str, float], notes: list[str]
            ) -> tuple[dict[str, float], list[InputError]]:
    prices: dict[str, float] = {}
    needed: dict[str, tuple[str, str]] = {}  # asset -> (file, key) of its first use
    marks: dict[str, _Position] = {}
    for account in accounts:
        for p in account.positions:
            for asset in (p.contract.settle, p.contract.underlying):
                needed.setdefault(asset, (str(p.source.positions), f"[{p.index}].symbol"))
            if p.mark is not None:
                marks.setdefault(p.contract.underlying, p)
        for asset in account.collateral:
            needed.setdefault(asset, (str(account.source.balance), account.collateral_key[asset]))
    for asset in needed:
        if asset in USD_STABLECOINS:
            prices[asset] = closes.get(asset, 1.0)
    for _ in range(3):  # a linear contract settled in a priced coin (ETH/BTC:BTC) needs that coin's price first
        for asset, p in marks.items():
            if asset in prices or p.mark is None:
                continue
            if p.contract.kind == "inverse":
                prices[asset] = p.mark
            elif p.contract.settle in prices:
                prices[asset] = p.mark * prices[p.contract.settle]
        for asset in needed:
            if asset not in prices and asset not in marks and asset in closes:
                prices[asset] = closes[asset]
    for asset in needed:
        if asset not in prices and asset in closes:
            prices[asset] = closes[asset]
    used_marks = sorted(a for a in marks if a in prices and a not in USD_STABLECOINS)
    if used_marks:
        notes.append(f"prices of {', '.join(used_marks)}: the first position's markPrice (× its settle asset's "
                     "price for linear contracts)")
    stable = sorted(a for a in needed if a in USD_STABLECOINS and a not in closes)
    if stable:
        notes.append(f"prices of {', '.join(stable)}: 1.0 USD (stablecoin)")
    errors = [InputError(file, key, f"no USD price for {asset} (no position mark, not a USD stablecoin)",
                         f"pass --prices with a CSV of daily USD closes that has a {asset} column")
              for asset, (file, key) in needed.items() if asset not in prices]
    return prices, errors


def _book(accounts: Sequence[_Account], rules_ref: Mapping[str, str], prices: Mapping[str, float]) -> dict[str, Any]:
    venues: dict[str, Any] = {}
    for account in accounts:
        venue = venues.setdefault(account.source.venue, {"rules": rules_ref[account.source.venue], "accounts": {}})
        positions = []
        for p in account.positions:
            entry: dict[str, Any] = {"symbol": p.contract_id, "qty": p.qty, "entry_price": p.entry}
            if p.mark is not None:
                entry["mark_price"] = p.mark
            entry["margin_mode"] = p.mode
            if p.isolated_margin is not None:
                entry["isolated_margin"] = p.isolated_margin
            if p.leverage is not None:
                entry["leverage"] = p.leverage
            positions.append(entry)
        venue["accounts"][account.source.account] = {"collateral": dict(account.collateral), "positions": positions}
    ordered = {a: prices[a] for a in sorted(prices, key=lambda a: (a in USD_STABLECOINS, a))}
    return {"version": 1, "prices": ordered, "venues": venues}


def _yaml_text(data: Mapping[str, Any]) -> str:
    """Block YAML in the given key order; positions one flow mapping per line."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def node(value: Any, flow: bool = False) -> Any:
        if isinstance(value, Mapping):
            out = CommentedMap((k, node(v, flow=k == "positions")) for k, v in value.items())
            return out
        if isinstance(value, list):
            seq = CommentedSeq(node(v) for v in value)
            if flow:
                for item in seq:
                    if isinstance(item, CommentedMap):
                        item.fa.set_flow_style()
            return seq
        return value

    yaml = YAML(typ="rt", pure=True)
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(node(data), buf)
    return buf.getvalue()


def _validate(book: dict[str, Any], out: Path, rules: Mapping[str, VenueRules]) -> None:
    validated = validate_model(Book, book, str(out))
    errors = check_book(str(out), validated, dict(rules))
    if errors:
        raise InputErrors(errors)
