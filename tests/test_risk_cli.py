"""`pmopt risk`: the JSON document of spec §5, the models, the policy, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from tests.conftest import dump_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multi_venue" / "book.yaml"
ACCOUNT_KEYS = {"venue", "account", "equity", "maintenance_margin", "net_portfolio_margin", "standalone_margin",
                "diversification_benefit", "stressed_equity", "contributions", "worst_scenarios", "isolated"}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["risk", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def historical() -> dict:
    code, out = _run(str(EXAMPLE), "--json")
    assert code == 0, out
    return json.loads(out)


def test_document_has_exactly_the_spec_keys(historical: dict) -> None:
    assert set(historical) == {"version", "model", "accounts"}
    assert historical["version"] == 1
    assert historical["model"] == {"kind": "historical", "confidence": 0.99, "measure": "es", "horizon_days": 1,
                                   "scenarios": 1095, "window": ["2022-02-22", "2025-02-20"]}
    for acct in historical["accounts"]:
        assert set(acct) == ACCOUNT_KEYS
        assert sum(acct["contributions"].values()) == pytest.approx(acct["net_portfolio_margin"], rel=1e-9)
        assert acct["diversification_benefit"] == pytest.approx(
            acct["standalone_margin"] - acct["net_portfolio_margin"], rel=1e-9, abs=1e-6)
        for w in acct["worst_scenarios"]:
            assert set(w) == {"label", "loss"}
        for iso in acct["isolated"]:
            assert set(iso) == {"symbol", "net_portfolio_margin", "isolated_margin"}
    main_acct = historical["accounts"][0]
    assert main_acct["isolated"][0]["symbol"] == "DOGEUSDT"
    assert main_acct["worst_scenarios"][0]["loss"] >= main_acct["worst_scenarios"][-1]["loss"]


@pytest.mark.parametrize("model", ["filtered_historical", "parametric", "grid"])
def test_every_model_runs(model: str) -> None:
    code, out = _run(str(EXAMPLE), "--model", model, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["model"]["kind"] == model
    assert all(a["net_portfolio_margin"] > 0 for a in doc["accounts"])


def test_longer_horizon_needs_more_margin(historical: dict) -> None:
    code, out = _run(str(EXAMPLE), "--horizon", "5", "--json")
    assert code == 0
    longer = json.loads(out)
    assert longer["model"]["horizon_days"] == 5
    for a, b in zip(historical["accounts"], longer["accounts"], strict=True):
        assert b["net_portfolio_margin"] > a["net_portfolio_margin"]


def test_policy_stress_scenario_depegging_usdt_raises_margin(tmp_path: Path, historical: dict) -> None:
    policy = dump_yaml({"version": 1, "cross": {"buffer": 1.0},
                        "stress_scenarios": [{"name": "usdt-depeg", "shocks": {"USDT": -0.3, "BTC": -0.1}}]},
                       tmp_path / "policy.yaml")
    code, out = _run(str(EXAMPLE), "--policy", str(policy), "--measure", "worst", "--json")
    assert code == 0, out
    doc = json.loads(out)
    main_acct = doc["accounts"][0]
    assert main_acct["worst_scenarios"][0]["label"] == "usdt-depeg"
    assert main_acct["net_portfolio_margin"] > historical["accounts"][0]["net_portfolio_margin"]


def test_bad_policy_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    policy = dump_yaml({"version": 1, "risk_model": {"knd": "historical"}}, tmp_path / "policy.yaml")
    code, out = _run(str(EXAMPLE), "--policy", str(policy))
    assert code == 2
    assert "policy.yaml" in out and "risk_model.knd" in out and "unknown key" in out


def test_unpegged_stablecoin_past_its_last_quote_is_exit_2(tmp_path: Path) -> None:
    policy = dump_yaml({"version": 1, "risk_model": {"pegged": []}}, tmp_path / "policy.yaml")
    code, out = _run(str(EXAMPLE), "--policy", str(policy))
    assert code == 2
    assert "2025-02-11" in out and ("USDT" in out or "USDC" in out)


def test_user_price_history(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    days = pd.date_range("2024-01-01", periods=200, freq="D")
    rng = np.random.default_rng(0)
    prices = {a: p0 * np.exp(np.cumsum(rng.normal(0, 0.03, 200))) for a, p0 in
              [("BTC", 90_000), ("ETH", 2_700), ("SOL", 170), ("DOGE", 0.25), ("XRP", 2.7), ("BNB", 650),
               ("LINK", 18), ("LTC", 128)]}
    csv = tmp_path / "prices.csv"
    pd.DataFrame(prices, index=days.rename("date")).to_csv(csv)
    book = EXAMPLE.read_text().replace('as_of: "2025-02-20T00:00:00Z"', 'as_of: "2024-07-18"')
    book_path = tmp_path / "book.yaml"
    book_path.write_text(book)
    code, out = _run(str(book_path), "--prices", str(csv), "--window", "120", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["model"]["scenarios"] == 120
    assert doc["model"]["window"][1] == "2024-07-18"


def test_guard_rails_floor_and_buffer(tmp_path: Path, historical: dict) -> None:
    code, out = _run(str(EXAMPLE), "--offset-cap", "0.8", "--apc-buffer", "0.25", "--json")
    assert code == 0, out
    guarded = json.loads(out)
    for raw, acct in zip(historical["accounts"], guarded["accounts"], strict=True):
        floor = raw["standalone_margin"] - 0.8 * (raw["standalone_margin"] - raw["net_portfolio_margin"])
        expected = 1.25 * max(raw["net_portfolio_margin"], floor)
        assert acct["net_portfolio_margin"] == pytest.approx(expected, rel=1e-9)
        assert sum(acct["contributions"].values()) == pytest.approx(expected, rel=1e-9)


def test_liquidity_addon_by_hand(tmp_path: Path, historical: dict) -> None:
    adv = tmp_path / "adv.csv"
    adv.write_text("asset,adv_usd\nBTC,3e10\nETH,1.5e10\nSOL,3e9\nDOGE,1e9\nXRP,2e9\nBNB,1e9\nLINK,5e8\nLTC,4e8\n")
    code, out = _run(str(EXAMPLE), "--adv", str(adv), "--liquidity-coefficient", "0.5", "--json")
    assert code == 0, out
    acct = json.loads(out)["accounts"][2]  # hyperliquid/vault: one cross position, SOL −6,000 at 172.71281
    notional = 6_000 * 172.71281 / 0.99998558 * 0.99998558
    assert acct["contributions"]["liquidity"] == pytest.approx(0.5 * notional**1.5 / 3e9**0.5, rel=1e-9)
    raw = historical["accounts"][2]["net_portfolio_margin"]
    assert acct["net_portfolio_margin"] == pytest.approx(raw + acct["contributions"]["liquidity"], rel=1e-12)


def test_adv_missing_an_asset_is_exit_2(tmp_path: Path) -> None:
    adv = tmp_path / "adv.csv"
    adv.write_text("asset,adv_usd\nBTC,3e10\n")
    code, out = _run(str(EXAMPLE), "--adv", str(adv))
    assert code == 2
    assert "no average daily volume" in out
