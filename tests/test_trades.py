"""Planned trades (optimizer.trades): positions changed as the spec says, and nothing vanishes — a reduction's
realized PnL and a closed isolated position's margin land in the account's collateral.  Hand-derived numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.trades import apply_trades
from tests.conftest import Books, linear, rules_dict

FLAT = [{"cap": None, "mmr": 0.01, "max_leverage": 50}]
INVERSE = {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 100.0, "brackets": FLAT}
RULES = rules_dict({"BTCUSDT": linear("BTC", FLAT), "BTCUSD": INVERSE},
                   {"USDT": {}, "BTC": {}})


def _book(positions: list[dict]) -> dict:
    return {"version": 1, "prices": {"BTC": 60_000.0, "USDT": 1.0}, "wallet": {},
            "venues": {"v": {"rules": "r.yaml", "accounts": {"a": {"collateral": {"USDT": 10_000.0},
                                                                 "positions": positions}}}}}


def _after(books: Books, tmp_path: Path, positions: list[dict], trades: str):
    loaded = books.load(_book(positions), {"r.yaml": RULES})
    path = tmp_path / "trades.csv"
    path.write_text("venue,account,symbol,qty,price\n" + trades)
    return apply_trades(loaded, path).book.venues["v"].accounts["a"]


def test_a_partial_reduction_realizes_its_pnl(books: Books, tmp_path: Path) -> None:
    acct = _after(books, tmp_path, [{"symbol": "BTCUSDT", "qty": 2.0, "entry_price": 50_000.0}],
                  "v,a,BTCUSDT,-0.5,60000\n")
    # 0.5 BTC closed 10,000 above entry: 5,000 USDT realized; the rest keeps its entry
    assert acct.collateral["USDT"] == pytest.approx(15_000.0)
    (pos,) = acct.positions
    assert pos.qty == pytest.approx(1.5) and pos.entry_price == pytest.approx(50_000.0)


def test_a_flip_realizes_the_whole_old_position_and_reopens_at_the_price(books: Books, tmp_path: Path) -> None:
    acct = _after(books, tmp_path, [{"symbol": "BTCUSDT", "qty": 1.0, "entry_price": 62_000.0}],
                  "v,a,BTCUSDT,-3,60000\n")
    assert acct.collateral["USDT"] == pytest.approx(10_000.0 - 2_000.0)  # 1 BTC closed 2,000 below entry
    (pos,) = acct.positions
    assert pos.qty == pytest.approx(-2.0) and pos.entry_price == pytest.approx(60_000.0)


def test_closing_an_isolated_position_returns_its_margin(books: Books, tmp_path: Path) -> None:
    acct = _after(books, tmp_path, [{"symbol": "BTCUSDT", "qty": -1.0, "entry_price": 58_000.0,
                                     "margin_mode": "isolated", "isolated_margin": 3_000.0}],
                  "v,a,BTCUSDT,1,60000\n")
    # a short closed 2,000 above entry loses 2,000; its 3,000 of isolated margin comes back
    assert acct.positions == []
    assert acct.collateral["USDT"] == pytest.approx(10_000.0 - 2_000.0 + 3_000.0)


def test_an_inverse_reduction_realizes_coin(books: Books, tmp_path: Path) -> None:
    acct = _after(books, tmp_path, [{"symbol": "BTCUSD", "qty": 100.0, "entry_price": 50_000.0}],
                  "v,a,BTCUSD,-40,60000\n")
    # 40 contracts × 100 USD closed: 4,000 × (1/50,000 − 1/60,000) = 0.013333 BTC
    assert acct.collateral["BTC"] == pytest.approx(4_000.0 * (1 / 50_000 - 1 / 60_000), rel=1e-12)
    assert acct.collateral["USDT"] == pytest.approx(10_000.0)


def test_adding_realizes_nothing(books: Books, tmp_path: Path) -> None:
    acct = _after(books, tmp_path, [{"symbol": "BTCUSDT", "qty": 1.0, "entry_price": 50_000.0}],
                  "v,a,BTCUSDT,1,60000\n")
    assert acct.collateral["USDT"] == pytest.approx(10_000.0)
    assert acct.positions[0].entry_price == pytest.approx(55_000.0)
