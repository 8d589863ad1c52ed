"""Published worked numbers (shared reference, sections 1–3), each to the precision its source prints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from risk_models.schema.rules import Contract
from risk_models.tiers import size_discount_weight, size_liability_weight
from tests.conftest import Books, linear, rules_dict

BTC_2021 = [  # Binance BTCUSDT 2021 snapshot (reference §1)
    {"cap": 50_000, "mmr": 0.004, "max_leverage": 125},
    {"cap": 250_000, "mmr": 0.005, "max_leverage": 100},
    {"cap": 1_000_000, "mmr": 0.01, "max_leverage": 50},
    {"cap": 5_000_000, "mmr": 0.025, "max_leverage": 20},
]


def _book(venues: dict, prices: dict, wallet: dict | None = None) -> dict:
    out = {"version": 1, "prices": prices, "venues": venues}
    if wallet:
        out["wallet"] = wallet
    return out


def _venue(rules: str, collateral: dict, positions: list, account: str = "main") -> dict:
    return {"rules": rules, "accounts": {account: {"collateral": collateral, "positions": positions}}}


def _trunc4(x: float) -> float:
    return math.floor(x * 1e4) / 1e4


# --- §1 tiered maintenance margin -------------------------------------------------------------------------


def test_binance_usdm_level3_maintenance_amount_and_margin(books: Books) -> None:
    # "Maintenance Amount on Level 3 = 250,000 × (1 % − 0.5 %) + 50 = 1,300 USDT"
    contract = Contract.model_validate(linear("BTC", BTC_2021))
    assert contract.cums[2] == pytest.approx(1_300, abs=1e-9)
    # a 400,000 USDT position sits in level 3: MM = 400,000 × 1 % − 1,300
    _cb, st = books.evaluate(
        _book({"binance": _venue("binance-usdm-2021", {"USDT": 100_000},
                                 [{"symbol": "BTCUSDT", "qty": 10, "entry_price": 40_000, "mark_price": 40_000}])},
              {"BTC": 40_000, "USDT": 1.0}))
    assert st.terms.mm_settle[0] == pytest.approx(400_000 * 0.01 - 1_300, abs=1e-9)


def test_binance_coin_m_inverse_margin(books: Books) -> None:
    # Caps 10/20/30/50/100 BTC are Binance's COIN-M BTCUSD table (FAQ "Leverage and Margin in Coin-Margined
    # Futures Contracts"); MMRs 0.4/0.5/1/2.5/5 % are half the published IMRs, which the published example confirms:
    # "level 5 maintenance amount = 50 BTC × (5 % − 2.5 %) + 0.56 BTC = 1.81 BTC".
    brackets = [{"cap": c, "mmr": m, "max_leverage": lev} for c, m, lev in
                [(10, 0.004, 125), (20, 0.005, 100), (30, 0.01, 50), (50, 0.025, 20), (100, 0.05, 10),
                 (None, 0.1, 5)]]
    contract = {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 100, "brackets": brackets}
    assert Contract.model_validate(contract).cums[3] == pytest.approx(0.56, abs=1e-12)
    assert Contract.model_validate(contract).cums[4] == pytest.approx(1.81, abs=1e-12)
    # 100 BTCUSD contracts (100 USD each) at mark 25,000: notional 0.4 BTC, MM = 0.4 × 0.4 % = 0.0016 BTC
    rules = rules_dict({"BTCUSD_PERP": contract})
    _cb, st = books.evaluate(
        _book({"binance": _venue("r.yaml", {"BTC": 1.0},
                                 [{"symbol": "BTCUSD_PERP", "qty": 100, "entry_price": 25_000}])},
              {"BTC": 25_000}), {"r.yaml": rules})
    assert st.terms.notional_settle[0] == pytest.approx(0.4, rel=1e-15)
    assert st.terms.mm_settle[0] == pytest.approx(0.0016, rel=1e-12)


def test_hyperliquid_mmr_is_half_inverse_max_leverage() -> None:
    from risk_models.loading import load_rules

    rules = load_rules("hyperliquid").rules
    for contract in rules.contracts.values():
        np.testing.assert_allclose(contract.mmrs, 1 / (2 * contract.max_leverages), rtol=1e-15)


def test_dydx_open_interest_imf_scaling(books: Books) -> None:
    # dYdX v4 code tests: IMF 20 %, notional 500,000 → IM 300,000 / 135,697 / 500,000 / 100,000 (rounded up)
    cases = [(1e12, 2e12, 1.5e12, 300_000), (25e12, 60e12, 28_123_456_789_123, 135_697),
             (25e12, 60e12, 60e12, 500_000), (25e12, 60e12, 70e12, 500_000), (25e12, 60e12, 25e12, 100_000)]
    for lower, upper, oi, expected in cases:
        contract = linear("X", [{"cap": None, "mmr": 0.1, "max_leverage": 5}], settle="USDC",
                          open_interest_scaling={"lower_cap": lower, "upper_cap": upper, "open_interest": oi})
        _cb, st = books.evaluate(
            _book({"dydx": _venue("r.yaml", {"USDC": 1e6},
                                  [{"symbol": "X-USD", "qty": 500_000, "entry_price": 1.0}])},
                  {"X": 1.0, "USDC": 1.0}), {"r.yaml": rules_dict({"X-USD": contract})})
        assert math.ceil(st.terms.im_settle[0] - 1e-9) == expected
        assert st.terms.mm_settle[0] == pytest.approx(50_000)  # MMF is not scaled


def test_deribit_standard_initial_margin(books: Books) -> None:
    # IM = 2 % + 0.5 % per 100 BTC: 25 BTC → 0.53125 BTC; 350 BTC → 13.125 BTC
    for btc, expected in ((25, 0.53125), (350, 13.125)):
        mark = 40_000.0
        qty = btc * mark / 10  # BTC-PERPETUAL: 10 USD per contract
        _cb, st = books.evaluate(_book({"deribit": _venue("deribit-standard", {"BTC": 1_000},
                                                         [{"symbol": "BTC-PERPETUAL", "qty": qty,
                                                           "entry_price": mark}])}, {"BTC": mark}))
        assert st.terms.notional_settle[0] == pytest.approx(btc, rel=1e-15)
        assert st.terms.im_settle[0] == pytest.approx(expected, rel=1e-12)
        # MM = 1.5 % + 0.5 % per 100 BTC
        assert st.terms.mm_settle[0] == pytest.approx(btc * (0.015 + 0.005 * btc / 100), rel=1e-12)


# --- §2 liquidation prices --------------------------------------------------------------------------------


def _bybit_rules(basis: str) -> dict:
    return rules_dict({"BTCUSDT": linear("BTC", [{"cap": None, "mmr": 0.005, "max_leverage": 100}])},
                      mm_price_basis=basis)


@pytest.mark.parametrize(("basis", "expected", "digits"), [("entry", 19_700.0, 9), ("mark", 19_698.49, 2)])
def test_bybit_isolated_liquidation(books: Books, basis: str, expected: float, digits: int) -> None:
    # long 1 BTC @ 20,000, 50x: IM 400, MM 100 → LP 19,700 (MM at entry); 19,698.49 with MM at the root
    report = books.report(
        _book({"bybit": _venue("r.yaml", {}, [{"symbol": "BTCUSDT", "qty": 1, "entry_price": 20_000,
                                              "margin_mode": "isolated", "isolated_margin": 400, "leverage": 50}])},
              {"BTC": 20_000, "USDT": 1.0}), {"r.yaml": _bybit_rules(basis)})
    pos = report.accounts[0].positions[0]
    assert round(pos.liquidation_price, digits) == expected
    assert pos.maintenance_margin_settle == pytest.approx(100.0)


def test_hyperliquid_isolated_liquidation(books: Books) -> None:
    # ETH long 0.0199 @ 2,459.5, isolated margin 24.454895, max leverage 50 → 1,243.0411908
    rules = rules_dict({"ETH": linear("ETH", [{"cap": None, "mmr": 0.01, "max_leverage": 50}], settle="USDC")})
    report = books.report(
        _book({"hl": _venue("r.yaml", {}, [{"symbol": "ETH", "qty": 0.0199, "entry_price": 2459.5,
                                           "margin_mode": "isolated", "isolated_margin": 24.454895}])},
              {"ETH": 2459.5, "USDC": 1.0}), {"r.yaml": rules})
    assert report.accounts[0].positions[0].liquidation_price == pytest.approx(1243.0411908, rel=1e-6)


def test_binance_cross_formula_with_bracket_change(books: Books) -> None:
    # Binance one-way formula: LP = (WB − TMM1 + UPNL1 + cum − side·|Q|·EP) / (|Q|·MMR − side·|Q|), with the
    # bracket of the position at the root (the root lands in a lower bracket than the current notional).
    wb, q, ep = 250_000.0, 30.0, 40_000.0  # 1.2M notional at the mark: level 4; the root is in level 3
    report = books.report(_book({"binance": _venue("binance-usdm-2021", {"USDT": wb},
                                                   [{"symbol": "BTCUSDT", "qty": q, "entry_price": ep}])},
                                {"BTC": 40_000, "USDT": 1.0}))
    lp = report.accounts[0].positions[0].liquidation_price
    mmr, cum = 0.01, 1_300.0
    expected = (wb + cum - q * ep) / (q * mmr - q)
    assert 250_000 < q * expected <= 1_000_000  # level 3 at the root
    assert lp == pytest.approx(expected, rel=1e-12)


# --- §3 collateral ------------------------------------------------------------------------------------------


def test_binance_cross_margin_btc_tiers(books: Books) -> None:
    # 6,000 BTC @ 20,000 → 100,000,000 × 1 + 20,000,000 × 0.975 = 119,500,000
    tiers = [{"cap": 100e6, "ratio": 1.0}, {"cap": 120e6, "ratio": 0.975}, {"cap": 150e6, "ratio": 0.95},
             {"cap": 180e6, "ratio": 0.9}, {"cap": 200e6, "ratio": 0.85}]
    rules = rules_dict({"BTCUSDT": linear("BTC", BTC_2021)}, {"BTC": {"tiers": tiers}})
    _cb, st = books.evaluate(_book({"b": _venue("r.yaml", {"BTC": 6_000}, [])}, {"BTC": 20_000, "USDT": 1}),
                            {"r.yaml": rules})
    assert st.equity[0] == pytest.approx(119_500_000, abs=1e-6)


def test_bitget_tiers(books: Books) -> None:
    # 11,000,000 USDT, tiers 0–5M × 1, 5–10M × 0.98, > 10M × 0.975 → 10,875,000
    # 1 BTC @ 50,000 (ratio 1) + 60,000 APT @ 1 (first 50,000 at 0.8, rest 0) → 90,000
    usdt = {"tiers": [{"cap": 5e6, "ratio": 1}, {"cap": 10e6, "ratio": 0.98}, {"cap": None, "ratio": 0.975}]}
    apt = {"tiers": [{"cap": 50_000, "ratio": 0.8}, {"cap": None, "ratio": 0.0}]}
    rules = rules_dict({"BTCUSDT": linear("BTC", BTC_2021)}, {"USDT": usdt, "BTC": {}, "APT": apt})
    prices = {"BTC": 50_000, "USDT": 1, "APT": 1}
    _, st = books.evaluate(_book({"b": _venue("r.yaml", {"USDT": 11e6}, [])}, prices), {"r.yaml": rules})
    assert st.equity[0] == pytest.approx(10_875_000, abs=1e-6)
    _, st = books.evaluate(_book({"b": _venue("r.yaml", {"BTC": 1, "APT": 60_000}, [])}, prices), {"r.yaml": rules})
    assert st.equity[0] == pytest.approx(90_000, abs=1e-6)


def test_binance_multi_assets_mode(books: Books) -> None:
    # USDT index 0.99, bid buffer 1 %, ask buffer 0.5 % (bid 0.9801, ask 0.99495 of USD); wallets 200 USDT,
    # 220 USDC; BTCUSDT 0.5 @ 20,000 (MMR 0.8 %, IMR 1 %), ETHUSDC 20 @ 600 (MMR 1 %, IMR 2 %)
    # → equity 416.02, available for order 76.525, margin ratio 199.596 / 416.02 = 47.98 %
    rules = rules_dict(
        {"BTCUSDT": linear("BTC", [{"cap": None, "mmr": 0.008, "max_leverage": 100}]),
         "ETHUSDC": linear("ETH", [{"cap": None, "mmr": 0.01, "max_leverage": 50}], settle="USDC")},
        {"USDT": {"bid_rate": 0.99, "ask_rate": 1.005}, "USDC": {}})
    positions = [{"symbol": "BTCUSDT", "qty": 0.5, "entry_price": 20_000, "mark_price": 20_000},
                 {"symbol": "ETHUSDC", "qty": 20, "entry_price": 600, "mark_price": 600}]
    report = books.report(_book({"binance": _venue("r.yaml", {"USDT": 200, "USDC": 220}, positions)},
                                {"BTC": 19_800, "ETH": 600, "USDT": 0.99, "USDC": 1.0}), {"r.yaml": rules})
    acct = report.accounts[0]
    assert round(acct.equity, 2) == 416.02
    assert round(acct.available, 3) == 76.525
    assert round(acct.maintenance_margin, 3) == 199.596
    assert round(100 / acct.margin_ratio, 2) == 47.98


def test_binance_portfolio_margin_collateral_rate(books: Books) -> None:
    # 3 BTC at collateral rate 0.95 → 2.85 BTC of adjusted equity
    rules = rules_dict({"BTCUSDT": linear("BTC", BTC_2021)},
                       {"BTC": {"tier_unit": "asset", "tiers": [{"cap": None, "ratio": 0.95}]}})
    _, st = books.evaluate(_book({"b": _venue("r.yaml", {"BTC": 3}, [])}, {"BTC": 50_000, "USDT": 1}),
                           {"r.yaml": rules})
    assert st.equity[0] / 50_000 == pytest.approx(2.85, rel=1e-15)


@pytest.mark.parametrize(("w", "k", "size", "expected"),
                         [(0.90, 0.01, 1_000, 0.8357), (0.90, 0.1, 1_000, 0.2642), (0.15, 0.1, 100_000, 0.0337),
                          (0.75, 0.1, 100_000, 0.0337)])
def test_drift_size_discounted_weight(w: float, k: float, size: float, expected: float) -> None:
    assert _trunc4(float(size_discount_weight(w, k, size))) == expected


def test_drift_size_liability_weight() -> None:
    assert _trunc4(float(size_liability_weight(1.10, 0.01, 1_000))) == 1.1962


def test_size_discount_applies_in_pool(books: Books) -> None:
    # 1,000 SOL at 100 USD with weight 0.9 and k 0.01: value = 100,000 × min(0.9, 1.1 / (1 + 0.01 √1000))
    rules = rules_dict({"BTCUSDT": linear("BTC", BTC_2021)},
                       {"SOL": {"tiers": [{"cap": None, "ratio": 0.9}], "size_discount_k": 0.01}})
    _, st = books.evaluate(_book({"b": _venue("r.yaml", {"SOL": 1_000}, [])}, {"SOL": 100, "BTC": 1, "USDT": 1}),
                           {"r.yaml": rules})
    assert st.equity[0] == pytest.approx(100_000 * 1.1 / (1 + 0.01 * math.sqrt(1_000)), rel=1e-12)


def test_inverse_isolated_long_liquidation_hand_derived(books: Books) -> None:
    # Coin-margined isolated long: M + q·cs·(1/e − 1/P) = mmr·q·cs/P − cum  ⇒  P = q·cs·(1 + mmr) / (M + cum + q·cs/e)
    q, cs, e, margin, mmr = 2_000, 100.0, 25_000.0, 0.5, 0.004
    rules = rules_dict({"BTCUSD_PERP": {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": cs,
                                        "brackets": [{"cap": 50, "mmr": mmr, "max_leverage": 125},
                                                     {"cap": None, "mmr": 0.005, "max_leverage": 100}]}})
    report = books.report(_book({"b": _venue("r.yaml", {}, [{"symbol": "BTCUSD_PERP", "qty": q, "entry_price": e,
                                                            "margin_mode": "isolated", "isolated_margin": margin}])},
                                {"BTC": e}), {"r.yaml": rules})
    expected = q * cs * (1 + mmr) / (margin + q * cs / e)
    pos = report.accounts[0].positions[0]
    assert pos.liquidation_price == pytest.approx(expected, rel=1e-12)
    assert q * cs / expected <= 50  # still in the first bracket at the root
    # the short side: P = q·cs·(1 − mmr) / (q·cs/e − M) for a short of q contracts
    report = books.report(_book({"b": _venue("r.yaml", {}, [{"symbol": "BTCUSD_PERP", "qty": -q, "entry_price": e,
                                                            "margin_mode": "isolated", "isolated_margin": margin}])},
                                {"BTC": e}), {"r.yaml": rules})
    expected_short = q * cs * (1 - mmr) / (q * cs / e - margin)
    assert report.accounts[0].positions[0].liquidation_price == pytest.approx(expected_short, rel=1e-12)
