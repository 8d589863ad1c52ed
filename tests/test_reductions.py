"""Position reductions when the policy cannot be met (spec §6, exit code 3): hand-derived cuts, realized PnL,
the conservative tier bound, portfolio-margin hedges, verification and enlargement, and the cases with none.

Every book has one account on one venue and a single-scenario set under the ``worst`` measure, so the buffer
requirement is L + k·MM at one shocked price and each cut can be derived by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from optimizer.elastic import Reductions, reduced_book, smallest_reductions, solve_cuts
from optimizer.problem import ProblemData, build_problem
from optimizer.run import Infeasible, meets_policy, optimize
from risk_models.compiled import CompiledBook, compile_book
from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from risk_models.venue_margin import MarginState, evaluate
from tests.conftest import Books, linear, rules_dict

FLAT = [{"cap": None, "mmr": 0.01, "max_leverage": 50}]
TIERED = [{"cap": 200_000, "mmr": 0.005, "max_leverage": 100}, {"cap": None, "mmr": 0.01, "max_leverage": 50}]
CRASH = ScenarioSet(("BTC",), np.array([[-0.10]]), ("crash",), "test")  # one scenario: BTC −10 %
K = 1.5


def _policy(**overrides: Any) -> Policy:
    raw: dict[str, Any] = {"version": 1, "risk_model": {"measure": "worst"}, "cross": {"buffer": K},
                           "yields": {"USDT": 0.05}, "transfer_cost_bps": 1.0}
    raw.update(overrides)
    return Policy.model_validate(raw)


def _book(entry: float = 50_000.0, collateral: float = 50_000.0, wallet: float = 50_000.0, qty: float = 20.0
          ) -> dict[str, Any]:
    """20 BTC long (1,000,000 USD at 50,000), pinned cross; USDT in the pool and the wallet."""
    return {"version": 1, "prices": {"BTC": 50_000.0, "USDT": 1.0}, "wallet": {"USDT": wallet},
            "venues": {"v": {"rules": "r.yaml", "accounts": {"a": {"collateral": {"USDT": collateral}, "positions": [
                {"symbol": "BTCUSDT", "qty": qty, "entry_price": entry, "pinned": True}]}}}}}


def _load(books: Books, raw: dict[str, Any], brackets: list[dict] = FLAT) -> LoadedBook:
    return books.load(raw, {"r.yaml": rules_dict({"BTCUSDT": linear("BTC", brackets)}, {"USDT": {}})})


def _infeasible(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet = CRASH) -> Infeasible:
    with pytest.raises(Infeasible) as info:
        optimize(loaded, policy, scenarios)
    return info.value


def _parts(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet = CRASH
           ) -> tuple[CompiledBook, MarginState, ProblemData]:
    cb = compile_book(loaded)
    state = evaluate(cb)
    return cb, state, build_problem(loaded, cb, state, policy, scenarios)


def test_one_pinned_cross_position_is_cut_by_the_amount_derived_by_hand(books: Books) -> None:
    # Holdings 100,000 USDT.  At −10 %: loss 0.1 N, maintenance 1 % of 0.9 N, so the buffer asks
    # N (0.1 + 1.5 × 0.009) = 0.1135 N = 113,500 for N = 1,000,000: 13,500 short.  The position may shrink to
    # N' = 100,000 / 0.1135 (a pinned position may be reduced: that is no mode change).
    loaded = _load(books, _book())
    exc = _infeasible(loaded, _policy())
    doc = exc.document
    assert sum(t["value"] for t in doc["top_up"]) == pytest.approx(13_500, rel=1e-9)
    kept = 100_000 / 0.1135
    [row] = doc["reductions"]
    assert set(row) == {"venue", "account", "symbol", "qty_before", "qty_after", "reduce_qty", "notional_reduced"}
    assert (row["venue"], row["account"], row["symbol"]) == ("v", "a", "BTCUSDT")
    assert row["qty_before"] == 20.0
    assert row["qty_after"] == pytest.approx(kept / 50_000, rel=1e-6)
    assert row["reduce_qty"] == pytest.approx(20.0 - kept / 50_000, rel=1e-6)
    assert row["notional_reduced"] == pytest.approx(1_000_000 - kept, rel=1e-6)  # 118,942.73 USD
    message = str(exc)
    assert "top up 13,500.00 USD" in message and "reduce positions by 118,942.7" in message
    assert "v/a BTCUSDT 20 → 17.62114" in message
    # the reduced book meets the policy, and 1 % less of a cut does not
    assert optimize(_load(books, _book(qty=row["qty_after"])), _policy(), CRASH).document["status"] == "optimal"
    with pytest.raises(Infeasible):
        optimize(_load(books, _book(qty=20.0 - 0.99 * row["reduce_qty"])), _policy(), CRASH)


def test_a_cut_realizes_its_share_of_the_loss_in_the_settle_asset(books: Books) -> None:
    # Entry 52,000, mark 50,000: uPnL −40,000.  Cutting a share r realizes −40,000 r into the pool's USDT and
    # leaves −40,000 (1 − r) unrealized, so equity is 60,000 whatever r; the buffer asks 113,500 (1 − r):
    # 1 − r = 60,000 / 113,500.  Ignoring the realized loss would give 1 − r = 100,000 / 153,500: too little.
    loaded = _load(books, _book(entry=52_000.0))
    [row] = _infeasible(loaded, _policy()).document["reductions"]
    kept = 60_000 / 113_500
    assert row["qty_after"] == pytest.approx(20 * kept, rel=1e-6)
    assert row["notional_reduced"] == pytest.approx(1_000_000 * (1 - kept), rel=1e-6)  # 471,365.64 USD
    # the reduced book books the realized loss in the pool's USDT
    cb, state, _ = _parts(loaded, _policy())
    cut = np.array([1 - kept])
    pool = reduced_book(loaded, cb, state, cut).book.venues["v"].accounts["a"]
    assert pool.collateral["USDT"] == pytest.approx(50_000 - 40_000 * (1 - kept), rel=1e-12)
    assert pool.positions[0].qty == pytest.approx(20 * kept, rel=1e-12) and pool.positions[0].entry_price == 52_000
    assert meets_policy(reduced_book(loaded, cb, state, cut), _policy(), CRASH)
    naive = np.array([1 - 100_000 / 153_500])
    assert not meets_policy(reduced_book(loaded, cb, state, naive), _policy(), CRASH)


def test_tiered_maintenance_scales_conservatively(books: Books) -> None:
    # Brackets 0.5 % to 200,000 then 1 % (cum 1,000).  At −10 % the full position's MM is 0.01 × 900,000 − 1,000
    # = 8,000; the model charges λ × (100,000 + 1.5 × 8,000) = λ × 112,000 <= 100,000.  The exact requirement of
    # the cut position is λ × 113,500 − 1,500 (the cum does not scale), so the true minimum keeps
    # λ = 101,500 / 113,500: the printed cut suffices and is at most 1.4 % of notional larger.
    loaded = _load(books, _book(), TIERED)
    [row] = _infeasible(loaded, _policy()).document["reductions"]
    assert row["notional_reduced"] == pytest.approx(1_000_000 * (1 - 100_000 / 112_000), rel=1e-6)  # 107,142.86
    exact = 1 - 101_500 / 113_500  # 105,726.87 USD: feasible too, not found by the linear model
    cb, state, _ = _parts(loaded, _policy())
    assert meets_policy(reduced_book(loaded, cb, state, np.array([exact * 1.0001])), _policy(), CRASH)
    assert not meets_policy(reduced_book(loaded, cb, state, np.array([exact * 0.99])), _policy(), CRASH)


def test_a_portfolio_margined_hedge_is_cut_on_its_dominant_leg(books: Books) -> None:
    # OKX portfolio margin: one BTC risk unit, 500 BTC-USDT-SWAP long (5 BTC, 500,000 USD) against 2,000
    # BTC-USD-SWAP short (200,000 USD face).  MMR = 24 % × |net delta| (MR6).  At −10 %: loss 50,000 − 20,000,
    # MMR 0.24 × |450,000 − 200,000| = 60,000: the buffer asks 120,000 of 60,000 USDT.  Cutting the hedge raises
    # the requirement; cutting the long to λ asks 50,000 λ − 20,000 + 1.5 × 0.24 × (450,000 λ − 200,000)
    # = 212,000 λ − 92,000 <= 60,000: λ = 152 / 212, 141,509.43 USD of notional (a common cut of both legs
    # would take 350,000).
    raw = {"version": 1, "prices": {"BTC": 100_000.0, "USDT": 1.0}, "wallet": {},
           "venues": {"okx": {"rules": "okx-pm-2025-01", "accounts": {"pm": {"collateral": {"USDT": 60_000.0},
                      "positions": [{"symbol": "BTC-USDT-SWAP", "qty": 500, "entry_price": 100_000.0},
                                    {"symbol": "BTC-USD-SWAP", "qty": -2_000, "entry_price": 100_000.0}]}}}}}
    loaded = books.load(raw)
    exc = _infeasible(loaded, _policy())
    [row] = exc.document["reductions"]
    assert row["symbol"] == "BTC-USDT-SWAP"
    assert row["qty_after"] == pytest.approx(500 * 152 / 212, rel=1e-6)
    assert row["notional_reduced"] == pytest.approx(500_000 * 60 / 212, rel=1e-6)


def test_cuts_that_fail_verification_are_enlarged_until_they_pass(books: Books) -> None:
    # A verifier that asks 5 % more cut than the model found: tried in turn are the model's cut, then × (1 + t) for
    # t = 1e-6, 1e-4, 1e-2 (too little) and 0.1 (enough); bisection of (0.01, 0.1] then tries 0.055 (enough),
    # 0.0325, 0.04375, 0.049375 (too little): the answer is the model's cut × 1.055, after 9 re-runs.
    loaded = _load(books, _book())
    pol = _policy()
    cb, state, data = _parts(loaded, pol)
    model = 1 - 100_000 / 113_500

    def demanding(book: LoadedBook) -> bool:
        return book.book.venues["v"].accounts["a"].positions[0].qty <= 20 * (1 - 1.05 * model)

    found = smallest_reductions(loaded, cb, state, data, CRASH, demanding)
    assert found.checks == 9
    assert found.model_notional == pytest.approx(1_000_000 * model, rel=1e-6)
    assert found.notional == pytest.approx(1.055 * 1_000_000 * model, rel=1e-6)


def test_a_feasible_book_needs_no_reductions(books: Books) -> None:
    loaded = _load(books, _book(wallet=70_000.0))  # 120,000 USDT >= 113,500
    pol = _policy()
    cb, state, data = _parts(loaded, pol)
    assert solve_cuts(data, cb, loaded, CRASH, 60.0)[1].tolist() == [0.0]
    found = smallest_reductions(loaded, cb, state, data, CRASH, lambda b: meets_policy(b, pol, CRASH))
    assert found == Reductions([], "the policy can be met as the book is: nothing to reduce", 0.0, 1)


def test_no_reductions_when_even_closing_everything_fails(books: Books) -> None:
    # a 200,000 USDT reserve with 100,000 USDT held: no cut helps, and the message says why
    exc = _infeasible(_load(books, _book()), _policy(reserve={"USDT": 200_000}))
    assert exc.document["reductions"] == []
    assert sum(t["value"] for t in exc.document["top_up"]) == pytest.approx(213_500, rel=1e-9)
    assert "the reserve of 200,000 USDT exceeds the 100,000 USDT the desk would hold" in str(exc)


def test_pinned_positions_on_an_unmeetable_policy_get_remedies_not_a_crash(books) -> None:
    # every mode fixed (pinned), one of them isolated: the reduction model builds the isolated terms with a
    # mode expression, not constants — the recommendation is the exit-3 document with both remedies
    from optimizer.run import Infeasible, optimize
    from tests.test_optimizer import book, load, policy, pos, scenarios
    positions = [pos("BTCUSDT", 2.0, pinned=True), pos("DOGEUSDT", 5e5, "isolated", 30_000.0, pinned=True)]
    raw = book({"a": ({"USDT": 5_000.0}, positions)}, {})
    with pytest.raises(Infeasible) as exc:
        optimize(load(books, raw), policy(cross={"buffer": 20.0}), scenarios(2))
    doc = exc.value.document
    assert sum(row["value"] for row in doc["top_up"]) > 0
    assert doc["reductions"] and all(r["notional_reduced"] > 0 for r in doc["reductions"])
