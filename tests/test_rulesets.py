"""Shipped rule sets (risk_models/rulesets) and the ccxt leverage-tiers converter.

Reference numbers: /work/shared/reference/margin-rules.md; the Binance 2024-10 snapshot is copied into
tests/fixtures so that these tests never read outside the repository.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from risk_models.ccxt_tiers import parse_ccxt_symbol, rules_from_ccxt_tiers, write_rules_yaml
from risk_models.schema.rules import Rules

REPO = Path(__file__).resolve().parents[1]
RULESETS = REPO / "risk_models" / "rulesets"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "binance_usdm_leverage_tiers_2024-10.json"
SHARED_REFERENCE = REPO.parent / "shared" / "reference"


def _load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _rules(name: str) -> Rules:
    return Rules.model_validate(_load(RULESETS / f"{name}.yaml"))


@pytest.fixture(scope="module")
def snapshot() -> dict[str, list[dict[str, Any]]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _mm(contract: Any, notional: float) -> float:
    """Tiered maintenance margin max_k(mmr_k × N − cum_k)."""
    return float(np.max(contract.mmrs * notional - contract.cums))


# --- every shipped file --------------------------------------------------------------------------------


def test_the_expected_rule_sets_are_shipped() -> None:
    names = {p.stem for p in RULESETS.glob("*.yaml")}
    assert names >= {"binance-usdm-2021", "binance-usdm-2024-10", "deribit-standard-2021", "deribit-pm-2024-06",
                     "dydx-v4-2024-03", "hyperliquid-2026-03"}


@pytest.mark.parametrize("path", sorted(RULESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_rule_set_validates_and_says_where_its_numbers_come_from(path: Path) -> None:
    rules = Rules.model_validate(_load(path))
    assert rules.version == 1
    assert len(rules.source) > 80
    assert rules.date and path.stem.endswith(rules.date[:7])
    assert rules.not_covered and len(rules.not_covered) > 80
    for cid, contract in rules.contracts.items():
        assert contract.settle in rules.collateral, cid


# --- Binance 2021 (reference §1 table) ------------------------------------------------------------------


def test_binance_2021_btcusdt_matches_the_reference_table() -> None:
    rules = _rules("binance-usdm-2021")
    btc = rules.contracts["BTCUSDT"]
    assert btc.caps.tolist() == [50_000, 250_000, 1_000_000, 5_000_000, 20_000_000, 50_000_000, 100_000_000,
                                 200_000_000, 300_000_000, 500_000_000]
    assert btc.mmrs.tolist() == [0.004, 0.005, 0.01, 0.025, 0.05, 0.1, 0.125, 0.15, 0.25, 0.5]
    assert btc.max_leverages.tolist() == [125, 100, 50, 20, 10, 5, 4, 3, 2, 1]
    # cum column of the table, exact to the micro-USDT (float arithmetic of the cum construction)
    assert btc.cums.round(6).tolist() == [0, 50, 1_300, 16_300, 141_300, 1_141_300, 2_391_300, 4_891_300,
                                          24_891_300, 99_891_300]
    assert btc.position_limit == 500_000_000
    assert (rules.mode_switch, rules.isolated_with_multi_asset) == ("close_reopen", False)


def test_binance_level_3_maintenance_amount_is_the_official_example() -> None:
    """ "Maintenance Amount on Level 3 = 250,000 × (1 % − 0.5 %) + 50 = 1,300 USDT"."""
    btc = _rules("binance-usdm-2021").contracts["BTCUSDT"]
    assert btc.caps[1] == 250_000 and btc.mmrs[2] == 0.01 and btc.mmrs[1] == 0.005 and btc.cums[1] == 50
    assert btc.cums[2] == pytest.approx(250_000 * (0.01 - 0.005) + 50, abs=1e-9)
    assert btc.cums[2] == pytest.approx(1_300, abs=1e-9)
    # MM is continuous at the cap: 250,000 × 0.5 % − 50 = 250,000 × 1 % − 1,300 = 1,200
    assert _mm(btc, 250_000) == pytest.approx(1_200, abs=1e-9)
    assert _mm(btc, 400_000) == pytest.approx(400_000 * 0.01 - 1_300, abs=1e-9)


def test_binance_2021_ethusdt_matches_the_reference_table() -> None:
    eth = _rules("binance-usdm-2021").contracts["ETHUSDT"]
    assert eth.caps.tolist() == [10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
                                 20_000_000, math.inf]
    assert eth.mmrs.tolist() == [0.005, 0.0065, 0.01, 0.02, 0.05, 0.1, 0.125, 0.15, 0.25]
    assert eth.cums.round(6).tolist() == [0, 15, 365, 5_365, 35_365, 135_365, 260_365, 510_365, 2_510_365]
    # not in the 2021 source: Binance's own rate → leverage pairing in the 2024-10 ETHUSDT brackets
    assert eth.max_leverages.tolist() == [100, 75, 50, 25, 10, 5, 4, 3, 2]


def test_binance_2021_eth_max_leverages_are_binance_own_pairing_in_the_2024_snapshot(snapshot: dict) -> None:
    pairing = {t["maintenanceMarginRate"]: t["maxLeverage"] for t in snapshot["ETH/USDT:USDT"]}
    eth = _rules("binance-usdm-2021").contracts["ETHUSDT"]
    assert [pairing[m] for m in eth.mmrs.tolist()] == eth.max_leverages.tolist()


# --- Binance 2024-10 (ccxt snapshot) --------------------------------------------------------------------


def test_binance_2024_10_cums_equal_binance_own_cum_for_every_symbol_and_tier(snapshot: dict) -> None:
    rules = _rules("binance-usdm-2024-10")
    assert len(snapshot) == 349 and len(rules.contracts) == 349
    assert set(rules.contracts) == {parse_ccxt_symbol(s).contract_id for s in snapshot}
    checked = 0
    for symbol, tiers in snapshot.items():
        contract = rules.contracts[parse_ccxt_symbol(symbol).contract_id]
        tiers = sorted(tiers, key=lambda t: t["minNotional"])
        assert len(contract.brackets) == len(tiers), symbol
        columns = (contract.caps, contract.mmrs, contract.max_leverages, contract.cums)
        for tier, cap, mmr, lev, cum in zip(tiers, *columns, strict=True):
            where = f"{symbol} tier {tier['tier']}"
            assert cap == tier["maxNotional"] and mmr == tier["maintenanceMarginRate"], where
            assert lev == tier["maxLeverage"], where
            assert cum == pytest.approx(float(tier["info"]["cum"]), rel=1e-12, abs=1e-9), where
            checked += 1
    assert checked == 2805


def test_binance_2024_10_spot_checks() -> None:
    rules = _rules("binance-usdm-2024-10")
    btc = rules.contracts["BTCUSDT"]
    assert btc.caps[:4].tolist() == [50_000, 600_000, 3_000_000, 12_000_000]
    assert btc.mmrs[:4].tolist() == [0.004, 0.005, 0.0065, 0.01]
    assert btc.max_leverages[:4].tolist() == [125, 100, 75, 50]
    assert btc.cums[:4].tolist() == pytest.approx([0, 50, 950, 11_450], rel=1e-12)
    assert btc.position_limit == 1_800_000_000
    bonk = rules.contracts["1000BONKUSDC"]
    assert (bonk.underlying, bonk.settle, bonk.kind, bonk.contract_size) == ("1000BONK", "USDC", "linear", 1)
    dated = rules.contracts["BTCUSDT_241227"]
    assert (dated.underlying, dated.settle, dated.kind) == ("BTC", "USDT", "linear")
    ethbtc = rules.contracts["ETHBTC"]
    assert (ethbtc.settle, ethbtc.kind, float(ethbtc.caps[0])) == ("BTC", "linear", 5.0)
    assert rules.date == "2024-10-24"
    assert (rules.mode_switch, rules.isolated_with_multi_asset) == ("close_reopen", False)
    assert "freqtrade/exchange/binance_leverage_tiers.json" in rules.source


def test_binance_2024_10_collateral() -> None:
    collateral = _rules("binance-usdm-2024-10").collateral
    assert set(collateral) == {"USDT", "USDC", "BTC"}
    for stable in ("USDT", "USDC"):
        assert [(t.cap, t.ratio) for t in collateral[stable].tiers] == [(None, 1.0)]
        assert (collateral[stable].bid_rate, collateral[stable].ask_rate) == (1.0, 1.0)
    btc = collateral["BTC"]
    assert btc.tier_unit == "usd"
    assert [(t.cap, t.ratio) for t in btc.tiers] == [
        (100e6, 1.0), (120e6, 0.975), (150e6, 0.95), (180e6, 0.9), (200e6, 0.85)]
    # reference §3: 6,000 BTC @ 20,000 → 100,000,000 × 1 + 20,000,000 × 0.975 = 119,500,000
    value, low = 0.0, 0.0
    for tier in btc.tiers:
        value += tier.ratio * min(max(6_000 * 20_000 - low, 0.0), tier.cap - low)
        low = tier.cap
    assert value == pytest.approx(119_500_000)


def test_binance_2024_10_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "binance-usdm-2024-10.yaml"
    module = "risk_models.rulesets.build_binance_2024_10"
    subprocess.run([sys.executable, "-m", module, str(FIXTURE), str(out)], cwd=REPO, check=True,
                   capture_output=True)
    assert out.read_bytes() == (RULESETS / "binance-usdm-2024-10.yaml").read_bytes()


def test_fixture_is_the_shared_reference_snapshot() -> None:
    shared = SHARED_REFERENCE / FIXTURE.name
    if not shared.is_file():
        pytest.skip(f"{shared} is not present (the fixture is a copy of it)")
    assert FIXTURE.read_bytes() == shared.read_bytes()


# --- Hyperliquid, dYdX, Deribit, OKX -------------------------------------------------------------------


def test_hyperliquid_mmr_is_half_the_initial_margin_at_max_leverage() -> None:
    rules = _rules("hyperliquid-2026-03")
    expected = {"BTC": ([150e6, math.inf], [40, 20]), "ETH": ([100e6, math.inf], [25, 15]),
                "SOL": ([70e6, math.inf], [20, 10])}
    assert set(rules.contracts) == set(expected)
    for coin, (caps, levs) in expected.items():
        c = rules.contracts[coin]
        assert (c.underlying, c.settle, c.kind) == (coin, "USDC", "linear")
        assert c.caps.tolist() == caps and c.max_leverages.tolist() == levs
        for b in c.brackets:
            assert b.mmr == 1 / (2 * b.max_leverage), coin
    btc = rules.contracts["BTC"]
    assert btc.mmrs.tolist() == [0.0125, 0.025]
    assert btc.cums.tolist() == [0, 150e6 * (0.025 - 0.0125)]  # 1,875,000 USDC deduction above 150M


def test_dydx_large_cap_markets() -> None:
    rules = _rules("dydx-v4-2024-03")
    assert set(rules.contracts) == {"BTC-USD", "ETH-USD"}
    for cid, c in rules.contracts.items():
        assert (c.underlying, c.settle, c.kind) == (cid.split("-")[0], "USDC", "linear")
        # MMF 3 %, max leverage 1 / IMF 5 % = 20
        assert [(b.cap, b.mmr, b.max_leverage) for b in c.brackets] == [(None, 0.03, 20)]
        assert c.open_interest_scaling is None


def test_deribit_btc_perpetual_size_margin() -> None:
    rules = _rules("deribit-standard-2021")
    perp = rules.contracts["BTC-PERPETUAL"]
    assert (perp.underlying, perp.settle, perp.kind, perp.contract_size) == ("BTC", "BTC", "inverse", 10)
    assert [(b.cap, b.mmr, b.max_leverage) for b in perp.brackets] == [(None, 0.015, 50)]
    sm = perp.size_margin
    assert sm is not None
    assert (sm.initial_base, sm.maintenance_base, sm.rate_per_unit) == (0.02, 0.015, 0.00005)

    def im(btc: float) -> float:
        return btc * (sm.initial_base + sm.rate_per_unit * btc)

    def mm(btc: float) -> float:
        return btc * (sm.maintenance_base + sm.rate_per_unit * btc)

    assert im(25) == pytest.approx(0.53125) and im(350) == pytest.approx(13.125)  # reference §4
    assert mm(25) == pytest.approx(0.40625) and mm(350) == pytest.approx(11.375)
    assert [(t.cap, t.ratio) for t in rules.collateral["BTC"].tiers] == [(None, 1.0)]


def test_deribit_risk_matrix_parameters() -> None:
    model = _rules("deribit-pm-2024-06").margin_model
    assert model is not None and model.kind == "risk_matrix"
    assert (model.price_range, model.volatility_range_up, model.volatility_range_down) == (0.16, 0.5, 0.25)
    assert (model.annualised_move_risk, model.min_annualised_move) == (0.075, 0.01)
    assert model.extended_dampener == 100_000
    assert (model.max_delta_shock, model.mm_factor, model.buckets_count) == (0.1, 0.8, 4)
    assert model.pnl_offset is None and model.delta_total_liq_shock_threshold is None
    eth = model.per_underlying["ETH"]
    assert (eth.price_range, eth.volatility_range_up, eth.volatility_range_down) == (0.18, 0.4, 0.25)
    assert (eth.annualised_move_risk, eth.min_annualised_move, eth.pnl_offset) == (0.05, 0.005, 0.6)
    assert eth.extended_dampener == 200_000 and eth.buckets_count is None



def test_okx_pm_contracts_and_coin_collateral() -> None:
    rules = _rules("okx-pm-2025-01")
    expected = {"BTC-USDT-SWAP": ("BTC", "USDT", "linear", 0.01), "BTC-USD-SWAP": ("BTC", "BTC", "inverse", 100),
                "ETH-USD-SWAP": ("ETH", "ETH", "inverse", 10), "LTC-USD-SWAP": ("LTC", "LTC", "inverse", 10)}
    assert {cid: (c.underlying, c.settle, c.kind, c.contract_size) for cid, c in rules.contracts.items()} == expected
    assert all(not c.brackets for c in rules.contracts.values())  # the portfolio-margin model replaces brackets
    # every coin of a coin-margined swap is accepted in the pool at 100 %
    assert set(rules.collateral) == {"USDT", "BTC", "ETH", "LTC"}
    for asset in ("BTC", "ETH", "LTC"):
        assert [(t.cap, t.ratio) for t in rules.collateral[asset].tiers] == [(None, 1.0)]
    model = rules.margin_model
    assert model is not None and model.kind == "okx_pm"
    eth, ltc = model.group("ETH"), model.group("LTC")
    assert (eth.spot_moves, eth.extreme_move) == ([0.04, 0.08, 0.12], 0.24)
    assert (ltc.spot_moves, ltc.extreme_move) == ([0.06, 0.12, 0.18], 0.36)
    # face values: 1,500 ETH-USD-SWAP contracts are 15,000 USD, 0.24 × 15,000 = 3,600 USD of MR6 alone
    assert 1_500 * rules.contracts["ETH-USD-SWAP"].contract_size * eth.extreme_move == pytest.approx(3_600)
    assert 1_500 * rules.contracts["LTC-USD-SWAP"].contract_size * ltc.extreme_move == pytest.approx(5_400)
    assert "ETH-USD-SWAP" in rules.source and "LTC-USD-SWAP" in rules.source
    assert rules.not_covered is not None and "SOL-USD-SWAP is not shipped" in rules.not_covered

# --- the converter -------------------------------------------------------------------------------------


def _tier(n: int, lo: float, hi: float | None, mmr: float, lev: float, currency: str = "USDT") -> dict:
    return {"tier": float(n), "currency": currency, "minNotional": lo, "maxNotional": hi,
            "maintenanceMarginRate": mmr, "maxLeverage": lev, "info": {}}


@pytest.mark.parametrize(("symbol", "cid", "underlying", "settle", "kind"), [
    ("BTC/USDT:USDT", "BTCUSDT", "BTC", "USDT", "linear"),
    ("1000BONK/USDC:USDC", "1000BONKUSDC", "1000BONK", "USDC", "linear"),
    ("BTC/USDT:USDT-241227", "BTCUSDT_241227", "BTC", "USDT", "linear"),
    ("ETH/BTC:BTC", "ETHBTC", "ETH", "BTC", "linear"),
    ("BTC/USD:BTC", "BTCUSD", "BTC", "BTC", "inverse"),
])
def test_symbol_parsing(symbol: str, cid: str, underlying: str, settle: str, kind: str) -> None:
    parsed = parse_ccxt_symbol(symbol)
    assert (parsed.contract_id, parsed.base, parsed.settle, parsed.kind) == (cid, underlying, settle, kind)


def test_round_trip_of_the_full_snapshot(snapshot: dict, tmp_path: Path) -> None:
    rules = rules_from_ccxt_tiers(snapshot, venue="binance-usdm", source="snapshot", date="2024-10-24")
    assert list(rules["contracts"]) == sorted(rules["contracts"])
    plain = {"tiers": [{"cap": None, "ratio": 1.0}]}
    assert rules["collateral"] == {"BTC": plain, "USDC": plain, "USDT": plain}
    path = tmp_path / "rules.yaml"
    write_rules_yaml(rules, path)
    loaded = _load(path)
    assert loaded == rules
    assert Rules.model_validate(loaded).contracts["BTCUSDT"].cums[2] == pytest.approx(950, rel=1e-12)


def test_round_trip_with_an_inverse_contract_and_an_unbounded_last_tier(tmp_path: Path) -> None:
    tiers = {
        "BTC/USD:BTC": [_tier(2, 5, 10, 0.006, 75, "BTC"), _tier(1, 0, 5, 0.005, 100, "BTC"),
                        _tier(3, 10, math.inf, 0.01, 50, "BTC")],
        "ETH/USDT:USDT": [_tier(1, 0, 10_000, 0.005, 100), _tier(2, 10_000, None, 0.0065, 75)],
    }
    rules = rules_from_ccxt_tiers(tiers, venue="v", source="s", not_covered="n", liquidation_fee_rate=0.001,
                                  contract_sizes={"BTC/USD:BTC": 100})
    inverse = rules["contracts"]["BTCUSD"]
    assert (inverse["kind"], inverse["settle"], inverse["contract_size"]) == ("inverse", "BTC", 100)
    assert inverse["brackets"] == [{"cap": 5.0, "mmr": 0.005, "max_leverage": 100.0},
                                   {"cap": 10.0, "mmr": 0.006, "max_leverage": 75.0},
                                   {"cap": None, "mmr": 0.01, "max_leverage": 50.0}]
    assert rules["contracts"]["ETHUSDT"]["brackets"][-1]["cap"] is None
    path = tmp_path / "rules.yaml"
    write_rules_yaml(rules, path)
    loaded = _load(path)
    assert loaded == rules
    validated = Rules.model_validate(loaded)
    assert validated.contracts["BTCUSD"].cums.tolist() == pytest.approx([0, 0.005, 0.045])
    assert validated.liquidation_fee_rate == 0.001


@pytest.mark.parametrize(("tiers", "message"), [
    ({"XRP/USDT:USDT": [_tier(1, 0, 5_000, 0.01, 50), _tier(2, 6_000, 20_000, 0.02, 25)]},
     r"XRP/USDT:USDT: tier 2\.0 starts at 6000, expected 5000"),
    ({"XRP/USDT:USDT": [_tier(1, 100, 5_000, 0.01, 50)]},
     r"XRP/USDT:USDT: tier 1\.0 starts at 100, expected 0"),
    ({"XRP/USDT:USDT": [_tier(1, 0, None, 0.01, 50), _tier(2, 5_000, 9_000, 0.02, 25)]},
     r"XRP/USDT:USDT: tier 1\.0 is unbounded"),
    ({"XRP/USDT:USDT": [_tier(1, 0, 5_000, 0.02, 50), _tier(2, 5_000, 9_000, 0.01, 25)]},
     r"XRP/USDT:USDT: brackets are not ascending: mmr 0\.01 \(bracket 1\) < mmr 0\.02"),
    ({"XRP/USDT:USDT": [{**_tier(1, 0, 5_000, 0.01, 50), "maintenanceMarginRate": "0.01"}]},
     r"XRP/USDT:USDT: tier 1\.0 has no numeric maintenanceMarginRate"),
    ({"XRP/USDT:USDT": [_tier(1, 0, 5_000, 0.01, 50, currency="USDC")]},
     r"XRP/USDT:USDT: tier 1\.0 is in USDC, expected the settle asset USDT"),
    ({"XRP/USDT:USDT": []}, r"XRP/USDT:USDT: expected a non-empty list of tiers"),
    ({"BTC/USD:BTC": [_tier(1, 0, 5, 0.005, 100, "BTC")]},
     r"BTC/USD:BTC: inverse contract without a contract size"),
    ({"BTC/USDT": [_tier(1, 0, 5_000, 0.01, 50)]}, r"BTC/USDT: not a ccxt derivative symbol"),
    ({"BTC/USD:BTC-241227-50000-C": [_tier(1, 0, 5, 0.01, 50, "BTC")]},
     r"BTC/USD:BTC-241227-50000-C: unsupported"),
    ({"BTC/USDT:USDT": [_tier(1, 0, 5_000, 0.01, 50)], "BTC/USDT:BTC": [_tier(1, 0, 5, 0.01, 50, "BTC")]},
     r"BTC/USDT:BTC: contract id BTCUSDT is also produced by BTC/USDT:USDT"),
])
def test_malformed_tiers_raise_naming_the_symbol(tiers: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules_from_ccxt_tiers(tiers, venue="v", source="s")
