"""Risk measures (risk_models.measures) and guard rails (risk_models.guard_rails): numpy against cvxpy, closed
forms, hand cases, coherence properties (hypothesis) and Euler attribution."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from risk_models.guard_rails import anti_procyclicality, emir_offset_floor, liquidity_addon, liquidity_addon_expr
from risk_models.measures import (
    RiskMeasure,
    cov_factor,
    delta_normal_es,
    delta_normal_es_expr,
    delta_normal_var,
    delta_normal_var_expr,
    expected_shortfall,
    expected_shortfall_expr,
    normal_es_factor,
    normal_quantile,
    tail_weights,
    value_at_risk,
    worst_case,
    worst_case_expr,
)

# cvxpy 1.9 warns while inferring bounds of A @ x (0 × inf); the forms here do not depend on those bounds
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_instance(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Losses (S,), probabilities (S,) (uniform or Dirichlet, some exact zeros) and a confidence level."""
    rng = np.random.default_rng(seed)
    s = int(rng.choice([1, 2, 7, 10, 50, 200]))
    losses = rng.normal(0.0, 10.0, s)
    if s > 5 and seed % 3 == 0:  # ties
        losses[: s // 3] = losses[s // 3]
    if seed % 2:
        p = np.full(s, 1.0 / s)
    else:
        p = rng.dirichlet(np.ones(s))
        p[rng.random(s) < 0.1] = 0.0
        p = p / p.sum() if p.sum() > 0 else np.full(s, 1.0 / s)
    alpha = float(rng.choice([0.0, 0.5, 0.9, 0.95, 0.975, 0.99, rng.uniform(0.0, 0.999)]))
    return losses, p, alpha


def ru_brute_force(losses: np.ndarray, p: np.ndarray, alpha: float) -> float:
    """min_t t + E[(L − t)+]/(1 − α): convex piecewise linear in t with kinks at the losses, so a minimum is at one."""
    return min(t + p @ np.maximum(losses - t, 0.0) / (1.0 - alpha) for t in losses)


# == numpy against cvxpy ============================================================================================

@pytest.mark.parametrize("seed", range(24))
def test_es_expression_minimized_equals_numpy(seed: int) -> None:
    losses, p, alpha = random_instance(seed)
    es = expected_shortfall(losses, p, alpha)
    expr, cons = expected_shortfall_expr(cp.Constant(losses), p, alpha)
    prob = cp.Problem(cp.Minimize(expr), cons)
    prob.solve(solver=cp.HIGHS)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(es, abs=1e-7)
    assert es == pytest.approx(ru_brute_force(losses, p, alpha), abs=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_es_expression_as_constraint(seed: int) -> None:
    losses, p, alpha = random_instance(seed)
    es = expected_shortfall(losses, p, alpha)

    def feasible(bound: float) -> bool:
        expr, cons = expected_shortfall_expr(losses, p, alpha)
        prob = cp.Problem(cp.Minimize(0), [*cons, expr <= bound])
        prob.solve(solver=cp.HIGHS)
        return prob.status == cp.OPTIMAL

    assert feasible(es + 1e-6)
    assert not feasible(es - 1e-3)


@pytest.mark.parametrize("seed", range(8))
def test_es_and_worst_of_affine_loss_with_cover(seed: int) -> None:
    """L = −R x for a decision x (pinned at x0), cover on part of the scenarios: minimized forms = numpy."""
    rng = np.random.default_rng(100 + seed)
    s, a = 40, 3
    returns = rng.normal(0.0, 0.05, (s, a))
    x0 = rng.normal(0.0, 1e4, a)
    cover = np.where(rng.random(s) < 0.2, 0.35, 1.0)
    p = rng.dirichlet(np.ones(s))
    x = cp.Variable(a)
    losses = -returns @ x0
    for measure in (RiskMeasure("es", 0.9), RiskMeasure("worst")):
        expr, cons = measure.expression(-returns @ x, p, cover)
        prob = cp.Problem(cp.Minimize(expr), [*cons, x == x0])
        prob.solve(solver=cp.HIGHS)
        assert prob.value == pytest.approx(measure.evaluate(losses, p, cover), abs=1e-7)
    assert worst_case_expr(cp.Constant(losses), cover).value == pytest.approx(worst_case(losses, cover))
    prob = cp.Problem(cp.Minimize(worst_case_expr(-returns @ x, cover)), [x == x0])
    prob.solve(solver=cp.HIGHS)
    assert prob.value == pytest.approx(worst_case(losses, cover), abs=1e-7)


def test_expressions_do_not_depend_on_cvxpy_bound_inference() -> None:
    """cvxpy 1.9 infers bounds [0, 0] for cp.multiply(const, A @ x) (A mixed-sign, x free) and hands them to
    HiGHS as bounds of the auxiliary variable of cp.max; the measures' epigraph forms must not be affected."""
    rng = np.random.default_rng(5)
    returns = rng.normal(0.0, 0.05, (30, 3))
    x0 = rng.normal(0.0, 1e4, 3)
    scale = np.full(30, 2.0)
    losses = -scale * (returns @ x0)
    p = np.full(30, 1 / 30)
    for measure in (RiskMeasure("worst"), RiskMeasure("es", 0.9)):
        x = cp.Variable(3)
        expr, cons = measure.expression(cp.multiply(scale, -returns @ x), p)
        prob = cp.Problem(cp.Minimize(expr), [*cons, x == x0])
        prob.solve(solver=cp.HIGHS)
        assert prob.value == pytest.approx(measure.evaluate(losses, p), abs=1e-7)


@pytest.mark.parametrize("seed", range(6))
def test_delta_normal_expressions_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    a = int(rng.integers(1, 6))
    m = rng.normal(size=(a, a + 2))
    cov = m @ m.T * 1e-4
    delta = cp.Parameter(a, value=rng.normal(0.0, 1e5, a))
    for alpha in (0.95, 0.99):
        for h in (1, 2, 10):
            assert delta_normal_var_expr(delta, cov, alpha, h).value == pytest.approx(
                delta_normal_var(delta.value, cov, alpha, h), rel=1e-12)
            assert delta_normal_es_expr(delta, cov, alpha, h).value == pytest.approx(
                delta_normal_es(delta.value, cov, alpha, h), rel=1e-12)
    assert delta_normal_es_expr(delta, cov, 0.99).is_convex()


# == closed forms ===================================================================================================

def test_normal_closed_forms() -> None:
    assert normal_quantile(0.99) == pytest.approx(2.3263478740, abs=1e-9)
    assert normal_es_factor(0.99) == pytest.approx(2.6652142203, abs=1e-9)
    assert normal_es_factor(0.975) == pytest.approx(2.3378027922, abs=1e-9)
    sigma = 1234.5
    assert delta_normal_var([sigma], [[1.0]], 0.99) == pytest.approx(2.3263478740 * sigma, abs=1e-9 * sigma)
    assert delta_normal_es([sigma], [[1.0]], 0.99) == pytest.approx(2.6652142203 * sigma, abs=1e-9 * sigma)
    assert delta_normal_es([sigma], [[1.0]], 0.975) == pytest.approx(2.3378027922 * sigma, abs=1e-9 * sigma)
    # horizon: square-root of time
    assert delta_normal_var([1.0], [[1.0]], 0.99, 4) == pytest.approx(2 * normal_quantile(0.99))


def test_scenario_es_converges_to_normal_closed_form() -> None:
    """ES of a fine quantile grid of N(0, 1) (equally likely) ≈ φ(z)/(1 − α)."""
    s = 200_000
    grid = norm.ppf((np.arange(s) + 0.5) / s)
    for alpha in (0.975, 0.99):
        assert expected_shortfall(grid, None, alpha) == pytest.approx(normal_es_factor(alpha), rel=1e-3)
        assert value_at_risk(grid, None, alpha) == pytest.approx(normal_quantile(alpha), rel=1e-3)


def test_uncorrelated_legs_add_in_quadrature() -> None:
    single = delta_normal_var([1.0], [[1.0]], 0.99)
    assert delta_normal_var([1.0, 1.0], np.eye(2), 0.99) == pytest.approx(np.sqrt(2) * single, rel=1e-12)
    assert delta_normal_es([1.0, 1.0], np.eye(2), 0.99, 2) == pytest.approx(
        np.sqrt(2) * delta_normal_es([1.0], [[1.0]], 0.99, 2), rel=1e-12)


def test_perfectly_correlated_opposite_positions_net_out() -> None:
    sigma = 0.04
    cov = sigma**2 * np.ones((2, 2))  # singular: correlation 1
    factor = cov_factor(cov)
    assert np.allclose(factor @ factor.T, cov, atol=1e-15)
    delta = np.array([1e6, -1e6])
    assert delta_normal_var(delta, cov, 0.99) == pytest.approx(0.0, abs=1e-6)
    assert delta_normal_es_expr(cp.Constant(delta), cov, 0.99).value == pytest.approx(0.0, abs=1e-6)
    # the same with joint scenarios: both assets move together
    rng = np.random.default_rng(7)
    r = rng.normal(0.0, sigma, 500)
    losses = -(np.column_stack([r, r]) @ delta)
    assert expected_shortfall(losses, None, 0.99) == pytest.approx(0.0, abs=1e-6)
    assert expected_shortfall(-r * delta[0], None, 0.99) > 50_000  # one leg alone is risky


def test_cov_factor_rejects_non_psd() -> None:
    with pytest.raises(ValueError, match="semidefinite"):
        cov_factor([[1.0, 2.0], [2.0, 1.0]])


# == hand cases =====================================================================================================

def test_hundred_uniform_losses() -> None:
    losses = np.arange(1.0, 101.0)
    assert expected_shortfall(losses, None, 0.99) == pytest.approx(100.0, abs=1e-12)
    assert expected_shortfall(losses, None, 0.95) == pytest.approx(98.0, abs=1e-12)  # mean of 96..100
    assert value_at_risk(losses, None, 0.95) == 95.0  # P(L <= 95) = 0.95 >= α: the smallest such loss
    assert value_at_risk(losses, None, 0.99) == 99.0
    assert worst_case(losses) == 100.0


def test_fractional_atom_by_hand() -> None:
    losses = np.arange(10.0, 0.0, -1.0)  # 10, 9, ..., 1, each with probability 0.1; order must not matter
    # α = 0.95: tail mass 0.05 < 0.1, so the whole tail lies inside the worst atom: VaR = 10 (P(L <= 9) = 0.9 <
    # 0.95, P(L <= 10) = 1), ES = 10 + E[(L − 10)+]/0.05 = 10, the loss of the worst scenario.
    assert value_at_risk(losses, None, 0.95) == 10.0
    assert expected_shortfall(losses, None, 0.95) == pytest.approx(10.0, abs=1e-12)
    # α = 0.85: tail mass 0.15 = the worst atom (0.1) + half of the second (0.05):
    # ES = (0.1 × 10 + 0.05 × 9) / 0.15 = 29/3 = 9.666…; VaR = 9, RU: 9 + 0.1 × (10 − 9)/0.15 = 9.666….
    # The naive tail average of the worst ⌈1.5⌉ = 2 losses would give 9.5.
    assert value_at_risk(losses, None, 0.85) == 9.0
    assert expected_shortfall(losses, None, 0.85) == pytest.approx(29.0 / 3.0, abs=1e-12)
    q = tail_weights(losses, None, 0.85)
    assert q[:2] == pytest.approx([2 / 3, 1 / 3], abs=1e-12) and np.all(q[2:] == 0)


def test_weighted_scenarios_by_hand() -> None:
    # L 0 / 10 / 20 with p 0.5 / 0.3 / 0.2, α = 0.75: tail mass 0.25 = 0.2 at 20 + 0.05 at 10
    # ES = (0.2 × 20 + 0.05 × 10) / 0.25 = 18; VaR = 10 (P(L <= 10) = 0.8 >= 0.75)
    losses, p = np.array([0.0, 10.0, 20.0]), np.array([0.5, 0.3, 0.2])
    assert value_at_risk(losses, p, 0.75) == 10.0
    assert expected_shortfall(losses, p, 0.75) == pytest.approx(18.0, abs=1e-12)
    assert tail_weights(losses, p, 0.75) == pytest.approx([0.0, 0.2, 0.8], abs=1e-12)
    assert expected_shortfall(losses, p, 0.0) == pytest.approx(p @ losses)  # α = 0: the mean


def test_zero_probability_scenarios() -> None:
    """A zero-probability scenario counts for the worst case only."""
    losses, p = np.array([1.0, 1000.0, 2.0]), np.array([0.5, 0.0, 0.5])
    assert expected_shortfall(losses, p, 0.9) == pytest.approx(2.0)
    assert value_at_risk(losses, p, 0.9) == 2.0
    assert worst_case(losses) == 1000.0


# == attribution ====================================================================================================

@pytest.mark.parametrize("seed", range(12))
def test_tail_weights_and_contributions(seed: int) -> None:
    losses, p, alpha = random_instance(seed)
    q = tail_weights(losses, p, alpha)
    assert np.all(q >= 0) and q.sum() == pytest.approx(1.0, abs=1e-12)
    assert q @ losses == pytest.approx(expected_shortfall(losses, p, alpha), abs=1e-9)
    assert np.all(q <= p / (1 - alpha) + 1e-12)  # the dual's box constraint
    rng = np.random.default_rng(seed)
    split = rng.normal(size=(losses.size, 4))
    items = np.column_stack([split[:, :3], losses - split[:, :3].sum(axis=1)])  # items sum to L
    cover = np.where(rng.random(losses.size) < 0.3, 0.35, 1.0)
    for measure in (RiskMeasure("es", alpha), RiskMeasure("worst"), RiskMeasure("var", alpha)):
        contrib = measure.contributions(items, p, cover)
        assert contrib.sum() == pytest.approx(measure.evaluate(losses, p, cover), abs=1e-9)


# == properties (hypothesis) ========================================================================================

@st.composite
def distributions(draw: st.DrawFn, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_size, 30))
    losses = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)))
    if draw(st.booleans()):
        p = np.full(n, 1.0 / n)
    else:
        raw = np.array(draw(st.lists(st.floats(1e-3, 1.0), min_size=n, max_size=n)))
        p = raw / raw.sum()
    return losses, p


alphas = st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.975, 0.99]) | st.floats(0.0, 0.999)


@PROPS
@given(distributions(), alphas)
def test_es_at_least_var(dist: tuple[np.ndarray, np.ndarray], alpha: float) -> None:
    losses, p = dist
    es, var = expected_shortfall(losses, p, alpha), value_at_risk(losses, p, alpha)
    assert es >= var - 1e-9 * (1 + abs(var))
    assert es <= losses.max() + 1e-9 * (1 + abs(es))
    assert es == pytest.approx(ru_brute_force(losses, p, alpha), abs=1e-8 * (1 + np.abs(losses).max()))


@PROPS
@given(st.data(), alphas)
def test_es_subadditive(data: st.DataObject, alpha: float) -> None:
    l1, p = data.draw(distributions())
    l2 = np.array(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=l1.size, max_size=l1.size)))
    tol = 1e-9 * (1 + np.abs(l1).max() + np.abs(l2).max())
    assert expected_shortfall(l1 + l2, p, alpha) <= expected_shortfall(l1, p, alpha) + expected_shortfall(
        l2, p, alpha) + tol


@PROPS
@given(st.data(), alphas)
def test_scenario_order_does_not_matter(data: st.DataObject, alpha: float) -> None:
    losses, p = data.draw(distributions())
    perm = np.array(data.draw(st.permutations(range(losses.size))))
    tol = 1e-9 * (1 + np.abs(losses).max())
    assert expected_shortfall(losses[perm], p[perm], alpha) == pytest.approx(
        expected_shortfall(losses, p, alpha), abs=tol)
    assert value_at_risk(losses[perm], p[perm], alpha) == value_at_risk(losses, p, alpha)
    assert tail_weights(losses[perm], p[perm], alpha) == pytest.approx(tail_weights(losses, p, alpha)[perm], abs=1e-12)


# == the RiskMeasure object and input checks ========================================================================

def test_risk_measure_dispatch_and_errors() -> None:
    losses = np.arange(1.0, 101.0)
    cover = np.ones(100)
    cover[-1] = 0.35  # the worst scenario counts at 35 %: 35
    assert RiskMeasure("worst").evaluate(losses, None, cover) == 99.0
    assert RiskMeasure("es", 0.99).evaluate(losses, None, cover) == pytest.approx(99.0)
    assert RiskMeasure("var", 0.95).evaluate(losses) == 95.0
    with pytest.raises(ValueError, match="not convex"):
        RiskMeasure("var", 0.99).expression(cp.Constant(losses))
    with pytest.raises(ValueError, match="unknown"):
        RiskMeasure("cvar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        RiskMeasure("es", 1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        expected_shortfall(losses, np.full(100, 0.02), 0.9)
    with pytest.raises(ValueError, match="finite"):
        worst_case([1.0, np.nan])


# == guard rails ====================================================================================================

def test_emir_offset_floor() -> None:
    assert emir_offset_floor(1000.0, 400.0) == pytest.approx(520.0)
    assert emir_offset_floor(1000.0, 950.0) == pytest.approx(960.0)
    assert emir_offset_floor(1000.0, 1200.0) == 1200.0  # no diversification: the combined margin stands
    assert emir_offset_floor(1000.0, 400.0, max_offset=1.0) == 400.0
    assert np.allclose(emir_offset_floor(np.array([1000.0, 500.0]), np.array([400.0, 100.0])), [520.0, 180.0])


def test_anti_procyclicality_options() -> None:
    # (a) 25 % buffer
    assert anti_procyclicality(1000.0) == pytest.approx(1250.0)
    # (c) stressed / 10-year look-back floor, no buffer
    assert anti_procyclicality(1000.0, stressed_margin=1400.0, buffer=0.0) == 1400.0
    assert anti_procyclicality(1000.0, stressed_margin=800.0, buffer=0.0) == 1000.0
    # both: the larger
    assert anti_procyclicality(1000.0, stressed_margin=1100.0) == pytest.approx(1250.0)
    assert anti_procyclicality(1000.0, stressed_margin=1300.0) == 1300.0


def test_liquidity_addon_numpy_equals_cvxpy() -> None:
    rng = np.random.default_rng(3)
    q = rng.normal(0.0, 1e6, 8)
    adv = rng.uniform(1e6, 1e9, 8)
    k = rng.uniform(0.0, 0.5, 8)
    expected = k * np.abs(q) ** 1.5 / np.sqrt(adv)
    assert np.allclose(liquidity_addon(q, adv, k), expected, rtol=1e-12)
    qp = cp.Parameter(8, value=q)
    expr = liquidity_addon_expr(qp, adv, k)
    assert expr.is_convex()
    assert np.allclose(expr.value, expected, rtol=1e-10)
    assert liquidity_addon(1e6, 1e6, 0.1) == pytest.approx(0.1 * 1e6)  # |q| = ADV: coefficient × |q|
    # a solve: minimize k|q|^1.5/√ADV − a q  →  q* = (a √ADV / (1.5 k))²
    a, kk, vol = 0.01, 0.2, 1e8
    x = cp.Variable()
    prob = cp.Problem(cp.Minimize(liquidity_addon_expr(x, vol, kk) - a * x))
    prob.solve(solver=cp.CLARABEL)
    q_star = (a * np.sqrt(vol) / (1.5 * kk)) ** 2
    assert prob.value == pytest.approx(-a * q_star / 3.0, rel=1e-4)  # interior-point tolerance; q is flat to ~1 %
    assert x.value == pytest.approx(q_star, rel=2e-2)
