"""Linear pools and their scenario cuts (optimizer.linear_pools), and the pieces that keep big books fast.

The pools' numpy face must equal the formulation's own expressions evaluated at a solution (loans, existing debts
and first-slice tiered collateral included); a cut row must be the weighted sum of its scenarios' terms; tiers
beyond a slot's reach are dropped exactly; blocked revaluation equals one block.  That the cut path reaches the
full problem's optimum is checked on random books in tests/test_working_set.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.decision import make_decision
from optimizer.formulation import evaluate_pools, reachable_pieces
from optimizer.linear_pools import Cuts, linear_pools
from optimizer.problem import Slot, build_problem
from optimizer.solve import _problem
from optimizer.working_set import solve_generated
from risk_models import revaluation
from risk_models.compiled import compile_book
from risk_models.venue_margin import evaluate
from tests.conftest import Books
from tests.test_borrowing import desk, load
from tests.test_borrowing import policy as borrow_policy
from tests.test_optimizer import RULES, SLOW, TIERED_RULES, book, policy, pos, random_books, scenarios
from tests.test_optimizer import load as load_optimizer


def _solved(data, relax: bool = True):
    x = make_decision(data, relax=relax)
    prob, _, _, _ = _problem(data, x)
    prob.solve(solver="HIGHS")
    assert prob.status == "optimal"
    return x


def _borrowing_data(books: Books, measure: str):
    # a loan may be taken (borrow_rates), the lend pool owes 1,000 USDT already, BTC at a flat 50 % in the trade pool
    loaded = load(books, desk(lend_collateral={"USDT": -1_000.0, "BTC": 0.3}))
    pol = borrow_policy({"USDT": 0.01}, risk_model={"measure": measure})
    cb = compile_book(loaded)
    return build_problem(loaded, cb, evaluate(cb), pol, scenarios(3, n=250))


@pytest.mark.parametrize("measure", ["es", "worst"])
def test_the_numpy_face_equals_the_formulation_with_loans_and_debts(books: Books, measure: str) -> None:
    data = _borrowing_data(books, measure)
    pools = linear_pools(data)
    assert pools is not None
    x = _solved(data)
    assert np.abs(np.asarray(x.borrowed.value)).max() > 0 or data.loan_slots.size  # loans are in the problem
    terms, equity = pools.values(x)
    want_terms, want_equity = evaluate_pools(data, x)
    np.testing.assert_allclose(equity, want_equity, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(terms, want_terms, rtol=1e-10, atol=1e-14)


def test_first_slice_tiered_collateral_is_linear_and_equals_the_formulation(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 30_000.0, "BTC": 0.2}, positions)}, {"USDT": 40_000.0}),
                            TIERED_RULES)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), scenarios(4, n=300))
    assert any(s.usd_tiers for s in data.slots)
    pools = linear_pools(data)
    assert pools is not None  # the BTC the desk holds never reaches the second tier, even after the largest rise
    x = _solved(data, relax=False)
    terms, equity = pools.values(x)
    want_terms, want_equity = evaluate_pools(data, x)
    np.testing.assert_allclose(equity, want_equity, rtol=1e-12)
    np.testing.assert_allclose(terms, want_terms, rtol=1e-10, atol=1e-14)
    # and a slot that could reach its second tier is not linear: the pool keeps its per-scenario hypograph
    assert linear_pools(replace(data, slot_reach=data.slot_reach * 1e3)) is None
    assert linear_pools(replace(data, slot_reach=None)) is None


def test_a_cut_row_is_the_weighted_sum_of_its_scenarios_terms(books: Books) -> None:
    data = _borrowing_data(books, "es")
    pools = linear_pools(data)
    x = _solved(data)
    terms, _ = pools.values(x)
    rng = np.random.default_rng(1)
    cuts = Cuts(pools).grown([0, 1, 0], [np.sort(rng.choice(250, 9, replace=False)), np.arange(250), np.array([7])])
    rows = pools.cut_rows(cuts)
    hv, v = np.asarray(x.haircut_value.value), np.asarray(x.value.value)
    z, loan = np.asarray(x.isolated.value, dtype=float), np.asarray(x.borrowed.value)
    value = rows.const + rows.ch @ hv + rows.cv @ v + rows.cb @ loan - rows.cz @ z
    p, tail = data.probabilities, 1.0 / (1.0 - data.alpha)
    for k, (j, idx) in enumerate(zip(cuts.pool, cuts.rows, strict=True)):
        assert value[k] == pytest.approx(tail * p[idx] @ terms[j, idx], rel=1e-10, abs=1e-15)
        assert rows.mass[k] == pytest.approx(tail * p[idx].sum(), rel=1e-12)
    assert rows.owner.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    # built round by round (the first cuts' matrices kept) equals built at once
    first = Cuts(pools).grown(cuts.pool[:1], cuts.rows[:1])
    pools.cut_rows(first)
    later = first.grown(cuts.pool[1:], cuts.rows[1:])
    assert later.built is not None and later.built.mass.size == 1
    again = pools.cut_rows(later)
    for got, want in ((again.ch, rows.ch), (again.cv, rows.cv), (again.cb, rows.cb), (again.cz, rows.cz),
                      (again.owner, rows.owner)):
        np.testing.assert_array_equal(got.toarray(), want.toarray())
    np.testing.assert_array_equal(again.const, rows.const)
    np.testing.assert_array_equal(again.mass, rows.mass)


def test_cuts_and_rows_reach_the_same_optimum_with_a_loan(books: Books) -> None:
    data = _borrowing_data(books, "es")
    loaded = load(books, desk(lend_collateral={"USDT": -1_000.0, "BTC": 0.3}))
    sc = scenarios(3, n=250)
    by_cuts = solve_generated(loaded, data, sc)
    by_rows = solve_generated(loaded, data, sc, cuts=False)
    assert isinstance(by_cuts.working_sets, Cuts)
    assert by_cuts.objective == pytest.approx(by_rows.objective, rel=1e-7)
    assert by_cuts.scenario_rows < by_rows.scenario_rows


def test_reachable_pieces_by_hand() -> None:
    # H(x) = x on [0, 10], then 0.5 x on (10, 30], flat at 20 above 30: pieces (1, 0), (0.5, 5), (0, 20)
    slot = Slot(0, 0, 1.0, np.array([0.0, 10.0]), np.array([10.0, 20.0]), np.array([1.0, 0.5]), 0.0, usd_tiers=True)
    assert [list(a) for a in reachable_pieces(slot, None)] == [[1.0, 0.5, 0.0], [0.0, 5.0, 20.0]]
    assert [list(a) for a in reachable_pieces(slot, 5.0)] == [[1.0], [0.0]]
    assert [list(a) for a in reachable_pieces(slot, 10.0)] == [[1.0], [0.0]]  # at the cap both agree
    assert [list(a) for a in reachable_pieces(slot, 15.0)] == [[1.0, 0.5], [0.0, 5.0]]
    assert [list(a) for a in reachable_pieces(slot, 40.0)] == [[1.0, 0.5, 0.0], [0.0, 5.0, 20.0]]


def test_revaluation_in_blocks_equals_one_block(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6, "isolated", 5_000.0)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 30_000.0}, positions)}, {"USDT": 40_000.0}))
    cb = compile_book(loaded)
    growth = scenarios(2, n=101).growth_of(cb.assets, ("USDT", "USDC"))
    whole = revaluation.position_scenarios(cb, growth)
    monkeypatch.setattr(revaluation, "POSITION_BLOCK_ELEMENTS", 101)  # one position per block
    blocked = revaluation.position_scenarios(cb, growth)
    np.testing.assert_array_equal(blocked.loss, whole.loss)
    np.testing.assert_array_equal(blocked.maintenance, whole.maintenance)


def test_times_isolated_equals_the_indexed_product(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6, pinned=True)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 30_000.0}, positions)}, {"USDT": 40_000.0}))
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), scenarios(1, n=50))
    x = make_decision(data, relax=True)
    assert x.free is not None and x.iso_affine is not None
    x.free.value = np.linspace(0.2, 0.9, x.free.size)
    matrix = np.random.default_rng(0).normal(size=(7, 2))
    for pos_idx in ([0, 2], [2, 1]):
        got = x.times_isolated(matrix, pos_idx).value
        np.testing.assert_allclose(got, matrix @ np.asarray(x.isolated.value)[pos_idx], rtol=1e-14)


def test_affine_fit_by_hand_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from optimizer import problem

    x = np.array([[0.9, 1.0, 1.1, 1.3], [1.0, 2.0, 3.0, 4.0]])  # two price factors over four scenarios
    values = np.array([2.0 + 3.0 * x[0], 5.0 - x[1], np.maximum(x[0], 1.05)])  # the third is not affine
    of_row = np.array([0, 1, 0])
    want = [[2.0, 3.0], [5.0, -1.0]]
    fit = problem.affine_fit(values, x, of_row)
    np.testing.assert_allclose(fit[:2], want, rtol=1e-12)
    assert np.isnan(fit[2]).all()
    monkeypatch.setattr(problem, "POSITION_BLOCK_ELEMENTS", 4)  # one row per block
    np.testing.assert_array_equal(problem.affine_fit(values, x, of_row), fit)


def test_scenario_matrices_above_the_limit_live_in_scratch_files(books: Books, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0}))
    sc = scenarios(3, n=1000)
    cb = compile_book(loaded)
    in_memory = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    monkeypatch.setattr(revaluation, "SCRATCH_BYTES", 1024)  # every (P, S) matrix above 1 KiB goes to a file
    mapped = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    assert isinstance(mapped.loss, np.memmap) and isinstance(mapped.mm_path, np.memmap)
    assert not isinstance(in_memory.loss, np.memmap)
    np.testing.assert_array_equal(mapped.loss, in_memory.loss)
    np.testing.assert_array_equal(mapped.mm_path, in_memory.mm_path)
    assert solve_generated(loaded, mapped, sc).objective == pytest.approx(
        solve_generated(loaded, in_memory, sc).objective, rel=1e-12)


def test_the_smallest_top_up_over_cuts_equals_the_full_one(books: Books) -> None:
    # a 5× buffer the desk cannot fund: the top-up over generated cuts is the one over every scenario
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 5_000.0}))
    sc = scenarios(3, n=1000)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(cross={"buffer": 5.0}), sc)
    from optimizer.solve import solve

    full = solve(data)
    by_cuts = solve_generated(loaded, data, sc)
    assert full.status == by_cuts.status == "infeasible"
    assert full.top_up.sum() > 1_000.0  # USD: a real shortfall
    np.testing.assert_allclose(by_cuts.top_up, full.top_up, rtol=1e-6, atol=1e-6 * data.scale)


def test_a_crawling_cut_loop_falls_back_to_working_sets(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    import optimizer.working_set as ws

    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0}))
    sc = scenarios(3, n=1000)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    by_cuts = solve_generated(loaded, data, sc)
    assert isinstance(by_cuts.working_sets, Cuts) and by_cuts.rounds >= 2
    monkeypatch.setattr(ws, "MAX_CUT_ROUNDS", 1)  # the first check already needs more cuts
    fallback = solve_generated(loaded, data, sc)
    assert isinstance(fallback.working_sets, dict)
    assert fallback.objective == pytest.approx(by_cuts.objective, rel=1e-7)


def test_a_full_scratch_disk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from risk_models.errors import ScratchSpaceError

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(revaluation, "SCRATCH_BYTES", 1024)
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(ScratchSpaceError, match=r"needs 0\.0 GiB of scratch space .*No space left.*TMPDIR"):
        revaluation.scenario_matrix(100, 1000)
    assert revaluation.scenario_matrix(10, 10).shape == (10, 10)  # small ones stay in memory


@SLOW
@given(data=st.data(), tiered=st.booleans(), measure=st.sampled_from(["es", "worst"]))
def test_the_numpy_face_equals_the_formulation_on_random_books(tmp_path_factory: pytest.TempPathFactory,
                                                               data: st.DataObject, tiered: bool,
                                                               measure: str) -> None:
    raw, pol = data.draw(random_books(tiered=tiered))
    pol = pol.model_copy(update={"risk_model": pol.risk_model.model_copy(update={"measure": measure})})
    loaded = load_optimizer(Books(tmp_path_factory.mktemp("lp")), raw, TIERED_RULES if tiered else RULES)
    cb = compile_book(loaded)
    problem = build_problem(loaded, cb, evaluate(cb), pol, scenarios(data.draw(st.integers(0, 50)), n=120))
    pools = linear_pools(problem)
    assert pools is not None  # these desks' settle asset is plain and their BTC stays in its first tier
    x = make_decision(problem, relax=True)
    prob, _, _, _ = _problem(problem, x)
    prob.solve(solver="HIGHS")
    if x.value.value is None:  # infeasible policy: nothing to compare
        return
    terms, equity = pools.values(x)
    want_terms, want_equity = evaluate_pools(problem, x)
    scale = max(1.0, float(np.abs(want_terms).max(initial=0.0)))
    np.testing.assert_allclose(equity, want_equity, rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(terms, want_terms, rtol=1e-9, atol=1e-12 * scale)


def test_each_round_of_generation_is_reported(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load_optimizer(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0}))
    sc = scenarios(3, n=1000)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    lines: list[str] = []
    sol = solve_generated(loaded, data, sc, on_round=lines.append)
    # one line per check: the MILP rounds, then the fixed-mode LP; the last of each says every scenario is met
    assert lines[0].startswith("round 1: ") and "scenario cuts" in lines[0]
    assert sum(line.startswith("round ") for line in lines) == sol.rounds
    assert lines[-1] == "shadow prices: every scenario met"
    assert f"round {sol.rounds}: every scenario met" in lines
