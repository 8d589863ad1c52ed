"""`pmopt rules list` and `pmopt rules show`: the shipped rule sets, aliases, contracts and collateral tiers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from optimizer.cli import main
from risk_models.rule_catalog import describe, list_rule_sets
from tests.conftest import dump_yaml, linear, rules_dict


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_list_names_every_shipped_set_with_its_alias() -> None:
    by_name = {s.name: s for s in list_rule_sets()}
    assert set(by_name) == {"binance-usdm-2021", "binance-usdm-2024-10", "deribit-pm-2024-06",
                            "deribit-standard-2021", "dydx-v4-2024-03", "hyperliquid-2026-03", "okx-pm-2025-01"}
    binance = by_name["binance-usdm-2024-10"]
    assert (binance.date, binance.venue, binance.contracts) == ("2024-10-24", "binance-usdm", 349)
    assert binance.collateral == ("USDT", "USDC", "BTC")
    assert binance.aliases == ("binance-usdm",)
    assert by_name["binance-usdm-2021"].aliases == ()  # the older set is only reachable by its dated name
    assert by_name["okx-pm-2025-01"].collateral == ("USDT", "BTC", "ETH", "LTC")
    assert by_name["okx-pm-2025-01"].margin_model == "okx_pm"
    assert by_name["deribit-pm-2024-06"].margin_model == "risk_matrix"


def test_list_json() -> None:
    code, out = _run("rules", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["rule_sets"]}
    assert rows["hyperliquid-2026-03"] == {"name": "hyperliquid-2026-03", "date": "2026-03-01",
                                           "venue": "hyperliquid", "contracts": 3, "collateral": ["USDC"],
                                           "aliases": ["hyperliquid"], "margin_model": "brackets"}


def test_list_table() -> None:
    code, out = _run("rules", "list")
    assert code == 0
    assert "binance-usdm-2024-10" in out and "USDT, USDC, BTC" in out and "349" in out


def test_show_resolves_the_alias_and_filters_contracts() -> None:
    d = describe("binance-usdm", "btcusdt")
    assert d.name == "binance-usdm-2024-10" and d.requested == "binance-usdm"
    assert d.contracts_total == 349 and [c.symbol for c in d.contracts] == ["BTCUSDT"]
    btc = d.contracts[0]
    assert (btc.brackets, btc.first_mmr, btc.first_max_leverage) == (12, 0.004, 125)
    tiers = {c.asset: c.tiers for c in d.collateral}
    assert tiers["BTC"] == ((1e8, 1.0), (1.2e8, 0.975), (1.5e8, 0.95), (1.8e8, 0.9), (2e8, 0.85))
    assert d.mode_switch == "close_reopen" and d.isolated_with_multi_asset is False
    assert "not modelled" in (d.not_covered or "")


def test_show_table_has_source_coverage_and_tiers() -> None:
    code, out = _run("rules", "show", "okx-pm")
    assert code == 0
    assert "okx-pm-2025-01 (alias okx-pm)" in out and "2025-01-06" in out
    assert "Source:" in out and "Not covered:" in out
    for symbol in ("BTC-USDT-SWAP", "BTC-USD-SWAP", "ETH-USD-SWAP", "LTC-USD-SWAP"):
        assert symbol in out
    code, out = _run("rules", "show", "binance-usdm-2024-10", "--symbols", "BTCUSDT")
    assert code == 0
    assert "Contracts (1 of 349)" in out and "to 100,000,000: 100%; to 120,000,000: 97.5%" in out


def test_show_a_rules_file_lists_settle_assets_it_does_not_name(tmp_path: Path) -> None:
    path = dump_yaml(rules_dict({"XUSDT": linear("X", [{"cap": None, "mmr": 0.01, "max_leverage": 20}])}),
                     tmp_path / "r.yaml")
    code, out = _run("rules", "show", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["contracts"][0]["symbol"] == "XUSDT" and doc["contracts"][0]["position_limit"] is None
    assert doc["collateral"] == [{"asset": "USDT", "tier_unit": "usd", "tiers": [{"cap": None, "ratio": 1.0}],
                                  "bid_rate": 1.0, "ask_rate": 1.0, "size_discount_k": 0.0, "implicit": True}]


def test_show_unknown_name_is_bad_input_with_the_known_names() -> None:
    code, out = _run("rules", "show", "binanse-usdm")
    assert code == 2
    assert "unknown rule set 'binanse-usdm'" in out and "binance-usdm-2024-10" in out
