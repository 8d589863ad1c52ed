"""The optimizer (optimizer.run.optimize): optimality against brute force, conservation and eligibility, never
worse than the current allocation, isolation and right-way collateral choices, shadow prices against finite
differences, infeasibility and its top-up, and scale invariance.

Every test builds its own small book, rules and hand-made scenario set, so each number below can be reasoned
about from the inputs alone; only the last one (a smoke test) uses the embedded price history.
"""

from __future__ import annotations

import itertools
from typing import Any

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from optimizer.decision import make_decision
from optimizer.formulation import build_terms, objective
from optimizer.problem import ProblemData
from optimizer.recheck import recheck, unit_totals
from optimizer.run import Infeasible, Result, optimize
from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from tests.conftest import Books, linear, rules_dict

FLAT = [{"cap": None, "mmr": 0.01, "max_leverage": 50}]
PRICES = {"BTC": 50_000.0, "ETH": 2_500.0, "DOGE": 0.1, "USDT": 1.0}
RULES = rules_dict({"BTCUSDT": linear("BTC", FLAT), "ETHUSDT": linear("ETH", FLAT), "DOGEUSDT": linear("DOGE", FLAT)},
                   {"USDT": {}, "BTC": {}})
TIERED_RULES = rules_dict(
    {"BTCUSDT": linear("BTC", [{"cap": 200_000, "mmr": 0.005, "max_leverage": 100},
                               {"cap": None, "mmr": 0.01, "max_leverage": 50}]),
     "ETHUSDT": linear("ETH", FLAT), "DOGEUSDT": linear("DOGE", FLAT)},
    {"USDT": {}, "BTC": {"tiers": [{"cap": 50_000, "ratio": 0.97}, {"cap": None, "ratio": 0.9}]}})
ACCEPTED = {"USDT", "BTC"}  # ETH and DOGE are never accepted as collateral: they may only sit in the wallet
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# == helpers ======================================================================================================

def scenarios(seed: int = 0, n: int = 200, doge_range: float = 0.6) -> ScenarioSet:
    """BTC ~ N(0, 4 %); ETH moves with BTC (small idiosyncratic noise); DOGE independent and wild (uniform ±range)."""
    rng = np.random.default_rng(seed)
    btc = rng.normal(0.0, 0.04, n)
    eth = btc + rng.normal(0.0, 0.003, n)
    doge = rng.uniform(-doge_range, doge_range, n)
    r = np.clip(np.stack([btc, eth, doge], axis=1), -0.95, None)
    return ScenarioSet(("BTC", "ETH", "DOGE"), r, tuple(f"s{i}" for i in range(n)), "test")


def policy(**overrides: Any) -> Policy:
    raw: dict[str, Any] = {"version": 1, "cross": {"buffer": 1.5}, "isolated": {"liquidation_distance": 0.25},
                           "yields": {"USDT": 0.05, "BTC": 0.02}, "transfer_cost_bps": 1.0}
    raw.update(overrides)
    return Policy.model_validate(raw)


def pos(symbol: str, qty: float, mode: str = "cross", margin: float | None = None, pinned: bool = False,
        entry: float | None = None, prices: dict[str, float] = PRICES) -> dict[str, Any]:
    base = symbol.removesuffix("USDT")
    out: dict[str, Any] = {"symbol": symbol, "qty": float(qty),
                           "entry_price": float(entry) if entry is not None else prices[base] / prices["USDT"],
                           "margin_mode": mode, "pinned": pinned}
    if mode == "isolated":
        out["isolated_margin"] = None if margin is None else float(margin)
    return out


def book(accounts: dict[str, tuple[dict[str, float], list[dict[str, Any]]]], wallet: dict[str, float],
         prices: dict[str, float] = PRICES) -> dict[str, Any]:
    """One venue ``v`` (rules r.yaml) with accounts {id: (collateral, positions)}."""
    return {"version": 1, "prices": dict(prices), "wallet": dict(wallet),
            "venues": {"v": {"rules": "r.yaml", "accounts": {
                a: {"collateral": dict(c), "positions": list(p)} for a, (c, p) in accounts.items()}}}}


def load(books: Books, raw: dict[str, Any], rules: dict[str, Any] = RULES) -> LoadedBook:
    return books.load(raw, {"r.yaml": rules})


def lp_value(data: ProblemData, z: np.ndarray) -> float | None:
    """Objective (USD) of the LP with every margin mode fixed at ``z``; None when that assignment is infeasible."""
    x = make_decision(data, fixed_z=z)
    terms = build_terms(data, x)
    obj, _ = objective(data, x)
    prob = cp.Problem(cp.Minimize(obj), [c for t in terms for c in t.constraints])
    prob.solve(solver="HIGHS")
    if prob.status != "optimal":
        assert prob.status in ("infeasible", "infeasible_or_unbounded"), prob.status
        return None
    return float(prob.value) * data.scale


def cross_collateral_usd(result: Result, account: str = "a") -> dict[str, float]:
    b = result.book
    coll = b.venues["v"].accounts[account].collateral
    return {a: v * b.prices[a] for a, v in coll.items()}


def modes(result: Result, account: str = "a") -> dict[str, str]:
    return {p.symbol: p.margin_mode for p in result.book.venues["v"].accounts[account].positions}


# == 1. MILP optimum = best of a brute-force enumeration of the margin modes ======================================

def _random_small_book(seed: int) -> tuple[dict[str, Any], Policy]:
    """2–4 free positions, some isolated now, one on the wild DOGE; with fewer than 4, a pinned isolated DOGE short
    in a second account (a fixed position the enumeration must keep as it is)."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 5))
    pool = [("BTCUSDT", 1.0), ("ETHUSDT", 20.0), ("DOGEUSDT", 1e6)]  # ~50k / 50k / 100k USD per unit size
    positions = []
    accounts: dict[str, tuple[dict[str, float], list[dict[str, Any]]]] = {}
    for i in range(n):
        symbol, unit = pool[i % 3]
        qty = float(unit * rng.uniform(0.3, 2.0) * rng.choice([-1.0, 1.0]))
        mode = "isolated" if rng.random() < 0.3 else "cross"
        margin = float(abs(qty) * PRICES[symbol[:-4]] * 0.5) if mode == "isolated" else None
        entry = PRICES[symbol[:-4]] * float(rng.uniform(0.9, 1.1))
        positions.append(pos(symbol, qty, mode, margin, entry=entry))
    # a fourth position needs a second account (one symbol per account)
    accounts["a"] = ({"USDT": float(rng.uniform(5e3, 4e4))}, positions[:3])
    if n == 4:
        accounts["b"] = ({"USDT": 1e4}, positions[3:])
    else:
        accounts["b"] = ({"USDT": 1e3}, [pos("DOGEUSDT", -2e5, "isolated", 15_000.0, pinned=True)])
    wallet = {"USDT": float(rng.uniform(1e5, 3e5)), "BTC": float(rng.uniform(0.0, 2.0))}
    pol = policy(cross={"buffer": float(rng.choice([1.0, 1.5, 2.0]))},
                 isolated={"liquidation_distance": float(rng.uniform(0.1, 0.4))},
                 yields={"USDT": 0.05, "BTC": float(rng.uniform(0.0, 0.06))})
    return book(accounts, wallet), pol


@pytest.mark.parametrize("seed", range(6))
def test_milp_optimum_matches_brute_force_enumeration(books: Books, seed: int) -> None:
    raw, pol = _random_small_book(seed)
    sc = scenarios(seed)
    result = optimize(load(books, raw), pol, sc)
    data, sol = result.data, result.solution
    assert sol.status == "optimal"
    free = [i for i, p in enumerate(data.positions) if not p.fixed]
    assert 2 <= len(free) <= 4
    assert all(sol.isolated[i] == 1 for i, p in enumerate(data.positions) if p.fixed)  # the pinned one stays
    base = np.array([1.0 if p.isolated_now else 0.0 for p in data.positions])
    enumerated: dict[tuple[int, ...], float] = {}
    for bits in itertools.product((0, 1), repeat=len(free)):
        z = base.copy()
        z[free] = bits
        value = lp_value(data, z)
        if value is not None:
            enumerated[bits] = value
    assert enumerated, "some assignment must be feasible (the MILP found one)"
    best = min(enumerated.values())
    assert sol.objective == pytest.approx(best, rel=1e-6, abs=1e-9 * data.scale)
    chosen = tuple(int(v) for v in sol.isolated[free])
    assert chosen in enumerated
    assert enumerated[chosen] == pytest.approx(best, rel=1e-6, abs=1e-9 * data.scale)
    assert result.document["objective_value"] == pytest.approx(sol.objective, rel=1e-12)


# == 2. conservation and eligibility on random books ==============================================================

@st.composite
def random_books(draw: st.DrawFn, tiered: bool) -> tuple[dict[str, Any], Policy]:
    """Random books; with tiered BTC haircuts, BTC holdings stay under the first cap even after a +25 % move (see
    test_tiered_collateral_is_repriced_exactly_in_up_moves for what goes wrong above it)."""
    btc_max = (0.25, 0.25) if tiered else (3.0, 5.0)  # (per cross pool, wallet): 0.75 BTC ≤ 37.5k USD in all
    accounts = {}
    for account in draw(st.sampled_from([["a"], ["a", "b"]])):
        symbols = draw(st.lists(st.sampled_from(["BTCUSDT", "ETHUSDT", "DOGEUSDT"]), min_size=1, max_size=3,
                                unique=True))
        positions = []
        for symbol in symbols:
            base = symbol[:-4]
            notional = draw(st.floats(1e3, 2e5))
            qty = notional / PRICES[base] * draw(st.sampled_from([-1.0, 1.0]))
            mode = draw(st.sampled_from(["cross", "isolated"]))
            margin = notional * draw(st.floats(0.0, 0.6)) if mode == "isolated" else None
            entry = PRICES[base] * draw(st.floats(0.85, 1.15))
            positions.append(pos(symbol, qty, mode, margin, pinned=draw(st.booleans()), entry=entry))
        collateral = {"USDT": draw(st.floats(0.0, 1e5))}
        if draw(st.booleans()):
            collateral["BTC"] = draw(st.floats(0.0, btc_max[0]))
        accounts[account] = (collateral, positions)
    wallet = {"USDT": draw(st.floats(1e6, 3e6)), "BTC": draw(st.floats(0.0, btc_max[1])),
              "ETH": draw(st.floats(0.0, 50.0))}
    pol = policy(cross={"buffer": draw(st.sampled_from([0.0, 1.0, 1.5, 3.0]))},
                 isolated={"liquidation_distance": draw(st.floats(0.0, 0.5))},
                 yields={"USDT": draw(st.floats(0.0, 0.1)), "BTC": draw(st.floats(0.0, 0.1)), "ETH": 0.03},
                 reserve={"USDT": draw(st.sampled_from([0.0, 1e5]))},
                 concentration=draw(st.sampled_from([{}, {"BTC": 0.5}])))
    return book(accounts, wallet), pol


@SLOW
@given(data=st.data(), tiered=st.booleans(), seed=st.integers(0, 50))
def test_conservation_and_eligibility_on_random_books(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                                      tiered: bool, seed: int) -> None:
    raw, pol = data.draw(random_books(tiered))
    loaded = load(Books(tmp_path_factory.mktemp("opt")), raw, TIERED_RULES if tiered else RULES)
    sc = scenarios(seed, n=100)
    result = optimize(loaded, pol, sc)  # recheck runs inside: it raises on any violation
    assert result.document["status"] == "optimal"
    after = result.book
    # conservation: every asset's total units, in the input book and the recommended one
    before_units, after_units = unit_totals(loaded, loaded.book), unit_totals(loaded, after)
    assert set(after_units) <= set(before_units)
    for asset, units in before_units.items():
        assert after_units.get(asset, 0.0) == pytest.approx(units, rel=1e-9, abs=1e-12), asset
    # ETH is accepted nowhere: all of it stays in the wallet
    assert after.wallet.get("ETH", 0.0) == pytest.approx(raw["wallet"]["ETH"], rel=1e-9, abs=1e-12)
    rules = loaded.rules["v"].rules
    for account_id, account in after.venues["v"].accounts.items():
        # cross pools hold only accepted assets, never negative balances (no borrowing in these policies)
        assert set(account.collateral) <= ACCEPTED, account.collateral
        assert all(rules.collateral_rule(a) is not None for a in account.collateral)
        assert all(v >= 0 for v in account.collateral.values())
        before_positions = {p.symbol: p for p in loaded.book.venues["v"].accounts[account_id].positions}
        for p in account.positions:
            if before_positions[p.symbol].pinned:
                assert p.margin_mode == before_positions[p.symbol].margin_mode
            if p.margin_mode == "cross":
                assert p.isolated_margin is None
    assert all(v >= 0 for v in after.wallet.values())
    # isolated buckets hold only their settle asset: every allocation to an isolated bucket is in USDT, and its
    # amount is the position's isolated_margin in the recommended book
    problem = result.data
    for slot in problem.slots:
        bucket = problem.buckets[slot.bucket]
        if bucket.position is None:
            assert problem.assets[slot.asset] in ACCEPTED
            continue
        spec = next(p for p in problem.positions if p.index == bucket.position)
        assert slot.asset == spec.settle and problem.assets[slot.asset] == "USDT"
    for row in result.document["allocations"]:
        if "/isolated/" in row["bucket"]:
            assert row["asset"] == "USDT"
            symbol = row["bucket"].rsplit("/", 1)[1]
            account_id = row["bucket"].split("/")[1]
            held = next(p for p in after.venues["v"].accounts[account_id].positions if p.symbol == symbol)
            assert held.margin_mode == "isolated"
            assert held.isolated_margin == pytest.approx(row["amount"], rel=1e-9)
    pools = after.venues["v"].accounts.values()
    event(f"isolated after: {sum(p.margin_mode == 'isolated' for a in pools for p in a.positions)}")
    event(f"mode changes: {len(result.document['margin_modes'])}")
    event(f"BTC posted cross: {any('BTC' in a.collateral for a in pools)}")
    # the reserve is kept
    assert after.wallet.get("USDT", 0.0) >= pol.reserve.get("USDT", 0.0) * (1 - 1e-9)


def test_tiered_collateral_is_repriced_exactly_in_up_moves(books: Books) -> None:
    # A 20 BTC short backed only by BTC (tiers: 97 % up to 50k USD, 90 % above), BTC moves −10 % … +10 %, worst
    # case, buffer 1.  Repricing the haircut value linearly, (1 + r)·H(v), would credit the +10 % scenario's
    # collateral gain at the pool's average ratio: 0.1 × 50,000 × (0.97 − 0.90) = 350 USD too much, and the
    # recommendation would fail the exact re-check by exactly that.  USD-capped tiers are repriced exactly
    # (the hypograph of H((1 + r)·v)), so it passes.
    rules = rules_dict({"BTCUSDT": linear("BTC", FLAT)},
                       {"USDT": {}, "BTC": {"tiers": [{"cap": 50_000, "ratio": 0.97}, {"cap": None, "ratio": 0.9}]}})
    moves = np.linspace(-0.1, 0.1, 21)
    sc = ScenarioSet(("BTC",), moves[:, None], tuple(f"s{i}" for i in range(21)), "test")
    raw = {"version": 1, "prices": {"BTC": 50_000.0, "USDT": 1.0}, "wallet": {"BTC": 30.0},
           "venues": {"v": {"rules": "r.yaml", "accounts": {"a": {"collateral": {}, "positions": [
               {"symbol": "BTCUSDT", "qty": -20.0, "entry_price": 50_000.0}]}}}}}
    pol = Policy.model_validate({"version": 1, "cross": {"buffer": 1.0}, "risk_model": {"measure": "worst"}})
    result = optimize(load(books, raw, rules), pol, sc)
    assert result.document["status"] == "optimal"


# == 3. never worse than the current allocation when that one is feasible =========================================

@SLOW
@given(seed=st.integers(0, 10_000), btc_yield=st.floats(0.0, 0.1), transfer_bps=st.sampled_from([0.0, 1.0, 25.0]))
def test_recommendation_is_never_worse_than_a_feasible_current_allocation(
        tmp_path_factory: pytest.TempPathFactory, seed: int, btc_yield: float, transfer_bps: float) -> None:
    rng = np.random.default_rng(seed)
    notional = rng.uniform(1e4, 1e5, 3)
    positions = [pos("BTCUSDT", notional[0] / PRICES["BTC"] * rng.choice([-1, 1])),
                 pos("ETHUSDT", notional[1] / PRICES["ETH"] * rng.choice([-1, 1])),
                 # isolated DOGE with ample margin: farther from liquidation than the policy asks
                 pos("DOGEUSDT", notional[2] / PRICES["DOGE"] * rng.choice([-1, 1]), "isolated", 0.6 * notional[2])]
    # the cross pool holds more than the two cross positions could ever lose in these scenarios
    collateral = {"USDT": float(2.5 * (notional[0] + notional[1]) * rng.uniform(0.5, 1.0)),
                  "BTC": float(rng.uniform(0.0, 2.0))}
    raw = book({"a": (collateral, positions)}, {"USDT": float(rng.uniform(0, 1e5)), "BTC": float(rng.uniform(0, 1))})
    pol = policy(yields={"USDT": 0.05, "BTC": btc_yield}, transfer_cost_bps=transfer_bps)
    loaded = load(Books(tmp_path_factory.mktemp("opt")), raw)
    sc = scenarios(seed % 7)
    # precondition: the current allocation meets the whole policy (the independent exact re-check)
    recheck(loaded, loaded.book, pol, sc, 1.0)
    result = optimize(loaded, pol, sc)
    doc = result.document
    locked = doc["before"]["locked"]
    # objective_value carries the 1e-9 × locked tie-break on top of carry and transfer costs
    assert doc["objective_value"] <= doc["objective_value_before"] + 2e-9 * locked + 1e-7 * result.data.scale
    assert doc["objective_value"] >= 0.0


# == 4. a book that only isolation can save =======================================================================

def test_isolation_saves_a_wild_position_next_to_a_hedged_pair(books: Books) -> None:
    # BTC long / ETH short, ETH tracking BTC: the pair nets out in a cross pool.  DOGE: ±60 % uniform moves,
    # independent.  Cross, DOGE needs its ES (~60 % of 100k) plus 1.5 × MM; isolated it needs only
    # (25 % + 1 % × 0.75) of its notional ≈ 25.75k.  Capital: 3k in the pool + 40k USDT in the wallet.
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    raw = book({"a": ({"USDT": 3_000.0}, positions)}, {"USDT": 40_000.0})
    loaded = load(books, raw)
    sc = scenarios(3)
    pol = policy()
    result = optimize(loaded, pol, sc)
    assert modes(result) == {"BTCUSDT": "cross", "ETHUSDT": "cross", "DOGEUSDT": "isolated"}
    doge = next(p for p in result.book.venues["v"].accounts["a"].positions if p.symbol == "DOGEUSDT")
    assert doge.isolated_margin == pytest.approx(0.25 * 1e5 + 0.01 * 0.75 * 1e5, rel=1e-6)
    changes = result.document["margin_modes"]
    assert changes == [{"venue": "v", "account": "a", "symbol": "DOGEUSDT", "before": "cross", "after": "isolated"}]
    # and it is *only* isolation: every assignment that keeps DOGE cross is infeasible, and isolating the pair
    # costs more than keeping it cross
    data = result.data
    order = [p.symbol for p in data.positions]
    for bits in itertools.product((0, 1), repeat=3):
        z = np.array(bits, dtype=float)
        value = lp_value(data, z)
        if z[order.index("DOGEUSDT")] == 0:
            assert value is None, bits
        elif bits != tuple(result.solution.isolated.astype(int)):
            assert value is None or value > result.solution.objective * (1 + 1e-6), bits
    # with ample capital DOGE could stay cross, but that locks far more: isolating it is still the choice
    rich = optimize(load(books, {**raw, "wallet": {"USDT": 400_000.0}}), pol, sc)
    assert modes(rich) == modes(result)
    all_cross = lp_value(rich.data, np.zeros(3))
    assert all_cross is not None and all_cross > 2 * rich.solution.objective


# == 5. right-way and wrong-way collateral ========================================================================

@pytest.mark.parametrize("btc_yield", [0.05, 0.03])
def test_a_btc_short_is_collateralized_with_btc(books: Books, btc_yield: float) -> None:
    # BTC collateral gains exactly when the short loses: it lowers the buffered requirement it backs
    raw = book({"a": ({"USDT": 60_000.0}, [pos("BTCUSDT", -2.0)])}, {"USDT": 200_000.0, "BTC": 5.0})
    pol = policy(yields={"USDT": 0.05, "BTC": btc_yield}, transfer_cost_bps=0.0)
    result = optimize(load(books, raw), pol, scenarios(5))
    coll = cross_collateral_usd(result)
    total = sum(coll.values())
    assert total > 0
    assert coll.get("BTC", 0.0) / total > 0.99, coll
    assert modes(result) == {"BTCUSDT": "cross"}
    # posting BTC needs less collateral than the same short backed by USDT alone
    usdt_only = optimize(load(books, book({"a": ({"USDT": 60_000.0}, [pos("BTCUSDT", -2.0)])},
                                         {"USDT": 200_000.0})), pol, scenarios(5))
    assert total < sum(cross_collateral_usd(usdt_only).values())


def test_a_btc_long_is_collateralized_with_usdt_when_yields_are_equal(books: Books) -> None:
    # BTC collateral loses exactly when the long loses (wrong-way risk): USDT is cheaper at equal yields
    raw = book({"a": ({"BTC": 1.2}, [pos("BTCUSDT", 2.0)])}, {"USDT": 200_000.0, "BTC": 5.0})
    pol = policy(yields={"USDT": 0.05, "BTC": 0.05}, transfer_cost_bps=0.0)
    result = optimize(load(books, raw), pol, scenarios(5))
    coll = cross_collateral_usd(result)
    total = sum(coll.values())
    assert total > 0
    assert coll.get("USDT", 0.0) / total > 0.99, coll
    transfers = {(t["from"], t["to"], t["asset"]) for t in result.document["transfers"]}
    assert ("v/a/cross", "wallet", "BTC") in transfers and ("wallet", "v/a/cross", "USDT") in transfers


# == 6. shadow price of the buffer = finite difference of the objective ==========================================

def _buffer_lp(data: ProblemData, z: np.ndarray, label: str, eps: float) -> tuple[float, float]:
    """Objective (scaled USD) of the fixed-mode LP whose buffer constraint of pool ``label`` is tightened by
    ``eps`` (scaled USD added to its right-hand side), and that constraint's dual."""
    x = make_decision(data, fixed_z=z)
    terms = build_terms(data, x)
    obj, _ = objective(data, x)
    (term,) = [t for t in terms if t.name == f"buffer {label}"]
    # ES epigraph: [u >= counted − t, equity >= t + π·u/(1 − α)]; cvxpy keeps `a >= b` as `b <= a`
    rhs, lhs = term.constraints[1].args
    target = rhs + eps <= lhs
    others = [c for t in terms for c in t.constraints if c is not term.constraints[1]]
    prob = cp.Problem(cp.Minimize(obj), [*others, target])
    prob.solve(solver="HIGHS")
    assert prob.status == "optimal"
    return float(prob.value), float(target.dual_value)


def test_buffer_shadow_price_matches_finite_differences(books: Books) -> None:
    # A BTC short backed by BTC (yield 2 %) and USDT (5 %), BTC capped at 60 % of the pool: the buffer binds,
    # and its price mixes both yields through the concentration limit, so it is not simply one asset's yield.
    raw = book({"a": ({"USDT": 20_000.0}, [pos("BTCUSDT", -3.0), pos("ETHUSDT", 30.0)])},
               {"USDT": 300_000.0, "BTC": 5.0})
    pol = policy(yields={"USDT": 0.05, "BTC": 0.02}, concentration={"BTC": 0.6}, transfer_cost_bps=1.0)
    result = optimize(load(books, raw), pol, scenarios(11))
    data, sol = result.data, result.solution
    label = "v/a/cross"
    binding = {b.name: b for b in sol.bindings}[f"buffer {label}"]
    assert binding.shadow_price > 0 and binding.slack == pytest.approx(0.0, abs=1e-9)
    doc_row = next(b for b in result.document["binding_constraints"] if b["name"] == f"buffer {label}")
    assert doc_row["shadow_price"] == pytest.approx(binding.shadow_price, rel=1e-12)
    # The LP is exactly piecewise linear in the right-hand side ε: on either side of a non-degenerate optimum the
    # one-sided differences are exact (not approximations), equal to each other and to the dual.  ε is 1e-5 of the
    # desk's capital: small enough to stay on one linear piece, large enough that HiGHS's 1e-7 tolerances vanish.
    z = sol.isolated
    base, dual = _buffer_lp(data, z, label, 0.0)
    assert base * data.scale == pytest.approx(sol.objective, rel=1e-9)
    eps = 1e-5
    up, _ = _buffer_lp(data, z, label, eps)
    down, _ = _buffer_lp(data, z, label, -eps)
    right, left = (up - base) / eps, (base - down) / eps
    assert right == pytest.approx(left, rel=1e-5)  # non-degenerate: the same slope on both sides
    assert right == pytest.approx(dual, rel=1e-5)
    assert right == pytest.approx(binding.shadow_price, rel=1e-5)
    # the price is between the two assets' carry over the horizon: a blend, as the concentration limit forces
    horizon = pol.carry_horizon_days / 365.0
    assert 0.02 * horizon < binding.shadow_price < 0.05 * horizon * 1.5


# == 7. infeasible policies and their top-up ======================================================================

def test_infeasible_policy_reports_a_top_up_that_makes_it_feasible(books: Books) -> None:
    positions = [pos("BTCUSDT", 2.0), pos("DOGEUSDT", 5e5)]
    raw = book({"a": ({"USDT": 5_000.0}, positions)}, {"USDT": 5_000.0})
    pol = policy(cross={"buffer": 20.0})
    sc = scenarios(2)
    with pytest.raises(Infeasible) as info:
        optimize(load(books, raw), pol, sc)
    exc = info.value
    assert exc.exit_code == 3
    doc = exc.document
    assert doc["status"] == "infeasible"
    total = sum(row["value"] for row in doc["top_up"])
    # cheapest way to meet it: isolate both (a cross buffer of 20 × MM alone is 30k), each needing (25 % + 1 % × 75 %)
    # of its notional: 0.2575 × (100k + 50k) = 38,625 USD, of which the desk has 10,000
    assert total == pytest.approx(0.2575 * 150_000 - 10_000, rel=1e-6)
    assert all(row["amount"] > 0 and row["value"] > 0 for row in doc["top_up"])
    assert f"{total:,.2f} USD" in str(exc)
    # the same book with that top-up added to the wallet meets the policy
    wallet = dict(raw["wallet"])
    for row in doc["top_up"]:
        wallet[row["asset"]] = wallet.get(row["asset"], 0.0) + float(row["amount"])
    topped = optimize(load(books, {**raw, "wallet": wallet}), pol, sc)
    assert topped.document["status"] == "optimal"
    # and it is the smallest: 1 % less is not enough
    short = {a: raw["wallet"].get(a, 0.0) + 0.99 * (v - raw["wallet"].get(a, 0.0)) for a, v in wallet.items()}
    with pytest.raises(Infeasible):
        optimize(load(books, {**raw, "wallet": short}), pol, sc)


@pytest.mark.parametrize("shortfall", [3e-8, 1e-8, 0.0, -1e-8])
def test_capital_within_solver_tolerance_of_the_need_passes_the_recheck(books: Books, shortfall: float) -> None:
    # The same book with exactly (1 − shortfall) × the 38,625 USD it needs.  Short by less than the solver's
    # feasibility tolerance, either answer is fair: infeasible with a top-up of that size, or optimal with a few
    # 1e-8 more USDT allocated than the desk holds — then the recommendation must still conserve every unit
    # exactly and pass the re-check (which tolerates 1e-6 of the capital), not fail it with exit 1.
    need = 0.2575 * 150_000
    raw = book({"a": ({"USDT": 5_000.0}, [pos("BTCUSDT", 2.0), pos("DOGEUSDT", 5e5)])},
               {"USDT": need * (1 - shortfall) - 5_000.0})
    loaded = load(books, raw)
    try:
        result = optimize(loaded, policy(cross={"buffer": 20.0}), scenarios(2))
    except Infeasible as exc:
        assert shortfall > 0
        top_up = sum(row["value"] for row in exc.document["top_up"])
        assert top_up == pytest.approx(need * shortfall, rel=1e-3)
        return
    assert modes(result) == {"BTCUSDT": "isolated", "DOGEUSDT": "isolated"}
    assert unit_totals(loaded, result.book)["USDT"] == pytest.approx(need * (1 - shortfall), rel=1e-12)
    margins = [p.isolated_margin for p in result.book.venues["v"].accounts["a"].positions]
    assert margins == pytest.approx([0.2575 * 100_000, 0.2575 * 50_000], rel=1e-6)


# == 8. scale: 1e9 USD notionals and a 1e-4 BTC book ==============================================================

def _scaled(price_factor: float, size_factor: float) -> dict[str, Any]:
    prices = {a: p * price_factor for a, p in PRICES.items()}
    positions = [pos("BTCUSDT", 0.2 * size_factor, prices=prices), pos("ETHUSDT", -4.0 * size_factor, prices=prices),
                 pos("DOGEUSDT", 1e5 * size_factor, prices=prices)]
    return book({"a": ({"USDT": 1_000.0 * size_factor, "BTC": 0.01 * size_factor}, positions)},
                {"USDT": 20_000.0 * size_factor, "BTC": 0.1 * size_factor}, prices)


@pytest.mark.parametrize(("price_factor", "size_factor"), [(1e5, 1.0), (1.0, 1e-4)])
def test_extreme_scales_solve_and_recheck(books: Books, price_factor: float, size_factor: float) -> None:
    # Prices × 1e5 for *every* asset (USDT included) leave every settle-unit number unchanged and multiply every
    # USD amount by 1e5; sizes × 1e-4 (a 1e-4 BTC book) with flat brackets and no haircut tiers multiply every
    # amount by 1e-4.  Both are exact homogeneities: the same decisions, the objective scaled by the factor.
    pol, sc = policy(), scenarios(4)
    reference = optimize(load(books, _scaled(1.0, 1.0)), pol, sc)
    result = optimize(load(books, _scaled(price_factor, size_factor)), pol, sc)  # recheck passes inside
    factor = price_factor * size_factor
    assert result.document["status"] == "optimal"
    if price_factor > 1:
        notional = sum(abs(p.qty) * p.entry_price * result.book.prices["USDT"]
                       for p in result.book.venues["v"].accounts["a"].positions)
        assert notional > 1e9
    else:
        assert result.data.holdings[result.data.assets.index("BTC")] * result.data.scale / PRICES["BTC"] \
            == pytest.approx(1.1e-5, rel=1e-12)
    assert modes(result) == modes(reference)
    assert result.solution.objective == pytest.approx(reference.solution.objective * factor, rel=1e-6)
    ref_coll, coll = cross_collateral_usd(reference), cross_collateral_usd(result)
    for asset in ref_coll.keys() | coll.keys():
        assert coll.get(asset, 0.0) == pytest.approx(ref_coll.get(asset, 0.0) * factor, rel=1e-5,
                                                     abs=1e-7 * result.data.scale)


# == 9. smoke test on the embedded history ========================================================================

def test_smoke_on_the_embedded_history_with_a_stress_scenario(books: Books) -> None:
    from risk_models.market_data import default_prices
    from risk_models.risk_model import build_scenarios

    pol = policy(stress_scenarios=[{"name": "crash", "shocks": {"BTC": -0.3, "ETH": -0.35, "DOGE": -0.5}}])
    positions = [pos("BTCUSDT", 2.0), pos("ETHUSDT", -40.0), pos("DOGEUSDT", 1e6)]
    loaded = load(books, book({"a": ({"USDT": 3_000.0, "BTC": 0.5}, positions)}, {"USDT": 400_000.0, "BTC": 2.0}))
    sc = build_scenarios(pol.risk_model, ["BTC", "ETH", "DOGE", "USDT"], default_prices(),
                         stress=pol.stress_scenarios)
    assert sc.n_scenarios > 1_000 and "crash" in sc.labels
    result = optimize(loaded, pol, sc)
    doc = result.document
    assert doc["status"] == "optimal" and doc["objective_value"] <= doc["objective_value_before"]
    before, after = unit_totals(loaded, loaded.book), unit_totals(loaded, result.book)
    assert after == pytest.approx(before, rel=1e-9)
    assert any(b["name"] == "buffer v/a/cross" for b in doc["binding_constraints"])
