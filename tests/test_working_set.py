"""Scenario constraint generation (optimizer.working_set): the same optimum as the full scenario set, exactly.

The full problem (one buffer row per scenario) and the generated one (working sets grown by the separation
oracle) are solved on the same data; their objectives and cross/isolated choices must agree.  The restricted
value at risk that drives the separation is checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.linear_pools import Cuts, linear_pools
from optimizer.problem import build_problem, restrict
from optimizer.recommendation import recommended_book
from optimizer.solve import solve
from optimizer.working_set import ScenarioOracle, _restricted_var, solve_generated, worth_it
from risk_models.compiled import compile_book
from risk_models.measures import expected_shortfall
from risk_models.venue_margin import evaluate
from tests.conftest import Books
from tests.test_optimizer import RULES, SLOW, TIERED_RULES, book, load, policy, pos, random_books, scenarios


def _both(loaded, pol, sc):
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), pol, sc)
    assert worth_it(data)
    return data, solve(data), solve_generated(loaded, data, sc)


def test_restricted_value_at_risk_by_hand() -> None:
    # three scenarios of probability 1 % each; the 98 % tail holds 2 %: reached at the second largest term
    assert _restricted_var(np.array([6.0, 10.0, 8.0]), np.full(3, 0.01), 0.98) == 8.0
    # less mass than the tail: the restricted problem is unbounded below
    assert _restricted_var(np.array([6.0, 10.0]), np.full(2, 0.001), 0.98) == -math.inf
    # the minimizer of t + Σ p (T − t)+ / (1 − α) over the subset
    terms, p, alpha = np.array([3.0, 9.0, 5.0, 7.0, 1.0]), np.full(5, 0.01), 0.97
    t = _restricted_var(terms, p, alpha)
    ru = [s + np.sum(p * np.maximum(terms - s, 0)) / (1 - alpha) for s in np.linspace(0, 10, 1001)]
    assert t + np.sum(p * np.maximum(terms - t, 0)) / (1 - alpha) == pytest.approx(min(ru), abs=1e-12)


@given(seed=st.integers(0, 10_000), keep=st.floats(0.05, 1.0))
def test_an_expected_shortfall_over_a_subset_is_a_lower_bound(seed: int, keep: float) -> None:
    rng = np.random.default_rng(seed)
    terms = rng.normal(0, 1, 400)
    p = np.full(400, 1 / 400)
    rows = np.sort(rng.choice(400, max(1, int(keep * 400)), replace=False))
    t = _restricted_var(terms[rows], p[rows], 0.99)
    restricted = t + np.sum(p[rows] * np.maximum(terms[rows] - t, 0)) / 0.01 if math.isfinite(t) else -math.inf
    assert restricted <= expected_shortfall(terms, p, 0.99) + 1e-12


def test_isolating_a_wild_position_moves_the_tail_and_needs_more_rounds(books: Books) -> None:
    # today the pool's tail is DOGE's (±60 % uniform); once DOGE is isolated the pool's tail is the BTC/ETH
    # pair's, which the first working set does not hold: the oracle must add it
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0}))
    sc = scenarios(3, n=1000)
    data, full, generated = _both(loaded, policy(), sc)
    assert generated.rounds >= 2
    assert generated.objective == pytest.approx(full.objective, rel=1e-7)
    np.testing.assert_array_equal(generated.isolated, full.isolated)
    assert generated.scenario_rows < sc.n_scenarios
    # and the working sets' optimum meets the full-set requirement of every pool
    oracle = ScenarioOracle(loaded, data, sc)
    pt = oracle.pool_terms(recommended_book(data, loaded.book, generated))
    need = expected_shortfall(pt.terms[0], sc.probabilities, 0.99)
    assert pt.equity[0] >= need - 1e-6 * data.scale


def test_restricting_to_every_scenario_changes_nothing(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0)]
    loaded = load(books, book({"a": ({"USDT": 30_000.0}, positions)}, {"USDT": 40_000.0}))
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), scenarios(1, n=300))
    same = restrict(data, np.arange(300))
    np.testing.assert_array_equal(same.loss, data.loss)
    np.testing.assert_array_equal(same.returns, data.returns)
    rows = np.array([5, 17, 250])
    sub = restrict(data, rows)
    np.testing.assert_array_equal(sub.probabilities, data.probabilities[rows])  # not renormalized
    np.testing.assert_array_equal(sub.mm_path, data.mm_path[:, rows])
    # one pool's own positions only: theirs gathered, the others left at zero
    own = restrict(data, rows, np.array([1]))
    np.testing.assert_array_equal(own.loss[1], data.loss[1, rows])
    np.testing.assert_array_equal(own.mm_path[1], data.mm_path[1, rows])
    assert not own.loss[0].any() and not own.mm_path[0].any()


@SLOW
@given(data=st.data(), tiered=st.booleans(), cuts=st.booleans(), measure=st.sampled_from(["es", "es", "worst"]))
def test_generated_optimum_equals_the_full_one_on_random_books(tmp_path_factory: pytest.TempPathFactory,
                                                               data: st.DataObject, tiered: bool, cuts: bool,
                                                               measure: str) -> None:
    # cuts: aggregated scenario cuts over linear pools (optimizer.linear_pools), else per-scenario rows
    raw, pol = data.draw(random_books(tiered=tiered))
    pol = pol.model_copy(update={"risk_model": pol.risk_model.model_copy(update={"measure": measure})})
    loaded = load(Books(tmp_path_factory.mktemp("ws")), raw, TIERED_RULES if tiered else RULES)
    sc = scenarios(data.draw(st.integers(0, 50)), n=600)
    cb = compile_book(loaded)
    problem = build_problem(loaded, cb, evaluate(cb), pol, sc)
    full = solve(problem)
    if full.status == "infeasible":
        assert solve_generated(loaded, problem, sc, cuts=cuts).status == "infeasible"
        return
    generated = solve_generated(loaded, problem, sc, cuts=cuts)
    assert isinstance(generated.working_sets, Cuts) == (cuts and linear_pools(problem) is not None)
    # equal up to the 1e-9 × locked-capital tie-break, which lies below the solvers' own tolerances
    assert generated.objective == pytest.approx(full.objective, rel=1e-6, abs=1e-9 * problem.scale)


def test_the_continuous_relaxation_is_generated_exactly_too(books: Books) -> None:
    # modes in [0, 1]: the separation evaluates the formulation itself, fractional modes included
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0}))
    sc = scenarios(3, n=1000)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    full = solve(data, relax=True)
    generated = solve_generated(loaded, data, sc, relax=True)
    assert generated.objective == pytest.approx(full.objective, rel=1e-6, abs=1e-9 * data.scale)
    np.testing.assert_allclose(generated.isolated, full.isolated, atol=1e-6)
    integral = solve_generated(loaded, data, sc)
    assert generated.objective <= integral.objective * (1 + 1e-9)  # a relaxation never costs more


def test_the_formulation_evaluates_to_the_risk_models_terms(books: Books) -> None:
    # the oracle's two faces: the formulation's expressions evaluated at a solution, and risk_models' revaluation
    from optimizer.decision import make_decision
    from optimizer.formulation import evaluate_pools
    from optimizer.solve import _problem
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0)]
    loaded = load(books, book({"a": ({"USDT": 30_000.0, "BTC": 0.2}, positions)}, {"USDT": 40_000.0}),
                  TIERED_RULES)
    sc = scenarios(4, n=300)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), sc)
    x = make_decision(data)
    prob, _, _, _ = _problem(data, x)
    prob.solve(solver="HIGHS")
    terms, equity = evaluate_pools(data, x)
    z = np.round(np.asarray(x.isolated.value, dtype=float))
    from optimizer.solve import Solution
    sol = Solution("optimal", 0.0, z, np.asarray(x.value.value) * data.scale, np.asarray(x.wallet.value) * data.scale,
                   np.asarray(x.inflow.value) * data.scale, np.asarray(x.outflow.value) * data.scale, {}, 0.0, 0.0)
    pt = ScenarioOracle(loaded, data, sc).pool_terms(recommended_book(data, loaded.book, sol))
    # the slice model may leave a better haircut slice under-filled where equity is not binding: today's equity
    # then counts less by some δ, and every term E_now − E_s + k·MM_s by the same δ; what each scenario leaves,
    # E_s − k·MM_s = equity − term, is the same in both faces, and today's equity is never over-counted
    left = (equity[:, None] - terms) * data.scale
    np.testing.assert_allclose(left, pt.equity[:, None] - pt.terms, rtol=1e-7, atol=1e-6 * data.scale)
    assert np.all(equity * data.scale <= pt.equity * (1 + 1e-9))
