"""Scenario revaluation (factor + tabulated-margin path) equals re-evaluating the shocked book directly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_models.compiled import CompiledBook, compile_book
from risk_models.loading import LoadedBook, load_book
from risk_models.revaluation import book_factors, revalue
from risk_models.schema import Book
from risk_models.venue_margin import evaluate
from tests.conftest import Books, linear, rules_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multi_venue" / "book.yaml"
BRACKETS = [{"cap": 50_000, "mmr": 0.004, "max_leverage": 125}, {"cap": 250_000, "mmr": 0.005, "max_leverage": 100},
            {"cap": 1_000_000, "mmr": 0.01, "max_leverage": 50}, {"cap": None, "mmr": 0.025, "max_leverage": 20}]


def _shocked(cb: CompiledBook, growth: np.ndarray, loaded: LoadedBook | None = None) -> CompiledBook:
    """The same book with every USD price × growth and every mark moved with its factor.  With ``loaded``, the
    shocked book is rebuilt and recompiled from scratch (portfolio-margin units depend on the marks)."""
    x = book_factors(cb).values(growth[:, None])[:, 0]
    marks = cb.positions.mark * x[book_factors(cb).of_position]
    if loaded is None:
        return replace(cb, prices=cb.prices * growth, positions=replace(cb.positions, mark=marks))
    raw = loaded.book.model_dump()
    raw["prices"] = {a: float(p * growth[cb.assets.index(a)]) for a, p in raw["prices"].items()}
    row = 0
    for venue in raw["venues"].values():
        for account in venue["accounts"].values():
            for pos in account["positions"]:
                pos["mark_price"] = float(marks[row])
                row += 1
    return compile_book(LoadedBook(loaded.file, Book.model_validate(raw), loaded.rules))


def _check(cb: CompiledBook, growth: np.ndarray, loaded: LoadedBook | None = None) -> None:
    rv = revalue(cb, growth)
    for s in range(growth.shape[1]):
        direct = evaluate(_shocked(cb, growth[:, s], loaded))
        scale = np.abs(direct.equity) + direct.maintenance + 1.0
        np.testing.assert_allclose(rv.equity[:, s], direct.equity, rtol=0, atol=1e-9 * scale.max())
        np.testing.assert_allclose(rv.maintenance[:, s], direct.maintenance, rtol=0, atol=1e-9 * scale.max())


def test_example_book_matches_direct_evaluation() -> None:
    loaded = load_book(EXAMPLE)
    cb = compile_book(loaded)
    rng = np.random.default_rng(1)
    growth = np.exp(rng.normal(0, 0.3, (len(cb.assets), 25)))
    _check(cb, growth, loaded)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), inverse=st.booleans(), entry_basis=st.booleans(),
       fee=st.sampled_from([0.0, 0.001]))
def test_random_books_match_direct_evaluation(tmp_path_factory: pytest.TempPathFactory, seed: int, inverse: bool,
                                              entry_basis: bool, fee: float) -> None:
    rng = np.random.default_rng(seed)
    books = Books(tmp_path_factory.mktemp("rv"))
    contracts = {"BTCUSDT": linear("BTC", BRACKETS), "BTCUSDT_Q": linear("BTC", BRACKETS),
                 "ETHUSDT": linear("ETH", BRACKETS), "ETHBTC": linear("ETH", BRACKETS[:2], settle="BTC"),
                 "BTCUSD": {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 100,
                            "brackets": [{"cap": 5, "mmr": 0.004, "max_leverage": 125},
                                         {"cap": None, "mmr": 0.01, "max_leverage": 50}]},
                 "DBTC": {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 10,
                          "brackets": [{"cap": None, "mmr": 0.015, "max_leverage": 50}],
                          "size_margin": {"initial_base": 0.02, "maintenance_base": 0.015, "rate_per_unit": 5e-5}}}
    collateral = {"USDT": {}, "BTC": {"tiers": [{"cap": 1e6, "ratio": 1.0}, {"cap": None, "ratio": 0.9}],
                               "bid_rate": 0.99, "ask_rate": 1.01}}
    rules = rules_dict(contracts, collateral, liquidation_fee_rate=fee,
                       mm_price_basis="entry" if entry_basis else "mark")
    prices = {"BTC": 50_000.0, "ETH": 3_000.0, "USDT": 1.0}
    symbols = ["BTCUSDT", "BTCUSDT_Q", "ETHUSDT", "ETHBTC"] + (["BTCUSD", "DBTC"] if inverse else [])
    positions = []
    for sym in symbols:
        und = "ETH" if sym.startswith("ETH") else "BTC"
        if sym in ("BTCUSD", "DBTC"):
            qty, entry = float(rng.choice([-1, 1]) * rng.uniform(100, 50_000)), prices["BTC"]
        elif sym == "ETHBTC":
            qty, entry = float(rng.choice([-1, 1]) * rng.uniform(1, 100)), prices["ETH"] / prices["BTC"]
        else:
            qty, entry = float(rng.choice([-1, 1]) * rng.uniform(1e3, 2e6) / prices[und]), prices[und]
        pos = {"symbol": sym, "qty": qty, "entry_price": entry * float(rng.uniform(0.9, 1.1))}
        if rng.uniform() < 0.3:
            pos.update(margin_mode="isolated", isolated_margin=float(rng.uniform(0, 1e5)) / (
                prices["BTC"] if sym in ("BTCUSD", "DBTC", "ETHBTC") else 1.0))
        positions.append(pos)
    book = {"version": 1, "prices": prices, "venues": {"v": {"rules": "r.yaml", "accounts": {
        "a": {"collateral": {"USDT": float(rng.uniform(-1e5, 2e6)), "BTC": float(rng.uniform(0, 40))},
              "positions": positions}}}}}
    cb = compile_book(books.load(book, {"r.yaml": rules}))
    growth = np.exp(rng.normal(0, 0.4, (len(cb.assets), 8)))
    growth[cb.assets.index("USDT")] = np.exp(rng.normal(0, 0.05, 8))
    _check(cb, growth)
