"""OKX-style portfolio margin (margin_model: okx_pm) and the per-unit requirement shared with the risk matrix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_models.compiled import compile_book
from risk_models.loading import load_rules
from risk_models.revaluation import revalue
from risk_models.risk_matrix import matrix_margin, matrix_params
from risk_models.unit_margin import UnitMember, build_units
from risk_models.venue_margin import evaluate
from tests.conftest import Books

P = 100_000.0


def _book(positions: list, collateral: dict, prices: dict | None = None, rules: str = "okx-pm") -> dict:
    return {"version": 1, "prices": prices or {"BTC": P, "USDT": 1.0},
            "venues": {"okx": {"rules": rules, "accounts": {"pm": {"collateral": collateral,
                                                                   "positions": positions}}}}}


def test_linear_long_mr6_binds_by_hand(books: Books) -> None:
    # 100 BTC-USDT-SWAP contracts × 0.01 = 1 BTC long at 100,000: MR1 = 12 % of 100,000, MR6 = 24 % (counted in
    # full) → MMR 24,000; IMR = 1.3 × MMR
    report = books.report(_book([{"symbol": "BTC-USDT-SWAP", "qty": 100, "entry_price": P}], {"USDT": 50_000}))
    acct = report.accounts[0]
    assert acct.maintenance_margin == pytest.approx(24_000, rel=1e-12)
    assert acct.initial_margin == pytest.approx(1.3 * 24_000, rel=1e-12)


def test_extreme_cover_lets_the_spot_grid_bind(books: Books) -> None:
    rules = load_rules("okx-pm").rules.model_dump(exclude_none=True)
    rules["margin_model"]["extreme_cover"] = 0.4  # 0.4 × 24 % = 9.6 % < 12 %: MR1 binds
    report = books.report(_book([{"symbol": "BTC-USDT-SWAP", "qty": -100, "entry_price": P}], {"USDT": 50_000},
                                rules="r.yaml"), {"r.yaml": rules})
    assert report.accounts[0].maintenance_margin == pytest.approx(12_000, rel=1e-12)


def test_linear_and_inverse_legs_of_one_unit_offset(books: Books) -> None:
    # long 1 BTC on the USDT swap, short 100,000 USD face on the coin swap: same risk unit, PnL cancels
    positions = [{"symbol": "BTC-USDT-SWAP", "qty": 100, "entry_price": P},
                 {"symbol": "BTC-USD-SWAP", "qty": -1_000, "entry_price": P}]
    report = books.report(_book(positions, {"USDT": 10_000, "BTC": 0.2}))
    acct = report.accounts[0]
    assert acct.maintenance_margin == pytest.approx(0.0, abs=1e-6)
    assert all(p.maintenance_margin == pytest.approx(24_000, rel=1e-12) for p in acct.positions)  # each alone


def test_liquidation_price_by_hand(books: Books) -> None:
    # USDT pool C, long q BTC at entry e: C + q(P·x − e) = 0.24·q·P·x  ⇒  x* = (q·e − C) / (0.76·q·P)
    c, q, e = 40_000.0, 1.0, 105_000.0
    report = books.report(_book([{"symbol": "BTC-USDT-SWAP", "qty": q / 0.01, "entry_price": e}], {"USDT": c}))
    expected = P * (q * e - c) / (0.76 * q * P)
    assert report.accounts[0].positions[0].liquidation_price == pytest.approx(expected, rel=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_scenario_revaluation_equals_a_recompiled_shocked_book(tmp_path_factory: pytest.TempPathFactory,
                                                               seed: int) -> None:
    rng = np.random.default_rng(seed)
    books = Books(tmp_path_factory.mktemp("okx"))
    positions = [{"symbol": "BTC-USDT-SWAP", "qty": float(rng.normal(0, 300)) or 1.0, "entry_price": P},
                 {"symbol": "BTC-USD-SWAP", "qty": float(rng.normal(0, 2_000)) or 1.0, "entry_price": P}]
    cb = compile_book(books.load(_book(positions, {"USDT": 1e5, "BTC": 1.0})))
    growth = np.ones((len(cb.assets), 6))
    growth[cb.assets.index("BTC")] = np.exp(rng.normal(0, 0.2, 6))
    rv = revalue(cb, growth)
    for s in range(6):
        g = float(growth[cb.assets.index("BTC"), s])
        shocked = books.load(_book([dict(p, mark_price=P * g) for p in positions], {"USDT": 1e5, "BTC": 1.0},
                                   {"BTC": P * g, "USDT": 1.0}))
        direct = evaluate(compile_book(shocked))
        assert rv.maintenance[0, s] == pytest.approx(direct.maintenance[0], rel=1e-9, abs=1e-6)
        assert rv.equity[0, s] == pytest.approx(direct.equity[0], rel=1e-9, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(delta=st.floats(-500, 500).filter(lambda d: abs(d) > 1e-6))
def test_risk_matrix_unit_equals_the_scalar_definition(delta: float) -> None:
    # the per-unit pieces reproduce risk_matrix.matrix_margin (coin) × price for any net coin delta
    model = load_rules("deribit-pm").rules.margin_model
    price = 60_000.0
    member = UnitMember(row=0, bucket=0, underlying=0, name="BTC", inverse=True, size=delta * price, mark=price,
                        settle_price=price, underlying_price=price, ask=1.0, model=model)
    units, alone = build_units([member])
    im, mm = matrix_margin(delta, matrix_params(model, "BTC"))
    assert units.maintenance(np.ones(1))[0] == pytest.approx(mm * price, rel=1e-12)
    assert units.initial(np.ones(1))[0] == pytest.approx(im * price, rel=1e-12)
    assert alone[0] == pytest.approx((mm * price, im * price), rel=1e-12)
    # constant in the price ratio for inverse contracts
    assert np.allclose(units.maintenance(np.array([[0.5, 1.0, 2.0]])), mm * price, rtol=1e-12)
    assert replace(units, const=units.const * 0).inner(np.ones(1))[0] >= 0


# --- coin-margined ETH and LTC swaps (10 USD face value, settled in their coin) -----------------------------

ETH_P, LTC_P = 2_500.0, 100.0


def _coins() -> dict:
    return {"ETH": ETH_P, "LTC": LTC_P, "USDT": 1.0}


def test_eth_swap_short_hedging_its_coin_by_hand(books: Books) -> None:
    # 40,000 ETH-USD-SWAP × 10 USD = 400,000 USD face short; an up move loses: MR1 12 %, MR6 24 % (counted in
    # full) → MM = 0.24 × 400,000 = 96,000 USD = 38.4 ETH at 2,500; IM = 1.3 × MM.  160 ETH of collateral and a
    # short entered at the mark: equity = 160 × 2,500 = 400,000 USD.
    report = books.report(_book([{"symbol": "ETH-USD-SWAP", "qty": -40_000, "entry_price": ETH_P}], {"ETH": 160},
                                _coins()))
    acct = report.accounts[0]
    pos = acct.positions[0]
    assert (pos.settle, pos.notional) == ("ETH", pytest.approx(400_000, rel=1e-12))
    assert pos.maintenance_margin == pytest.approx(96_000, rel=1e-12)
    assert pos.maintenance_margin_settle == pytest.approx(38.4, rel=1e-12)
    assert acct.maintenance_margin == pytest.approx(96_000, rel=1e-12)
    assert acct.initial_margin == pytest.approx(124_800, rel=1e-12)
    assert acct.equity == pytest.approx(400_000, rel=1e-12)


def test_ltc_swap_uses_its_own_group(books: Books) -> None:
    # LTC: MR1 ±6/12/18 %, MR6 ±36 %.  A long of 25,000 × 10 = 250,000 USD face loses on the way down:
    # MM = 0.36 × 250,000 = 90,000 USD; with extreme_cover 0.4 (0.4 × 36 % = 14.4 % < 18 %) MR1 binds: 45,000
    long = [{"symbol": "LTC-USD-SWAP", "qty": 25_000, "entry_price": LTC_P}]
    report = books.report(_book(long, {"LTC": 3_000}, _coins()))
    assert report.accounts[0].maintenance_margin == pytest.approx(90_000, rel=1e-12)
    assert report.accounts[0].positions[0].maintenance_margin_settle == pytest.approx(900, rel=1e-12)
    rules = load_rules("okx-pm").rules.model_dump(exclude_none=True)
    rules["margin_model"]["extreme_cover"] = 0.4
    report = books.report(_book(long, {"LTC": 3_000}, _coins(), rules="r.yaml"), {"r.yaml": rules})
    assert report.accounts[0].maintenance_margin == pytest.approx(45_000, rel=1e-12)


def test_eth_and_ltc_units_do_not_offset(books: Books) -> None:
    # a short ETH swap and a long LTC swap sit in two risk units: 0.24 × 100,000 + 0.36 × 50,000 = 42,000 USD
    positions = [{"symbol": "ETH-USD-SWAP", "qty": -10_000, "entry_price": ETH_P},
                 {"symbol": "LTC-USD-SWAP", "qty": 5_000, "entry_price": LTC_P}]
    report = books.report(_book(positions, {"USDT": 100_000}, _coins()))
    assert report.accounts[0].maintenance_margin == pytest.approx(42_000, rel=1e-12)


def test_under_hedged_coin_short_liquidation_by_hand(books: Books) -> None:
    # C LTC against a short of face F entered at e: equity(p) = C·p + F·(1 − p/e), MM = 0.36·F at every price
    # (inverse) ⇒ p* = 0.64·F / (F/e − C) = 0.64 × 250,000 / (2,000 − 1,000) = 160
    c, f, e = 1_000.0, 250_000.0, 125.0
    report = books.report(_book([{"symbol": "LTC-USD-SWAP", "qty": -f / 10, "entry_price": e}], {"LTC": c},
                                _coins()))
    pos = report.accounts[0].positions[0]
    assert pos.unrealized_pnl == pytest.approx(f * (1 - LTC_P / e), rel=1e-12)  # 50,000 USD at 100
    assert pos.liquidation_price == pytest.approx(0.64 * f / (f / e - c), rel=1e-10)
    assert pos.liquidation_price == pytest.approx(160.0, rel=1e-10)


def test_coin_swap_revaluation_equals_a_recompiled_shocked_book(books: Books) -> None:
    # inverse requirement is constant in USD; equity moves with the unhedged coin only
    positions = [{"symbol": "ETH-USD-SWAP", "qty": -30_000, "entry_price": ETH_P},
                 {"symbol": "LTC-USD-SWAP", "qty": -10_000, "entry_price": LTC_P}]
    collateral = {"ETH": 100.0, "LTC": 1_500.0, "USDT": 10_000.0}
    cb = compile_book(books.load(_book(positions, collateral, _coins())))
    growth = np.ones((len(cb.assets), 4))
    growth[cb.assets.index("ETH")] = [0.7, 0.9, 1.1, 1.5]
    growth[cb.assets.index("LTC")] = [1.4, 0.8, 1.0, 0.6]
    rv = revalue(cb, growth)
    np.testing.assert_allclose(rv.maintenance[0], 0.24 * 300_000 + 0.36 * 100_000, rtol=1e-12)
    for s in range(4):
        g_eth, g_ltc = float(growth[cb.assets.index("ETH"), s]), float(growth[cb.assets.index("LTC"), s])
        shocked = books.load(_book([dict(positions[0], mark_price=ETH_P * g_eth),
                                    dict(positions[1], mark_price=LTC_P * g_ltc)], collateral,
                                   {"ETH": ETH_P * g_eth, "LTC": LTC_P * g_ltc, "USDT": 1.0}))
        direct = evaluate(compile_book(shocked))
        assert rv.equity[0, s] == pytest.approx(direct.equity[0], rel=1e-12)
        # by hand: 100 ETH vs 120 ETH short, 1,500 LTC vs 1,000 LTC short, 10,000 USDT
        by_hand = (10_000 + 100 * ETH_P * g_eth + 300_000 * (1 - g_eth)
                   + 1_500 * LTC_P * g_ltc + 100_000 * (1 - g_ltc))
        assert rv.equity[0, s] == pytest.approx(by_hand, rel=1e-12)
