"""New borrowing (policy ``borrow_rates``): loans taken in cross pools, their proceeds, their cost, and the
recommended book that the exact re-check and ``pmopt margin`` accept.

The desk of these tests holds only BTC.  Venue ``lend`` accepts BTC and USDT as collateral and holds no
position (or, in the folded case, a BTC short settled in USDT); venue ``trade`` holds a pinned cross BTC long
settled in USDT and accepts USDT at 100 % but BTC only at 50 %.  BTC moves −10 % … +10 % (21 points), worst case:
every number below follows from those inputs by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.decision import make_decision
from optimizer.formulation import build_terms, objective
from optimizer.problem import ProblemData, build_problem
from optimizer.recheck import recheck, unit_totals
from optimizer.run import Result, optimize
from risk_models.compiled import compile_book
from risk_models.errors import InputError
from risk_models.loading import LoadedBook, load_book
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from risk_models.venue_margin import evaluate
from tests.conftest import Books, dump_yaml, linear, rules_dict

FLAT = [{"cap": None, "mmr": 0.01, "max_leverage": 50}]
P = 50_000.0  # BTC price, USD
H = 7 / 365  # carry horizon, years
BPS = 1e-4  # transfer cost per leg
Y_BTC = 0.02  # yield forgone by posting BTC (USDT yields nothing here)
LEND = rules_dict({"BTCUSDT": linear("BTC", FLAT)}, {"USDT": {}, "BTC": {}})
TRADE = rules_dict({"BTCUSDT": linear("BTC", FLAT)}, {"USDT": {}, "BTC": {"tiers": [{"cap": None, "ratio": 0.5}]}})
GRID = ScenarioSet(("BTC",), np.linspace(-0.1, 0.1, 21)[:, None], tuple(f"s{i}" for i in range(21)), "test")


def desk(lend_collateral: dict[str, float] | None = None, lend_positions: list[dict[str, Any]] | None = None,
         wallet: dict[str, float] | None = None) -> dict[str, Any]:
    return {"version": 1, "prices": {"BTC": P, "USDT": 1.0}, "wallet": wallet or {"BTC": 1.0},
            "venues": {"lend": {"rules": "lend.yaml", "accounts": {"a": {
                "collateral": lend_collateral or {}, "positions": lend_positions or []}}},
                       "trade": {"rules": "trade.yaml", "accounts": {"b": {"collateral": {}, "positions": [
                           {"symbol": "BTCUSDT", "qty": 1.0, "entry_price": P, "pinned": True}]}}}}}


def policy(borrow: dict[str, float] | None = None, **overrides: Any) -> Policy:
    raw: dict[str, Any] = {"version": 1, "cross": {"buffer": 1.0}, "risk_model": {"measure": "worst"},
                           "yields": {"BTC": Y_BTC}, "transfer_cost_bps": 1.0}
    if borrow is not None:
        raw["borrow_rates"] = borrow
    raw.update(overrides)
    return Policy.model_validate(raw)


def load(books: Books, raw: dict[str, Any], lend: dict[str, Any] = LEND) -> LoadedBook:
    return books.load(raw, {"lend.yaml": lend, "trade.yaml": TRADE})


def balances(result: Result, venue: str, account: str) -> dict[str, float]:
    return dict(result.book.venues[venue].accounts[account].collateral)


def allocation(doc: dict[str, Any], bucket: str, asset: str) -> float:
    """The amount of the spec §6 allocation row of (bucket, asset); 0 without one."""
    rows = [r for r in doc["allocations"] if (r["bucket"], r["asset"]) == (bucket, asset)]
    assert len(rows) <= 1
    return rows[0]["amount"] if rows else 0.0


# The trade pool: its long loses 0.1 × 50,000 = 5,000 at −10 % with 0.01 × 45,000 = 450 of maintenance left, so it
# needs 5,450 USD of equity.  Two ways to get it there:
#   (a) post BTC in the trade pool at 50 %: 0.5·V ≥ 5,000 + 450 + 0.1 × 0.5·V  →  V = 5,450 / 0.45 = 12,111.11 USD;
#       cost (Y_BTC·H + BPS) · V;
#   (b) borrow L = 5,450 USDT in the lend pool against BTC at 100 %, send it to the trade pool: the lend pool's
#       worst case is BTC −10 %, V_a − L ≥ 0.1·V_a  →  V_a = L / 0.9 = 6,055.56 USD;
#       cost (Y_BTC·H + BPS)·V_a + rate·H·L + 2·BPS·L (the proceeds leave the lend pool and enter the trade pool).
# (b) is cheaper iff rate < ((Y_BTC·H + BPS)·(V − V_a) − 2·BPS·L) / (H·L) = 1.7587 %.
NEED = 5_000.0 + 450.0
V_POST = NEED / 0.45
V_LEND = NEED / 0.9
THRESHOLD = ((Y_BTC * H + BPS) * (V_POST - V_LEND) - 2 * BPS * NEED) / (H * NEED)


def test_threshold_between_the_two_answers_is_what_the_tests_below_straddle() -> None:
    assert THRESHOLD == pytest.approx(0.017587, rel=1e-4)


# == 1. without borrow_rates nothing is ever borrowed ============================================================

def test_without_borrow_rates_no_balance_goes_negative(books: Books) -> None:
    result = optimize(load(books, desk()), policy(), GRID)
    assert len(result.data.loan_slots) == 0 and "borrowing" not in result.solution.parts
    assert balances(result, "trade", "b") == pytest.approx({"BTC": V_POST / P}, rel=1e-9)
    after = result.book
    for venue in after.venues.values():
        for account in venue.accounts.values():
            assert all(v >= 0 for v in account.collateral.values())
    assert all(v >= 0 for v in after.wallet.values())
    assert all(r["amount"] >= 0 for r in result.document["allocations"])


# == 2. borrowing is the cheapest feasible answer: loan and cost by hand =========================================

def test_a_cheap_loan_against_btc_funds_the_usdt_pool(books: Books) -> None:
    rate = 0.01
    loaded = load(books, desk())
    result = optimize(loaded, policy({"USDT": rate}), GRID)  # the exact re-check runs inside
    sol, doc = result.solution, result.document
    # the loan: 5,450 USDT taken in the lend pool, the pool's balance −5,450 next to 6,055.56 USD of BTC
    assert balances(result, "lend", "a") == pytest.approx({"BTC": V_LEND / P, "USDT": -NEED}, rel=1e-6)
    assert balances(result, "trade", "b") == pytest.approx({"USDT": NEED}, rel=1e-6)
    assert result.book.wallet == pytest.approx({"BTC": 1.0 - V_LEND / P}, rel=1e-6)
    assert allocation(result.document, "lend/a/cross", "USDT") == pytest.approx(-NEED, rel=1e-6)  # a loan: negative
    assert allocation(result.document, "lend/a/cross", "BTC") == pytest.approx(V_LEND / P, rel=1e-6)
    # its cost and the whole objective (carry, transfer legs, borrowing, tie-breaks), USD over 7 days
    assert sol.parts["borrowing"] == pytest.approx(rate * NEED * H, rel=1e-6)
    assert sol.parts["carry"] == pytest.approx(Y_BTC * V_LEND * H, rel=1e-6)
    assert sol.parts["transfers"] == pytest.approx(BPS * (V_LEND + 2 * NEED), rel=1e-6)
    locked = V_LEND + NEED
    expected = (Y_BTC * V_LEND + rate * NEED) * H + BPS * (V_LEND + 2 * NEED) + 1e-9 * locked + 1e-9 * NEED
    assert doc["objective_value"] == pytest.approx(expected, rel=1e-6)
    # and it beats the alternative (BTC at 50 % in the trade pool), as the threshold says
    assert expected < (Y_BTC * H + BPS) * V_POST
    # transfers in the order they can be made: BTC in, then the loan's proceeds out, then into the trade pool
    legs = [(t["from"], t["to"], t["asset"]) for t in doc["transfers"]]
    assert legs == [("wallet", "lend/a/cross", "BTC"), ("lend/a/cross", "wallet", "USDT"),
                    ("wallet", "trade/b/cross", "USDT")]
    assert [t["amount"] for t in doc["transfers"]] == pytest.approx([V_LEND / P, NEED, NEED], rel=1e-6)
    # before/after: locked = positive balances on venues, free = the wallet; the carry saved counts the loan's cost
    assert doc["after"]["locked"] == pytest.approx(locked, rel=1e-6)
    assert doc["after"]["free"] == pytest.approx(P - V_LEND, rel=1e-6)
    assert doc["carry_saved_per_year"] == pytest.approx(-(Y_BTC * V_LEND + rate * NEED), rel=1e-6)
    lend_after = next(a for a in doc["after"]["accounts"] if a["venue"] == "lend")
    assert lend_after["equity"] == pytest.approx(V_LEND - NEED, rel=1e-6)
    assert lend_after["net_portfolio_margin"] == pytest.approx(0.1 * V_LEND, rel=1e-6)  # the buffer binds
    # every asset's units are conserved: the loan's 5,450 USDT are owed in the lend pool and held in the trade pool
    after, before = unit_totals(loaded, result.book), unit_totals(loaded, loaded.book)
    assert after["USDT"] == pytest.approx(0.0, abs=1e-9) and "USDT" not in before
    assert after["BTC"] == pytest.approx(before["BTC"], rel=1e-12)


@pytest.mark.parametrize("debt", [0.0, 1_000.0])
def test_a_loan_in_the_settle_asset_of_a_multi_assets_pool_is_folded_with_the_pnl(books: Books, debt: float) -> None:
    # The lend pool now values USDT at Binance Multi-Assets rates (bid 0.9801, ask 0.99495) and BTC at 95 %, and
    # holds a pinned BTC short of 0.5 entered at 49,000 (PnL −500 USDT), so its USDT balance is folded with the
    # PnL: balance = −L − debt − 500 − 25,000·r, negative everywhere, worth ask × balance.  Buffer 1.5: the trade
    # pool needs 5,000 + 1.5 × 450 = 5,675 = L.  The short loses as BTC rises: the lend pool's worst case is
    # r = +10 %, where 0.95·V·1.1 + 0.99495·(−L − debt − 3,000) = 1.5 × 0.99495 × 0.01 × 27,500.
    lend = rules_dict({"BTCUSDT": linear("BTC", FLAT)}, {"USDT": {"bid_rate": 0.9801, "ask_rate": 0.99495},
                                                         "BTC": {"tiers": [{"cap": None, "ratio": 0.95}]}})
    short = [{"symbol": "BTCUSDT", "qty": -0.5, "entry_price": 49_000.0, "pinned": True}]
    raw = desk({"USDT": -debt} if debt else {}, short, wallet={"BTC": 2.0})
    result = optimize(load(books, raw, lend), policy({"USDT": 0.01}, cross={"buffer": 1.5}), GRID)
    loan = 5_000.0 + 1.5 * 450.0
    btc = 0.99495 * (loan + debt + 3_000.0 + 1.5 * 275.0) / (0.95 * 1.1)
    assert balances(result, "lend", "a") == pytest.approx({"BTC": btc / P, "USDT": -loan - debt}, rel=1e-6)
    assert balances(result, "trade", "b") == pytest.approx({"USDT": loan}, rel=1e-6)
    assert allocation(result.document, "lend/a/cross", "USDT") == pytest.approx(-loan, rel=1e-6)  # the new loan only
    assert result.solution.parts["borrowing"] == pytest.approx(0.01 * loan * H, rel=1e-6)
    # exact, not conservative: the lend pool's equity equals its buffered requirement in the numpy re-check
    lend_after = next(a for a in result.document["after"]["accounts"] if a["venue"] == "lend")
    equity = 0.95 * btc + 0.99495 * (-loan - debt - 500.0)
    assert lend_after["equity"] == pytest.approx(equity, rel=1e-6)
    assert lend_after["net_portfolio_margin"] == pytest.approx(equity, rel=1e-6)


# == 3. borrowing allowed but too expensive: nothing borrowed ====================================================

@pytest.mark.parametrize("rate", [0.05, THRESHOLD * 1.01])
def test_an_expensive_loan_is_not_taken(books: Books, rate: float) -> None:
    result = optimize(load(books, desk()), policy({"USDT": rate}), GRID)
    sol = result.solution
    assert len(result.data.loan_slots) == 2  # the lend and trade pools both accept USDT
    assert sol.parts["borrowing"] == pytest.approx(0.0, abs=1e-9)
    assert balances(result, "lend", "a") == {}
    assert balances(result, "trade", "b") == pytest.approx({"BTC": V_POST / P}, rel=1e-6)
    assert all(r["amount"] >= 0 for r in result.document["allocations"])
    expected = (Y_BTC * H + BPS) * V_POST + 1e-9 * V_POST
    assert sol.objective == pytest.approx(expected, rel=1e-6)


def test_just_below_the_threshold_the_loan_is_taken(books: Books) -> None:
    result = optimize(load(books, desk()), policy({"USDT": THRESHOLD * 0.99}), GRID)
    assert balances(result, "lend", "a")["USDT"] == pytest.approx(-NEED, rel=1e-6)


# == the loan in the formulation ==================================================================================

def _data(books: Books, raw: dict[str, Any], pol: Policy, lend: dict[str, Any] = LEND,
          scenarios: ScenarioSet = GRID) -> ProblemData:
    loaded = load(books, raw, lend)
    cb = compile_book(loaded)
    return build_problem(loaded, cb, evaluate(cb), pol, scenarios)


def test_loans_are_offered_in_cross_pools_that_accept_the_asset_only(books: Books) -> None:
    # ETH: priced, named in borrow_rates, held nowhere, accepted by the lend pool only; DOGE is accepted nowhere;
    # SOL's only pool charges a size-dependent liability weight (not linear: never borrowed)
    lend = rules_dict({"BTCUSDT": linear("BTC", FLAT)},
                      {"USDT": {}, "BTC": {}, "ETH": {}, "SOL": {"size_discount_k": 0.01}})
    raw = desk()
    raw["prices"].update({"ETH": 2_500.0, "DOGE": 0.1, "SOL": 100.0})
    moves = np.linspace(-0.1, 0.1, 21)
    sc = ScenarioSet(("BTC", "DOGE", "ETH", "SOL"), np.stack([moves] * 4, axis=1), tuple(f"s{i}" for i in range(21)),
                     "test")
    data = _data(books, raw, policy({"ETH": 0.02, "DOGE": 0.02, "SOL": 0.02}), lend, sc)
    assert "SOL" not in data.assets and "DOGE" not in data.assets
    offered = {(data.buckets[data.slots[i].bucket].label, data.assets[data.slots[i].asset]) for i in data.loan_slots}
    assert offered == {("lend/a/cross", "ETH")}
    assert data.loan_rates.tolist() == [0.02]
    # the cap: ten times the desk's own capital (50,000) plus its gross notional (50,000), scaled by the capital
    assert data.loan_cap * data.scale == pytest.approx(10 * (P + P), rel=1e-12)


def test_a_foreign_loan_forces_multi_assets_mode(books: Books) -> None:
    # An exclusive account (isolated_with_multi_asset: false) with a USDT-settled position: a BTC loan there is a
    # foreign one, so the position cannot be isolated while it is outstanding; a USDT loan can coexist with it.
    lend = rules_dict({"BTCUSDT": linear("BTC", FLAT)}, {"USDT": {}, "BTC": {}}, isolated_with_multi_asset=False)
    long = [{"symbol": "BTCUSDT", "qty": 0.1, "entry_price": P}]
    data = _data(books, desk({"USDT": 20_000.0}, long, wallet={"BTC": 1.0, "USDT": 50_000.0}),
                 policy({"USDT": 0.01, "BTC": 0.01}), lend)
    lend_pos = next(i for i, p in enumerate(data.positions) if data.buckets[p.cross_bucket].venue == "lend")
    loans = {data.assets[data.slots[i].asset]: j for j, i in enumerate(data.loan_slots)
             if data.buckets[data.slots[i].bucket].venue == "lend"}

    def status(isolate: bool, asset: str) -> str:
        z = np.array([1.0 if (i == lend_pos and isolate) else (1.0 if p.isolated_now else 0.0)
                      for i, p in enumerate(data.positions)])
        x = make_decision(data, fixed_z=z)
        cons = [c for t in build_terms(data, x) for c in t.constraints]
        cons.append(x.borrow[loans[asset]] >= 1_000.0 / data.scale)
        prob = cp.Problem(cp.Minimize(objective(data, x)[0]), cons)
        prob.solve(solver="HIGHS")
        return prob.status

    assert status(isolate=False, asset="BTC") == "optimal"
    assert status(isolate=True, asset="BTC") == "infeasible"
    assert status(isolate=True, asset="USDT") == "optimal"


def test_a_negative_yield_above_the_borrow_rate_is_refused(books: Books) -> None:
    raw = desk()
    with pytest.raises(InputError, match=r"borrow_rates\.USDT") as info:
        _data(books, raw, policy({"USDT": 0.01}, yields={"BTC": Y_BTC, "USDT": -0.03}))
    assert info.value.exit_code == 2
    _data(books, raw, policy({"USDT": 0.01}, yields={"BTC": Y_BTC, "USDT": -0.03}, objective="locked_value"))


def test_recheck_refuses_a_loan_in_an_asset_borrow_rates_does_not_name(books: Books) -> None:
    from optimizer.recheck import RecheckError

    loaded = load(books, desk())
    result = optimize(loaded, policy({"USDT": 0.01}), GRID)
    recheck(loaded, result.book, policy({"USDT": 0.01}), GRID, result.data.scale)
    with pytest.raises(RecheckError, match="borrow_rates does not name USDT"):
        recheck(loaded, result.book, policy(), GRID, result.data.scale)


# == 4. the written book re-checks and round-trips through pmopt margin ==========================================

def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_written_book_with_a_loan_rechecks_and_round_trips(tmp_path: Path) -> None:
    raw = desk()
    raw["as_of"] = "2024-06-01"
    for name, rules in (("lend.yaml", LEND), ("trade.yaml", TRADE)):
        dump_yaml(rules, tmp_path / name)
    book_path = dump_yaml(raw, tmp_path / "book.yaml")
    pol = {"version": 1, "cross": {"buffer": 1.0}, "risk_model": {"measure": "worst", "window_days": 90},
           "yields": {"BTC": Y_BTC}, "transfer_cost_bps": 1.0, "borrow_rates": {"USDT": 0.01}}
    policy_path = dump_yaml(pol, tmp_path / "policy.yaml")
    out = tmp_path / "after.yaml"
    code, text = _cli("optimize", str(book_path), "--policy", str(policy_path), "--json", "--write-book", str(out))
    assert code == 0, text
    doc = json.loads(text)
    loan = -allocation(doc, "lend/a/cross", "USDT")
    assert loan > 0
    for row in doc["allocations"]:
        assert set(row) == {"bucket", "asset", "amount", "value"}
    # the written book holds the loan as the lend pool's negative USDT balance and its proceeds in the trade pool
    written = load_book(out)
    assert written.book.venues["lend"].accounts["a"].collateral["USDT"] == pytest.approx(-loan, rel=1e-12)
    assert written.book.venues["trade"].accounts["b"].collateral["USDT"] == pytest.approx(loan, rel=1e-12)
    # pmopt margin reads it back: the equities are those of the document's "after"
    code, text = _cli("margin", str(out), "--json")
    assert code == 0, text
    margin = {(a["venue"], a["account"]): a for a in json.loads(text)["accounts"]}
    for acct in doc["after"]["accounts"]:
        row = margin[(acct["venue"], acct["account"])]
        assert row["equity"] == pytest.approx(acct["equity"], rel=1e-9)
        assert row["equity"] >= row["maintenance_margin"]
    btc = written.book.venues["lend"].accounts["a"].collateral["BTC"]
    assert margin[("lend", "a")]["equity"] == pytest.approx(btc * P - loan, rel=1e-9)
    # and the independent re-check accepts the written book as it is
    loaded = load_book(book_path)
    from risk_models.loading import load_policy
    from risk_models.market_data import default_prices
    from risk_models.risk_model import build_scenarios

    pol_model = load_policy(policy_path)
    sc = build_scenarios(pol_model.risk_model, compile_book(loaded).assets, default_prices(), raw["as_of"])
    recheck(loaded, written.book, pol_model, sc, P)
