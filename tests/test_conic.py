"""The delta-normal model (risk_models.delta_normal) and the conic path of the optimizer (optimizer.conic).

Hand cases: a BTC long's closed-form expected shortfall; a BTC short hedged by BTC collateral has no delta.  The
numpy face and the cone in the optimizer's variables agree on random allocations.  The outer approximation meets
brute-force enumeration of every cross/isolated assignment (each a Clarabel SOCP) within its reported gap, and an
infeasible policy gets a top-up that makes it feasible.
"""

from __future__ import annotations

import itertools
from typing import Any

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.conic import solve_conic
from optimizer.decision import make_decision
from optimizer.problem import build_problem
from optimizer.run import Infeasible, optimize
from optimizer.solve import _problem
from risk_models.compiled import compile_book
from risk_models.delta_normal import NormalModel, bucket_deltas, normal_requirement
from risk_models.errors import RiskModelError
from risk_models.measures import normal_es_factor
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from risk_models.venue_margin import evaluate
from tests.conftest import Books
from tests.test_optimizer import book, load, pos

VOL = {"BTC": 0.04, "ETH": 0.05, "DOGE": 0.30}
CORR_BTC_ETH = 0.9


def normal_set(vol: dict[str, float] = VOL, alpha: float = 0.99) -> ScenarioSet:
    """A one-scenario set carrying the covariance (the closed form needs no draws)."""
    assets = tuple(vol)
    s = np.array([vol[a] for a in assets])
    corr = np.eye(len(assets))
    if "BTC" in vol and "ETH" in vol:
        i, j = assets.index("BTC"), assets.index("ETH")
        corr[i, j] = corr[j, i] = CORR_BTC_ETH
    cov = corr * np.outer(s, s)
    model = NormalModel(assets, cov, alpha, 1)
    return ScenarioSet(assets, np.zeros((1, len(assets))), ("no move",), "parametric",
                       meta={"normal": model, "method": "delta_normal"})


def policy(**overrides: Any) -> Policy:
    raw: dict[str, Any] = {"version": 1, "risk_model": {"kind": "parametric", "method": "delta_normal"},
                           "cross": {"buffer": 1.5}, "isolated": {"liquidation_distance": 0.25},
                           "yields": {"USDT": 0.05, "BTC": 0.02}, "transfer_cost_bps": 1.0}
    raw.update(overrides)
    return Policy.model_validate(raw)


def test_a_btc_long_needs_its_closed_form_expected_shortfall(books: Books) -> None:
    # 2 BTC long at 50,000 (entry = mark) in a USDT pool: δ_BTC = 100,000 USD; σ = 4 %/day;
    # ES99 = 2.6652142203 × 0.04 × 100,000 = 10,660.86; MM = 1 % × 100,000 = 1,000; k = 1.5 → R = 12,160.86
    loaded = load(books, book({"a": ({"USDT": 20_000.0}, [pos("BTCUSDT", 2.0)])}, {}))
    cb = compile_book(loaded)
    st_ = evaluate(cb)
    model = normal_set().meta["normal"]
    need, stressed = normal_requirement(cb, st_, model, 1.5)
    assert need[0] == pytest.approx(2.6652142203 * 0.04 * 100_000 + 1.5 * 1_000, rel=1e-9)
    assert stressed[0] == pytest.approx(20_000 - 2.6652142203 * 0.04 * 100_000, rel=1e-9)
    assert normal_es_factor(0.99) == pytest.approx(2.6652142203, rel=1e-10)


def test_btc_collateral_hedges_a_btc_short(books: Books) -> None:
    # 2 BTC short funded with 2 BTC of collateral (entry = mark): the pool's BTC delta is 0, so only k·MM is left
    loaded = load(books, book({"a": ({"BTC": 2.0}, [pos("BTCUSDT", -2.0)])}, {}))
    cb = compile_book(loaded)
    deltas = bucket_deltas(cb)
    assert deltas[0, cb.assets.index("BTC")] == pytest.approx(0.0, abs=1e-4)
    need, _ = normal_requirement(cb, evaluate(cb), normal_set().meta["normal"], 1.5)
    assert need[0] == pytest.approx(1.5 * 1_000, rel=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_cone_equals_the_numpy_requirement_on_random_allocations(tmp_path_factory: pytest.TempPathFactory,
                                                                     seed: int) -> None:
    rng = np.random.default_rng(seed)
    positions = [pos(s, float(q), entry=float(e)) for s, q, e in
                 (("BTCUSDT", rng.uniform(-3, 3), rng.uniform(40_000, 60_000)),
                  ("ETHUSDT", rng.uniform(-40, 40), rng.uniform(2_000, 3_000)),
                  ("DOGEUSDT", rng.uniform(-1e6, 1e6), rng.uniform(0.08, 0.12)))]
    collateral = {"USDT": float(rng.uniform(1e4, 2e5)), "BTC": float(rng.uniform(0, 3))}
    loaded = load(Books(tmp_path_factory.mktemp("cone")), book({"a": (collateral, positions)}, {"USDT": 1e5}))
    cb = compile_book(loaded)
    state = evaluate(cb)
    sc = normal_set()
    data = build_problem(loaded, cb, state, policy(), sc)
    x = make_decision(data, fixed_z=np.zeros(3))
    _problem(data, x)  # builds the cone: x.sigma[0] is Fᵀδ of the pool in the decision variables
    # at the current allocation: every slot's value now, one 100 % slice per slot (flat tiers)
    now = np.array([s.current for s in data.slots])
    x.value.value = now
    x.slices.value = now
    sigma = x.sigma[0]
    got = data.normal.multiplier * np.linalg.norm(sigma.value) * data.scale
    _, stressed = normal_requirement(cb, state, sc.meta["normal"], 1.5)
    assert got == pytest.approx(state.equity[0] - stressed[0], rel=1e-6, abs=1e-6)


def test_outer_approximation_meets_brute_force_enumeration(books: Books) -> None:
    # BTC long / ETH short (90 % correlated) and a wild DOGE long: isolating DOGE is the cheap answer
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 200_000.0}))
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy(), normal_set())
    sol = solve_conic(data)
    assert sol.status in ("optimal", "optimal_within_gap")
    assert sol.mip_gap <= 1e-6 or sol.status == "optimal_within_gap"
    best = np.inf
    for bits in itertools.product((0.0, 1.0), repeat=3):
        x = make_decision(data, fixed_z=np.array(bits))
        prob, _, _, _ = _problem(data, x)
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-14, tol_gap_rel=1e-10, tol_feas=1e-10)
        if prob.status == "optimal":
            best = min(best, float(prob.value) * data.scale)
    assert sol.objective == pytest.approx(best, rel=max(10 * sol.mip_gap, 1e-6))
    order = [p.symbol for p in data.positions]
    assert sol.isolated[order.index("DOGEUSDT")] == 1.0


def test_the_recommendation_passes_the_numpy_recheck(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 200_000.0}))
    result = optimize(loaded, policy(), normal_set())
    assert result.document["solver"]["name"].startswith("HIGHS+CLARABEL")
    after = {a["account"]: a for a in result.document["after"]["accounts"]}["a"]
    assert after["equity"] >= after["net_portfolio_margin"] - 1e-6 * result.data.scale


def test_an_infeasible_cone_reports_a_sufficient_top_up(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0, pinned=True)]
    raw = book({"a": ({"USDT": 1_000.0}, positions)}, {"USDT": 1_000.0})
    with pytest.raises(Infeasible) as exc:
        optimize(load(books, raw), policy(), normal_set())
    top_up = sum(row["value"] for row in exc.value.document["top_up"])
    # the pool needs ES + k·MM = 10,660.86 + 1,500 = 12,160.86 and holds 2,000 USD
    assert top_up == pytest.approx(12_160.857 - 2_000, rel=1e-4)
    wallet = {"USDT": 1_000.0 + top_up * (1 + 1e-7)}
    result = optimize(load(books, {**raw, "wallet": wallet}), policy(), normal_set())
    assert result.document["status"] in ("optimal", "optimal_within_gap")


def test_a_folded_settle_asset_is_refused_with_a_remedy(books: Books) -> None:
    from tests.test_optimizer import FLAT, linear, rules_dict
    rules = rules_dict({"BTCUSDT": linear("BTC", FLAT)}, {"USDT": {"bid_rate": 0.99}})
    loaded = load(books, book({"a": ({"USDT": 50_000.0}, [pos("BTCUSDT", 1.0)])}, {}), rules)
    cb = compile_book(loaded)
    with pytest.raises(RiskModelError, match="monte_carlo"):
        build_problem(loaded, cb, evaluate(cb), policy(), normal_set())


def test_delta_normal_needs_a_parametric_es_model() -> None:
    with pytest.raises(ValueError, match="parametric"):
        Policy.model_validate({"version": 1, "risk_model": {"kind": "historical", "method": "delta_normal"}})
    with pytest.raises(ValueError, match="stress_scenarios"):
        Policy.model_validate({"version": 1, "risk_model": {"kind": "parametric", "method": "delta_normal"},
                               "stress_scenarios": [{"name": "x", "shocks": {"BTC": -0.2}}]})
    assert cp.installed_solvers().count("CLARABEL") == 1


def test_a_sweep_of_the_buffer_solves_each_point_afresh(books: Books) -> None:
    from optimizer.sweep import run_sweep, with_value
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 200_000.0}))
    rows = run_sweep(loaded, policy(), normal_set(), "buffer", [1.0, 3.0])
    for row in rows:
        fresh = optimize(loaded, with_value(policy(), "buffer", row["value"]), normal_set())
        assert row["objective_value"] == pytest.approx(fresh.document["objective_value"], rel=1e-9)
    assert rows[1]["objective_value"] >= rows[0]["objective_value"]


def test_delta_normal_contributions_sum_exactly_and_diversify(books: Books) -> None:
    from risk_models.delta_normal import normal_bucket_risks
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 30_000.0, "BTC": 0.5}, positions)}, {}))
    cb = compile_book(loaded)
    state = evaluate(cb)
    risk = normal_bucket_risks(cb, state, normal_set().meta["normal"], 1.5)[0]
    need, stressed = normal_requirement(cb, state, normal_set().meta["normal"], 1.5)
    assert risk.net_portfolio_margin == pytest.approx(need[0], rel=1e-12)
    assert risk.stressed_equity == pytest.approx(stressed[0], rel=1e-12)
    assert sum(risk.contributions.values()) == pytest.approx(need[0], rel=1e-9)
    # 90 % correlated BTC long / ETH short hedge each other: standalone margins add up to more
    assert risk.diversification_benefit > 0.2 * need[0]
    # the BTC collateral adds BTC delta: 0.5 BTC = 25,000 USD on top of the long's 100,000
    assert set(risk.contributions) == {"BTCUSDT", "ETHUSDT", "DOGEUSDT", "collateral:BTC"}
