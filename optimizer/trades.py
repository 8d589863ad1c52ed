"""Planned trades (spec §6 trades CSV: ``venue,account,symbol,qty,price``) applied to a book before optimizing."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from risk_models.errors import InputError, InputErrors
from risk_models.loading import LoadedBook, check_book
from risk_models.schema import Book
from risk_models.schema.rules import Contract

HEADER = ["venue", "account", "symbol", "qty", "price"]


def apply_trades(loaded: LoadedBook, path: Path | str) -> LoadedBook:
    """The book after the trades: qty added to the position (opened at ``price`` if absent; a flip reopens at
    ``price``; adding to a position averages the entry; a result of zero closes it).

    Nothing vanishes: the PnL a reduction realizes at ``price`` (the closed quantity against the entry, in the
    settle asset, linear or inverse as the contract is) is booked to the account's collateral in the settle asset,
    and closing an isolated position returns its isolated margin there too."""
    file = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(file, "", f"cannot read: {exc.strerror}") from None
    if not rows or [c.strip() for c in rows[0]] != HEADER:
        raise InputError(file, "header", f"the header must be {','.join(HEADER)}")
    raw = loaded.book.model_dump()
    errors: list[InputError] = []
    for line, row in enumerate(rows[1:], start=2):
        key = f"line {line}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(HEADER):
            errors.append(InputError(file, key, f"{len(row)} fields, expected {len(HEADER)}"))
            continue
        venue, account, symbol, qty_s, price_s = (c.strip() for c in row)
        try:
            qty, price = float(qty_s), float(price_s)
        except ValueError:
            errors.append(InputError(file, key, f"qty {qty_s!r} and price {price_s!r} must be numbers"))
            continue
        if not (math.isfinite(qty) and math.isfinite(price) and price > 0):
            errors.append(InputError(file, key, "qty must be finite and price positive"))
            continue
        acct = raw["venues"].get(venue, {}).get("accounts", {}).get(account)
        if acct is None:
            errors.append(InputError(file, key, f"no account {venue}/{account} in the book",
                                     "trades apply to existing accounts"))
            continue
        contract = loaded.rules[venue].rules.contracts.get(symbol) if venue in loaded.rules else None
        _apply(acct, contract, symbol, qty, price)
    if errors:
        raise InputErrors(errors)
    book = Book.model_validate(raw)
    problems = check_book(file, book, loaded.rules)
    if problems:
        raise InputErrors(problems)
    return LoadedBook(loaded.file, book, loaded.rules)


def realized_pnl(contract: Contract, closed: float, entry: float, price: float) -> float:
    """Settle-asset units realized by closing ``closed`` (signed, the position's side) at ``price``:
    closed × size × (price − entry) (linear) or × (1/entry − 1/price) (inverse)."""
    size = closed * contract.contract_size
    return size * (1.0 / entry - 1.0 / price) if contract.kind == "inverse" else size * (price - entry)


def _apply(acct: dict, contract: Contract | None, symbol: str, qty: float, price: float) -> None:
    positions = acct["positions"]
    pos = next((p for p in positions if p["symbol"] == symbol), None)
    if pos is None:
        if qty != 0:
            positions.append({"symbol": symbol, "qty": qty, "entry_price": price, "margin_mode": "cross",
                              "pinned": False})
        return
    new = pos["qty"] + qty
    closing = pos["qty"] * qty < 0
    if closing and contract is not None:  # the reduced part realizes its PnL in the settle asset
        closed = pos["qty"] if pos["qty"] * new <= 0 else -qty
        collateral = acct.setdefault("collateral", {})
        collateral[contract.settle] = collateral.get(contract.settle, 0.0) + realized_pnl(
            contract, closed, pos["entry_price"], price)
    if abs(new) <= 1e-12 * max(abs(pos["qty"]), abs(qty)):
        if pos.get("margin_mode") == "isolated" and pos.get("isolated_margin") and contract is not None:
            collateral = acct.setdefault("collateral", {})  # the closed bucket's margin goes back to the account
            collateral[contract.settle] = collateral.get(contract.settle, 0.0) + pos["isolated_margin"]
        positions.remove(pos)
        return
    if pos["qty"] * qty > 0:  # adding: the entry becomes the size-weighted average
        pos["entry_price"] = (pos["qty"] * pos["entry_price"] + qty * price) / new
    elif pos["qty"] * new < 0:  # flipped through zero: the remainder is a new position at the trade price
        pos["entry_price"] = price
    pos["qty"] = new
