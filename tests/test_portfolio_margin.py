"""Net portfolio margin of a bucket: collateral repriced with the positions, attribution, hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_models.compiled import compile_book
from risk_models.measures import RiskMeasure, expected_shortfall
from risk_models.portfolio_margin import portfolio_margin
from risk_models.scenarios import ScenarioSet
from risk_models.venue_margin import evaluate
from tests.conftest import Books, linear, rules_dict

FLAT = [{"cap": None, "mmr": 0.005, "max_leverage": 100}]
RULES = rules_dict({"BTCUSDT": linear("BTC", FLAT), "ETHUSDT": linear("ETH", FLAT)}, {"USDT": {}, "BTC": {}})
ES99 = RiskMeasure("es", 0.99)


def _scenarios(btc: np.ndarray, eth: np.ndarray | None = None) -> ScenarioSet:
    eth = btc if eth is None else eth
    r = np.stack([btc, eth], axis=1)
    return ScenarioSet(("BTC", "ETH"), r, tuple(f"s{i}" for i in range(len(btc))), "test")


def _risk(books: Books, positions: list, collateral: dict, sc: ScenarioSet, buffer: float = 0.0,
          measure: RiskMeasure = ES99):
    book = {"version": 1, "prices": {"BTC": 50_000.0, "ETH": 2_500.0, "USDT": 1.0},
            "venues": {"v": {"rules": "r.yaml", "accounts": {"a": {"collateral": collateral, "positions": positions}}}}}
    cb = compile_book(books.load(book, {"r.yaml": RULES}))
    st_ = evaluate(cb)
    return cb, st_, portfolio_margin(cb, st_, sc, measure, buffer)


MOVES = np.linspace(-0.2, 0.2, 101)


def test_btc_collateral_adds_risk_to_a_long_and_removes_it_from_a_short(books: Books) -> None:
    sc = _scenarios(MOVES)
    long = [{"symbol": "BTCUSDT", "qty": 2, "entry_price": 50_000}]
    short = [{"symbol": "BTCUSDT", "qty": -2, "entry_price": 50_000}]
    usdt, btc = {"USDT": 50_000}, {"BTC": 1}  # the same 50,000 USD of collateral
    r_long_usdt = _risk(books, long, usdt, sc)[2][0].net_portfolio_margin
    r_long_btc = _risk(books, long, btc, sc)[2][0].net_portfolio_margin
    r_short_usdt = _risk(books, short, usdt, sc)[2][0].net_portfolio_margin
    r_short_btc = _risk(books, short, btc, sc)[2][0].net_portfolio_margin
    # worst 1 % of 101 equally spaced moves: ES over the −20 % and (fractionally) −19.6 % scenarios
    assert r_long_usdt == pytest.approx(expected_shortfall(-2 * 50_000 * MOVES, None, 0.99), rel=1e-12)
    assert r_long_btc == pytest.approx(expected_shortfall(-3 * 50_000 * MOVES, None, 0.99), rel=1e-12)
    assert r_long_btc > r_long_usdt
    assert r_short_btc == pytest.approx(expected_shortfall(1 * 50_000 * MOVES, None, 0.99), rel=1e-12)
    assert r_short_btc < r_short_usdt


def test_perfectly_correlated_opposite_positions_net_to_zero(books: Books) -> None:
    sc = _scenarios(MOVES, MOVES)  # ETH moves exactly with BTC
    positions = [{"symbol": "BTCUSDT", "qty": 1, "entry_price": 50_000},
                 {"symbol": "ETHUSDT", "qty": -20, "entry_price": 2_500}]
    _, _, (risk,) = _risk(books, positions, {"USDT": 10_000}, sc)
    assert risk.net_portfolio_margin == pytest.approx(0.0, abs=1e-6)
    legs = expected_shortfall(-50_000 * MOVES, None, 0.99) + expected_shortfall(50_000 * MOVES, None, 0.99)
    assert risk.standalone_margin == pytest.approx(legs, rel=1e-9)  # each leg alone: its own tail
    assert risk.diversification_benefit == pytest.approx(risk.standalone_margin, rel=1e-9)


def test_buffer_adds_k_times_shocked_maintenance(books: Books) -> None:
    sc = _scenarios(MOVES)
    positions = [{"symbol": "BTCUSDT", "qty": 2, "entry_price": 50_000}]
    _, _, (risk,) = _risk(books, positions, {"USDT": 50_000}, sc, buffer=1.5, measure=RiskMeasure("worst"))
    # worst scenario −20 %: loss 20,000 + 1.5 × 0.5 % × 80,000 notional
    assert risk.net_portfolio_margin == pytest.approx(20_000 + 1.5 * 0.005 * 80_000, rel=1e-12)
    assert risk.worst_scenarios[0] == ("s0", pytest.approx(20_000))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), btc_collateral=st.floats(0, 5), buffer=st.sampled_from([0.0, 1.0, 1.5]))
def test_contributions_sum_exactly_and_stablecoins_never_raise_shortfall(
        tmp_path_factory: pytest.TempPathFactory, seed: int, btc_collateral: float, buffer: float) -> None:
    rng = np.random.default_rng(seed)
    books = Books(tmp_path_factory.mktemp("pm"))
    sc = _scenarios(np.expm1(rng.normal(0, 0.05, 200)), np.expm1(rng.normal(0, 0.07, 200)))
    positions = [{"symbol": "BTCUSDT", "qty": float(rng.normal(0, 3)) or 1.0, "entry_price": 48_000},
                 {"symbol": "ETHUSDT", "qty": float(rng.normal(0, 40)) or 1.0, "entry_price": 2_600}]
    collateral = {"USDT": float(rng.uniform(-2e4, 1e5)), "BTC": btc_collateral}
    _, st_, (risk,) = _risk(books, positions, collateral, sc, buffer)
    assert sum(risk.contributions.values()) == pytest.approx(risk.net_portfolio_margin, rel=1e-9, abs=1e-6)
    shortfall = max(0.0, risk.net_portfolio_margin - st_.equity[0])
    more = dict(collateral, USDT=collateral["USDT"] + float(rng.uniform(0, 1e5)))
    _, st2, (risk2,) = _risk(books, positions, more, sc, buffer)
    assert max(0.0, risk2.net_portfolio_margin - st2.equity[0]) <= shortfall + 1e-6


def test_scenario_order_does_not_matter(books: Books) -> None:
    rng = np.random.default_rng(5)
    btc, eth = np.expm1(rng.normal(0, 0.05, 300)), np.expm1(rng.normal(0, 0.06, 300))
    positions = [{"symbol": "BTCUSDT", "qty": 1.5, "entry_price": 50_000},
                 {"symbol": "ETHUSDT", "qty": 30, "entry_price": 2_500}]
    perm = rng.permutation(300)
    a = _risk(books, positions, {"USDT": 20_000, "BTC": 0.5}, _scenarios(btc, eth), 1.0)[2][0]
    b = _risk(books, positions, {"USDT": 20_000, "BTC": 0.5}, _scenarios(btc[perm], eth[perm]), 1.0)[2][0]
    assert b.net_portfolio_margin == pytest.approx(a.net_portfolio_margin, rel=1e-12)
    for key, value in a.contributions.items():
        assert b.contributions[key] == pytest.approx(value, rel=1e-9, abs=1e-9)
