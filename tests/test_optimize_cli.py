"""`pmopt optimize` and `pmopt sweep` from the command line: spec §6 document, exit codes, written books, trades."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from risk_models.loading import load_book, load_policy
from tests.conftest import dump_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multi_venue"
TOP_KEYS = {"version", "status", "objective", "objective_value", "objective_value_before", "solver", "allocations",
            "transfers", "trades", "margin_modes", "before", "after", "carry_saved_per_year", "binding_constraints"}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("opt") / "after.yaml"
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"), "--json",
                      "--write-book", str(out))
    assert code == 0, text
    return json.loads(text), out


def test_document_has_the_spec_keys(document: tuple[dict, Path]) -> None:
    doc, _ = document
    assert TOP_KEYS <= set(doc)
    assert doc["status"] == "optimal" and doc["solver"]["name"] == "HIGHS"
    for row in doc["allocations"]:
        assert set(row) == {"bucket", "asset", "amount", "value"}
    for row in doc["transfers"]:
        assert set(row) == {"from", "to", "asset", "amount", "cost"}
        assert row["from"] == "wallet" or row["to"] == "wallet"
    for row in doc["binding_constraints"]:
        assert {"name", "slack", "shadow_price", "unit", "explanation"} <= set(row)
    for side in ("before", "after"):
        assert {"locked", "free", "accounts"} <= set(doc[side])
        for acct in doc[side]["accounts"]:
            assert {"venue", "account", "equity", "maintenance_margin", "margin_ratio", "net_portfolio_margin",
                    "stressed_equity", "capital_efficiency"} <= set(acct)
    assert doc["objective_value"] <= doc["objective_value_before"] + 1e-6


def test_solver_reports_where_the_seconds_went(document: tuple[dict, Path]) -> None:
    solver = document[0]["solver"]
    # the example desk's pools are linear and its 1,095 scenarios worth generating: aggregated cuts, a few rounds
    assert solver["scenario_constraints"] == "cuts"
    assert solver["rounds"] >= 2 and solver["scenario_constraints_kept"] >= 1
    parts = solver["compile_seconds"] + solver["solve_seconds"] + solver["separation_seconds"]
    assert 0.0 < parts <= solver["seconds"] * (1 + 1e-9)


def test_written_book_rechecks_and_conserves(document: tuple[dict, Path]) -> None:
    doc, out = document
    code, text = _run("margin", str(out), "--json")
    assert code == 0, text
    margin = json.loads(text)
    for acct in margin["accounts"]:
        assert acct["equity"] >= acct["maintenance_margin"]
    before, after = load_book(EXAMPLE / "book.yaml"), load_book(out)
    total_before = doc["before"]["locked"] + doc["before"]["free"]
    total_after = doc["after"]["locked"] + doc["after"]["free"]
    assert total_after == pytest.approx(total_before, rel=1e-9)
    assert set(after.book.venues) == set(before.book.venues)


def test_example_desk_holds_five_eligible_collateral_assets(document: tuple[dict, Path]) -> None:
    loaded = load_book(EXAMPLE / "book.yaml")
    book = loaded.book
    posted = {(v, a, asset) for v, venue in book.venues.items() for a, acct in venue.accounts.items()
              for asset in acct.collateral}
    assert {asset for *_, asset in posted} == {"USDT", "USDC", "BTC", "ETH", "LTC"}
    assert len(book.venues) == 4 and sum(len(v.accounts) for v in book.venues.values()) == 5
    assert sum(len(acct.positions) for venue in book.venues.values() for acct in venue.accounts.values()) == 15
    for venue_id, _, asset in posted:  # every balance is collateral its venue's rule set accepts
        assert loaded.rules[venue_id].rules.collateral_rule(asset) is not None, (venue_id, asset)
    doc, _ = document
    # only OKX's rule set takes ETH and LTC (settle coins of its coin-margined swaps): nowhere else to post them
    for row in doc["allocations"]:
        if row["asset"] in ("ETH", "LTC"):
            assert row["bucket"] in ("okx/pm/cross", "wallet"), row
    # OKX risk units by hand: BTC net delta 5 × 97,600.062 − 300,000 at MR6 24 %; ETH −400,000 face at 24 %;
    # LTC −250,000 face at 36 %
    okx = next(a for a in doc["before"]["accounts"] if a["venue"] == "okx")
    expected = 0.24 * (5 * 97_600.062 - 300_000) + 0.24 * 400_000 + 0.36 * 250_000
    assert okx["maintenance_margin"] == pytest.approx(expected, rel=1e-9)


def test_infeasible_policy_is_exit_3_with_top_up_and_reductions(tmp_path: Path) -> None:
    pol = load_policy(EXAMPLE / "policy.yaml").model_dump()
    pol["cross"]["buffer"] = 400.0
    path = dump_yaml(pol, tmp_path / "policy.yaml")
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(path), "--json")
    assert code == 3
    doc = json.loads(text[: text.rindex("}") + 1])
    assert doc["status"] == "infeasible"
    assert sum(t["value"] for t in doc["top_up"]) > 0
    # a buffer of 400 × MM: cross positions that may be isolated are, the others (portfolio-margined) are cut
    assert doc["reductions"]
    book = load_book(EXAMPLE / "book.yaml").book
    for row in doc["reductions"]:
        assert set(row) == {"venue", "account", "symbol", "qty_before", "qty_after", "reduce_qty",
                            "notional_reduced"}
        position = next(p for p in book.venues[row["venue"]].accounts[row["account"]].positions
                        if p.symbol == row["symbol"])
        assert row["qty_before"] == position.qty
        assert row["qty_after"] * row["qty_before"] >= 0 and abs(row["qty_after"]) < abs(row["qty_before"])
        assert row["reduce_qty"] == pytest.approx(abs(row["qty_before"]) - abs(row["qty_after"]), rel=1e-12)
        assert row["notional_reduced"] > 0
    total = sum(r["notional_reduced"] for r in doc["reductions"])
    assert f"reduce positions by {total:,.2f} USD of notional" in text  # stderr names both remedies
    # without --json the two remedies are tables
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(path))
    assert code == 3
    assert "1. Smallest top-up" in text and "smallest position reductions" in text
    assert doc["reductions"][0]["symbol"] in text


def test_trades_are_applied_first(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text("venue,account,symbol,qty,price\nbinance,main,BTCUSDT,-40,97600\n"
                      "binance,main,XRPUSDT,1000,2.7\n")
    out = tmp_path / "after.yaml"
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                      "--trades", str(trades), "--write-book", str(out), "--json")
    if code == 2:  # XRP has no price in the example book: the trade must be refused clearly
        assert "XRP" in text
        trades.write_text("venue,account,symbol,qty,price\nbinance,main,BTCUSDT,-40,97600\n")
        code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                          "--trades", str(trades), "--write-book", str(out), "--json")
    assert code == 0, text
    symbols = [p.symbol for p in load_book(out).book.venues["binance"].accounts["main"].positions]
    assert "BTCUSDT" not in symbols  # 40 − 40 closes it


def test_bad_trades_file_is_exit_2(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text("venue,account,symbol,qty\nbinance,main,BTCUSDT,1\n")
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                      "--trades", str(trades))
    assert code == 2 and "header" in text
    trades.write_text("venue,account,symbol,qty,price\nbinance,nosuch,BTCUSDT,1,100\n")
    code, text = _run("optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                      "--trades", str(trades))
    assert code == 2 and "line 2" in text and "binance/nosuch" in text


def test_sweep_cost_grows_with_the_buffer() -> None:
    code, text = _run("sweep", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                      "--param", "buffer", "--values", "1,2", "--json")
    assert code == 0, text
    rows = json.loads(text)["rows"]
    assert [r["value"] for r in rows] == [1.0, 2.0]
    # a larger buffer shrinks the feasible set: the least cost cannot fall (locked value may, under carry_cost,
    # when zero-yield collateral replaces stablecoins)
    assert rows[1]["objective_value"] >= rows[0]["objective_value"] - 1e-6


def test_a_defect_is_one_clear_line_with_exit_1_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import optimizer.run
    from optimizer.cli import main

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(optimizer.run, "optimize", broken)
    monkeypatch.delenv("PMOPT_TRACEBACK", raising=False)
    result = CliRunner().invoke(main, ["optimize", "examples/multi_venue/book.yaml", "--policy",
                                       "examples/multi_venue/policy.yaml"])
    assert result.exit_code == 1
    assert "internal error (RuntimeError: something inside broke)" in result.output
    assert "Traceback" not in result.output


def test_a_binding_buffer_is_explained_with_its_multiple_and_daily_cost() -> None:
    from optimizer.recommendation import explain

    text = explain("buffer binance/main/cross", "buffer", 0.041, 7.0, 1.5)
    assert text.startswith("the 1.5× buffer on binance/main/cross binds")
    assert "costs 41.00 USD over the 7-day carry horizon (5.857 USD/day)" in text
