"""The Python API gives the numbers the commands print, from paths or from objects already in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import optimizer as pm
from optimizer.cli import main
from risk_models.errors import InputErrors
from risk_models.loading import load_book, load_policy
from risk_models.market_data import default_prices
from risk_models.yaml_io import read_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multi_venue"
BOOK, POLICY = EXAMPLE / "book.yaml", EXAMPLE / "policy.yaml"


def _cli_json(*args: str) -> dict:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def recommendation() -> pm.Recommendation:
    return pm.optimize(BOOK, POLICY)


def test_package_exports_the_api_functions() -> None:
    from optimizer import api
    from optimizer.sweep import run_sweep

    assert pm.sweep is api.sweep and pm.validate is api.validate and callable(run_sweep)
    with pytest.raises(AttributeError):
        pm.no_such_function  # noqa: B018


def test_margin_rows_are_the_cli_document() -> None:
    doc = _cli_json("margin", str(BOOK))
    positions = pm.margin(BOOK)
    assert len(positions) == 15
    assert positions.attrs["document"] == doc
    btc = positions[(positions.venue == "binance") & (positions.account == "main") & (positions.symbol == "BTCUSDT")]
    assert btc.iloc[0]["notional"] == pytest.approx(40 * 97600.062)
    assert btc.iloc[0]["maintenance_margin"] == doc["accounts"][0]["positions"][0]["maintenance_margin"]
    accounts = pm.margin(BOOK, level="account")
    assert list(accounts.account) == ["main", "collateral_btc", "vault", "hedge", "pm"]
    assert accounts.equity.tolist() == [a["equity"] for a in doc["accounts"]]
    with pytest.raises(ValueError, match="level"):
        pm.margin(BOOK, level="venue")


def test_risk_equals_the_cli_and_accepts_objects() -> None:
    doc = _cli_json("risk", str(BOOK), "--policy", str(POLICY))
    frame = pm.risk(BOOK, POLICY)
    assert frame.attrs["document"] == doc
    assert frame.net_portfolio_margin.tolist() == [a["net_portfolio_margin"] for a in doc["accounts"]]
    main_row = frame.iloc[0]
    assert main_row.net_portfolio_margin == pytest.approx(358732.11, abs=0.01)
    assert main_row.diversification_benefit == pytest.approx(
        main_row.standalone_margin - main_row.net_portfolio_margin)
    # the same from a LoadedBook, a Policy object and a prices DataFrame
    same = pm.risk(load_book(BOOK), load_policy(POLICY), prices=default_prices().prices)
    assert same.net_portfolio_margin.tolist() == frame.net_portfolio_margin.tolist()
    contrib = pm.contributions(BOOK, POLICY)
    sums = contrib.groupby(["venue", "account"], sort=False).contribution.sum()
    assert sums.tolist() == pytest.approx(frame.net_portfolio_margin.tolist(), rel=1e-9)
    assert pm.risk(BOOK, POLICY, buffer=1.0).net_portfolio_margin.iloc[0] < main_row.net_portfolio_margin


def test_optimize_tables(recommendation: pm.Recommendation) -> None:
    doc = recommendation.document
    assert recommendation.status == "optimal"
    assert recommendation.objective_value == pytest.approx(791.01, abs=0.05)
    assert recommendation.transfers.columns.tolist() == ["from", "to", "asset", "amount", "cost"]
    assert len(recommendation.transfers) == len(doc["transfers"]) == 7
    alloc = recommendation.allocations
    assert alloc.value.sum() == pytest.approx(doc["after"]["locked"] + doc["after"]["free"], rel=1e-9)
    ba = recommendation.before_after
    assert len(ba) == 5 * 6
    row = ba[(ba.account == "main") & (ba.metric == "equity")].iloc[0]
    assert row.before == doc["before"]["accounts"][0]["equity"] and row.change == pytest.approx(row.after - row.before)
    assert recommendation.margin_modes.to_dict("records") == [
        {"venue": "hyperliquid", "account": "vault", "symbol": "BTC", "before": "isolated", "after": "cross"}]
    assert recommendation.binding_constraints.explanation.str.len().min() > 20


def test_recommended_book_rechecks(recommendation: pm.Recommendation, tmp_path: Path) -> None:
    after = pm.margin(recommendation.book, level="account")
    assert after.equity.tolist() == pytest.approx([a["equity"] for a in recommendation.document["after"]["accounts"]])
    recommendation.write_book(tmp_path / "after.yaml")
    assert pm.validate(tmp_path / "after.yaml") == []


def test_in_memory_book_and_trades_frame() -> None:
    raw = _hyperliquid_only()
    trades = pd.DataFrame([{"venue": "hyperliquid", "account": "vault", "symbol": "ETH", "qty": 10.0,
                            "price": 2719.0}])
    rec = pm.optimize(raw, {"version": 1, "cross": {"buffer": 1.5}, "yields": {"USDC": 0.045}}, trades)
    symbols = {s["symbol"] for a in rec.book.book.venues["hyperliquid"].accounts.values() for s in
               [p.model_dump() for p in a.positions]}
    assert symbols == {"SOL", "BTC", "ETH"}
    assert rec.status == "optimal"


def test_bad_input_raises_every_problem() -> None:
    raw = read_yaml(BOOK)
    raw["venues"]["binance"]["accounts"]["main"]["positions"][0]["symbol"] = "BTCUSDX"
    raw["venues"]["okx"]["rules"] = "okx-nope"
    with pytest.raises(InputErrors) as info:
        pm.margin(raw)
    text = str(info.value)
    assert "unknown rule set 'okx-nope'" in text
    with pytest.raises(InputErrors, match=r"prices\.BTC: must be a finite number"):
        pm.load({**read_yaml(BOOK), "prices": {"BTC": float("nan")}})


def _hyperliquid_only() -> dict:
    raw = read_yaml(BOOK)
    raw["venues"] = {"hyperliquid": raw["venues"]["hyperliquid"]}
    raw["wallet"] = {"USDC": 750000}
    return raw


def test_infeasible_raises_with_the_top_up() -> None:
    raw = _hyperliquid_only()
    raw["wallet"] = {}
    policy = {"version": 1, "cross": {"buffer": 20}, "isolated": {"liquidation_distance": 0.5},
              "yields": {"USDC": 0.045}}
    with pytest.raises(pm.Infeasible) as info:
        pm.optimize(raw, policy)
    assert info.value.exit_code == 3
    doc = info.value.document
    assert sum(r["value"] for r in doc["top_up"]) == pytest.approx(327702.08, rel=1e-3)
    assert [(r["symbol"], r["qty_before"]) for r in doc["reductions"]] == [("SOL", -6000.0)]
    assert doc["reductions"][0]["qty_after"] == pytest.approx(-2469.99, rel=1e-3)


def test_sweep_frame() -> None:
    frame = pm.sweep(_hyperliquid_only(), POLICY, "buffer", [1.0, 2.0])
    assert frame.columns.tolist() == ["value", "status", "objective_value", "locked", "free", "top_up"]
    assert frame.status.tolist() == ["optimal", "optimal"]
    assert frame.objective_value.iloc[0] < frame.objective_value.iloc[1]
    assert frame.attrs["param"] == "buffer"
