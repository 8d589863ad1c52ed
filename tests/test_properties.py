"""Property tests (hypothesis): bracket arithmetic, liquidation prices, monotonicity and order independence.

The liquidation checks are independent of risk_models.liquidation: they write the book moved to the liquidation
price as a new book file, load and evaluate it like any other, and look at the bucket's equity − maintenance.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from risk_models.compiled import CompiledBook, compile_book
from risk_models.liquidation import liquidation_prices
from risk_models.loading import load_book
from risk_models.margin_report import margin_report
from risk_models.schema.rules import Contract
from risk_models.tiers import tiered_margin
from risk_models.venue_margin import MarginState, evaluate
from tests.conftest import linear, rules_dict

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# == 1. tiered maintenance margin =================================================================================

@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    """A contract with a random ascending bracket table (caps strictly ascending, mmr non-decreasing in [0, 0.5))."""
    n = draw(st.integers(1, 7))
    steps = draw(st.lists(st.floats(1.0, 1e7), min_size=n, max_size=n))
    caps = list(itertools.accumulate(steps))
    mmrs = sorted(draw(st.lists(st.floats(0.0, 0.5, exclude_max=True), min_size=n, max_size=n)))
    if draw(st.booleans()):  # repeat some rates: equal consecutive mmr is allowed
        for i in range(1, n):
            if draw(st.booleans()):
                mmrs[i] = mmrs[i - 1]
    unbounded = draw(st.booleans())
    brackets = [{"cap": None if (unbounded and i == n - 1) else cap, "mmr": mmr, "max_leverage": 10.0}
                for i, (cap, mmr) in enumerate(zip(caps, mmrs, strict=True))]
    return Contract.model_validate({"underlying": "X", "settle": "USDT", "kind": "linear", "contract_size": 1,
                                    "brackets": brackets})


def mm(contract: Contract, notional: float) -> float:
    """The library's tiered maintenance margin (tiers.tiered_margin) of one notional."""
    return float(tiered_margin(np.array([notional]), contract.mmrs[None, :], contract.cums[None, :])[0])


def mm_capped(contract: Contract, notional: float) -> float:
    """tiered_margin given the caps (it may then skip tiers above the notional)."""
    return float(tiered_margin(np.array([notional]), contract.mmrs[None, :], contract.cums[None, :],
                               contract.caps[None, :])[0])


def mm_explicit(contract: Contract, notional: float) -> float:
    """notional × mmr(tier) − cum(tier), the tier found by scanning the caps (last tier beyond the last cap)."""
    caps, mmrs, cums = contract.caps, contract.mmrs, contract.cums
    tier = next((k for k, cap in enumerate(caps) if notional <= cap), len(caps) - 1)
    return notional * mmrs[tier] - cums[tier]


def _scale(contract: Contract, notional: float) -> float:
    return abs(notional) * float(np.max(contract.mmrs)) + float(np.max(np.abs(contract.cums))) + 1e-300


def test_cums_follow_the_spec_recursion() -> None:
    c = Contract.model_validate({"underlying": "X", "settle": "USDT", "kind": "linear", "contract_size": 1,
                                 "brackets": [{"cap": 50_000, "mmr": 0.004, "max_leverage": 125},
                                              {"cap": 250_000, "mmr": 0.005, "max_leverage": 100},
                                              {"cap": None, "mmr": 0.01, "max_leverage": 50}]})
    assert c.cums.tolist() == pytest.approx([0.0, 50.0, 1300.0])
    assert mm(c, 300_000) == pytest.approx(1700.0)


@FAST
@given(contracts(), st.data())
def test_tiered_margin_equals_per_tier_formula(contract: Contract, data: st.DataObject) -> None:
    finite = [float(c) for c in contract.caps if math.isfinite(c)]
    top = finite[-1] if finite else 1e6
    points = [*finite, 0.0, *data.draw(st.lists(st.floats(0.0, 2.0 * top), min_size=1, max_size=20))]
    for n in points:
        got, want = mm(contract, n), mm_explicit(contract, n)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12 * _scale(contract, n)), (n, got, want)
        assert mm_capped(contract, n) == pytest.approx(got, rel=1e-12, abs=1e-12 * _scale(contract, n))
        assert got >= -1e-12 * _scale(contract, n)
    # vectorized over price states (R, K): the same numbers
    grid = np.array(points)[None, :]
    for caps in (None, contract.caps[None, :]):
        many = tiered_margin(grid, contract.mmrs[None, :], contract.cums[None, :], caps)[0]
        np.testing.assert_allclose(many, [mm(contract, n) for n in points], rtol=1e-12,
                                   atol=1e-12 * _scale(contract, max(points)))


@FAST
@given(contracts(), st.floats(1e-12, 1e-6))
def test_tiered_margin_continuous_at_every_cap(contract: Contract, rel_eps: float) -> None:
    slope = float(np.max(contract.mmrs))
    for cap in contract.caps:
        if not math.isfinite(cap):
            continue
        eps = cap * rel_eps
        for f in (mm, mm_capped, mm_explicit):
            left, right = f(contract, cap - eps), f(contract, cap + eps)
            # the only admissible jump is the slope times the 2 eps step (plus rounding of the cap-sized terms)
            tol = 2 * eps * slope + 1e-12 * _scale(contract, cap)
            assert abs(left - right) <= tol, (f.__name__, cap, left, right)
            assert abs(f(contract, cap) - left) <= tol


@FAST
@given(contracts(), st.data())
def test_tiered_margin_convex_and_non_decreasing(contract: Contract, data: st.DataObject) -> None:
    finite = [float(c) for c in contract.caps if math.isfinite(c)]
    top = 1.5 * (finite[-1] if finite else 1e6)
    a = data.draw(st.floats(0.0, top))
    b = data.draw(st.floats(0.0, top))
    lam = data.draw(st.floats(0.0, 1.0))
    mid = lam * a + (1 - lam) * b
    tol = 1e-9 * _scale(contract, max(a, b))
    for f in (mm, mm_capped, mm_explicit):
        assert f(contract, mid) <= lam * f(contract, a) + (1 - lam) * f(contract, b) + tol, f.__name__
        lo, hi = sorted((a, b))
        assert f(contract, lo) <= f(contract, hi) + tol, f.__name__


# == 2. random books ==============================================================================================

UNDERLYINGS = ("BTC", "ETH", "SOL")
LINEAR = tuple(f"{u}USDT{tail}" for u in UNDERLYINGS for tail in ("", "_Q"))  # perpetual + a quarterly per coin
UNDERLYING_OF = {s: s[:3] for s in LINEAR} | {"BTCUSD": "BTC", "ETHBTC": "ETH"}
LINEAR_BRACKETS = [
    {"cap": 50_000, "mmr": 0.004, "max_leverage": 125},
    {"cap": 250_000, "mmr": 0.005, "max_leverage": 100},
    {"cap": 1_000_000, "mmr": 0.01, "max_leverage": 50},
    {"cap": 5_000_000, "mmr": 0.025, "max_leverage": 20},
    {"cap": None, "mmr": 0.05, "max_leverage": 10},
]
INVERSE_BRACKETS = [  # caps in BTC
    {"cap": 5, "mmr": 0.005, "max_leverage": 100},
    {"cap": 50, "mmr": 0.01, "max_leverage": 50},
    {"cap": None, "mmr": 0.025, "max_leverage": 20},
]
ETHBTC_BRACKETS = [  # caps in BTC
    {"cap": 10, "mmr": 0.01, "max_leverage": 50},
    {"cap": None, "mmr": 0.02, "max_leverage": 25},
]
PRICE_RANGE = {"BTC": (20_000.0, 100_000.0), "ETH": (1_000.0, 5_000.0), "SOL": (10.0, 300.0)}


@dataclass
class Case:
    book: dict[str, Any]
    rules: dict[str, dict[str, Any]]  # file name → rules dict

    def write(self, folder: Path, *, shuffle: random.Random | None = None, yaml_parser: bool = False) -> Path:
        """Write rules and book as JSON (valid YAML that keeps key order); return the book path.

        The loader reads a file starting with "{" through a JSON fast path; ``yaml_parser`` puts a YAML comment
        first so that the YAML parser reads the same document.
        """
        head = "# written by test_properties\n" if yaml_parser else ""
        folder.mkdir(parents=True, exist_ok=False)
        for name, data in self.rules.items():
            (folder / name).write_text(head + json.dumps(_shuffled(data, shuffle)), encoding="utf-8")
        path = folder / "book.yaml"
        path.write_text(head + json.dumps(_shuffled(self.book, shuffle), indent=1), encoding="utf-8")
        return path


def _shuffled(data: Any, rng: random.Random | None) -> Any:
    """Every mapping's keys and every list of positions in a random order (bracket/tier lists keep theirs)."""
    if rng is None:
        return data
    if isinstance(data, dict):
        items = list(data.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(data, list):
        items = [_shuffled(v, rng) for v in data]
        if items and all(isinstance(v, dict) and "symbol" in v for v in items):
            rng.shuffle(items)
        return items
    return data


class Folders:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def next(self) -> Path:
        self.count += 1
        return self.root / f"c{self.count}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Folders:
    return Folders(tmp_path_factory.mktemp("props"))


def load_eval(case: Case, folders: Folders) -> tuple[CompiledBook, MarginState]:
    cb = compile_book(load_book(case.write(folders.next())))
    return cb, evaluate(cb)


def _pos_strategy(draw: st.DrawFn, symbol: str, mark: float, isolated: bool, usd_per_settle: float,
                  inverse: bool = False) -> dict[str, Any]:
    notional_usd = draw(st.floats(100.0, 3e6))
    sign = draw(st.sampled_from((1.0, -1.0)))
    qty = notional_usd / (100.0 if inverse else mark * usd_per_settle)
    qty = sign * (max(1.0, round(qty)) if inverse else qty)
    pos: dict[str, Any] = {"symbol": symbol, "qty": qty,
                           "entry_price": mark * draw(st.floats(0.8, 1.25)), "mark_price": mark,
                           "margin_mode": "isolated" if isolated else "cross"}
    if isolated:
        settle_notional = abs(qty) * (100.0 / mark if inverse else mark)
        pos["isolated_margin"] = settle_notional * draw(st.floats(0.002, 0.4))
    return pos


@st.composite
def cases(draw: st.DrawFn, *, inverse_pool: bool | None = None) -> Case:
    usdt = draw(st.floats(0.98, 1.02))
    prices = {u: draw(st.floats(*PRICE_RANGE[u])) for u in UNDERLYINGS}
    prices["USDT"] = usdt
    basis = st.floats(-0.03, 0.03)

    def linear_mark(symbol: str) -> float:
        return prices[UNDERLYING_OF[symbol]] / usdt * (1.0 + draw(basis))

    # the USDT pool: several linear positions (several per underlying through the quarterlies), some isolated;
    # optionally ETHBTC, a linear contract settled in BTC (its PnL and margin move with BTC, its mark does not)
    symbols = draw(st.lists(st.sampled_from(LINEAR), min_size=1, max_size=len(LINEAR), unique=True))
    positions = [_pos_strategy(draw, s, linear_mark(s), draw(st.integers(0, 3)) == 0, usdt) for s in symbols]
    with_ethbtc = draw(st.integers(0, 3)) == 0
    if with_ethbtc:
        mark = prices["ETH"] / prices["BTC"] * (1.0 + draw(basis))
        positions.insert(draw(st.integers(0, len(positions))),
                         _pos_strategy(draw, "ETHBTC", mark, draw(st.booleans()), prices["BTC"]))
    cross_notional = sum(abs(p["qty"]) * p["mark_price"] for p in positions
                         if p["margin_mode"] == "cross" and p["symbol"] != "ETHBTC")
    collateral: dict[str, float] = {
        "USDT": cross_notional * draw(st.floats(-0.05, 0.3)) + draw(st.floats(0.0, 1e4))}
    if draw(st.booleans()):
        collateral["BTC"] = draw(st.floats(-1.0, 40.0))
    accounts = {"a": {"collateral": collateral, "positions": positions}}
    if draw(st.booleans()):  # a second account on the same venue: other buckets on the same underlyings
        s = draw(st.sampled_from(LINEAR))
        accounts["b"] = {"collateral": {"USDT": draw(st.floats(0.0, 1e5))},
                         "positions": [_pos_strategy(draw, s, linear_mark(s), False, usdt)]}
    fee = draw(st.sampled_from((0.0, 0.0, 0.001)))
    usdt_rates = draw(st.sampled_from(((1.0, 1.0), (0.9801, 0.99495))))
    btc_tiers = draw(st.sampled_from((
        {"tiers": [{"cap": 1e6, "ratio": 1.0}, {"cap": None, "ratio": 0.9}]},
        {"tier_unit": "asset", "tiers": [{"cap": 20, "ratio": 0.95}, {"cap": None, "ratio": 0.8}]},
    )))
    contracts_ = {s: linear(UNDERLYING_OF[s], LINEAR_BRACKETS) for s in LINEAR}
    if with_ethbtc:
        contracts_["ETHBTC"] = linear("ETH", ETHBTC_BRACKETS, settle="BTC")
    lin_rules = rules_dict(
        contracts_,
        collateral={"USDT": {"tiers": [{"cap": None, "ratio": 1.0}], "bid_rate": usdt_rates[0],
                             "ask_rate": usdt_rates[1]},
                    "BTC": btc_tiers},
        liquidation_fee_rate=fee,
        mm_price_basis=draw(st.sampled_from(("mark", "mark", "entry"))),
    )
    venues: dict[str, Any] = {"lin": {"rules": "lin.yaml", "accounts": accounts}}
    rules = {"lin.yaml": lin_rules}

    with_inverse = draw(st.booleans()) if inverse_pool is None else inverse_pool
    if with_inverse:  # a coin-margined pool: BTCUSD inverse, contract_size 100, BTC collateral
        inv_accounts: dict[str, Any] = {}
        mark = prices["BTC"] * (1.0 + draw(basis))
        inv_accounts["c"] = {"collateral": {"BTC": draw(st.floats(0.0, 30.0))},
                             "positions": [_pos_strategy(draw, "BTCUSD", mark, False, 1.0, inverse=True)]}
        if draw(st.booleans()):
            mark = prices["BTC"] * (1.0 + draw(basis))
            inv_accounts["d"] = {"positions": [_pos_strategy(draw, "BTCUSD", mark, True, 1.0, inverse=True)]}
        venues["inv"] = {"rules": "inv.yaml", "accounts": inv_accounts}
        inv_collateral = draw(st.sampled_from((
            None,  # the settle asset, accepted at 100 %
            {"BTC": {"tier_unit": "asset", "tiers": [{"cap": 5, "ratio": 1.0}, {"cap": None, "ratio": 0.9}]}},
            {"BTC": {"tiers": [{"cap": 2e5, "ratio": 0.98}, {"cap": None, "ratio": 0.9}], "bid_rate": 0.99,
                     "ask_rate": 1.01}},
        )))
        rules["inv.yaml"] = rules_dict(
            {"BTCUSD": {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 100,
                        "brackets": INVERSE_BRACKETS}},
            collateral=inv_collateral, liquidation_fee_rate=fee)
    book = {"version": 1, "prices": prices, "venues": venues, "wallet": {"USDT": 1000.0}}
    return Case(book, rules)


def _position_dicts(book: dict[str, Any], cb: CompiledBook) -> list[dict[str, Any]]:
    """The book's position mapping of each compiled position row (keys are unique: one-way mode)."""
    out = []
    for venue, account, symbol in cb.position_keys:
        positions = book["venues"][venue]["accounts"][account]["positions"]
        out.append(next(p for p in positions if p["symbol"] == symbol))
    return out


def moved_case(case: Case, cb: CompiledBook, p: int, ratio: float) -> Case:
    """The book with position p's underlying moved by ``ratio``: its USD price, and the marks of every position
    on it in p's bucket.  Positions on that underlying in other buckets keep their (explicit) marks."""
    book = copy.deepcopy(case.book)
    pa = cb.positions
    und, bucket = int(pa.underlying[p]), int(pa.bucket[p])
    book["prices"][cb.assets[und]] *= ratio
    for q, pos in enumerate(_position_dicts(book, cb)):
        if int(pa.bucket[q]) == bucket and int(pa.underlying[q]) == und:
            pos["mark_price"] *= ratio
    return Case(book, case.rules)


def bucket_surplus(case: Case, folders: Folders, bucket: int) -> tuple[float, float]:
    """(equity − maintenance, scale) of ``bucket`` in an independently loaded and evaluated book."""
    cb, st_ = load_eval(case, folders)
    in_bucket = cb.positions.bucket == bucket
    notional = float(np.sum(st_.terms.notional_usd[in_bucket]))
    eq, mm_ = float(st_.equity[bucket]), float(st_.maintenance[bucket])
    return eq - mm_, abs(eq) + mm_ + notional


# == 3. liquidation prices zero equity − maintenance ==============================================================

@SLOW
@given(cases())
def test_liquidation_price_zeroes_equity_minus_maintenance(folders: Folders, case: Case) -> None:
    cb, state = load_eval(case, folders)
    liq = liquidation_prices(cb, state)
    pa = cb.positions
    checked_groups: dict[tuple[int, int], float] = {}
    for p in range(len(pa)):
        bucket, und = int(pa.bucket[p]), int(pa.underlying[p])
        g0 = float(state.equity[bucket] - state.maintenance[bucket])
        if math.isnan(liq[p]):
            continue
        ratio = float(liq[p] / pa.mark[p])
        assert ratio > 0
        # every position of one (bucket, underlying) group shares one ratio
        if (bucket, und) in checked_groups:
            assert ratio == pytest.approx(checked_groups[(bucket, und)], rel=1e-12)
            continue
        checked_groups[(bucket, und)] = ratio
        g, scale = bucket_surplus(moved_case(case, cb, p, ratio), folders, bucket)
        assert abs(g) <= 1e-7 * scale, (cb.position_keys[p], ratio, g, scale)
        # nearest root: half-way (in log terms) between the mark and the liquidation price, the bucket is still
        # on the side it is on now
        if g0 != 0 and abs(math.log(ratio)) > 1e-6:
            g_half, scale_half = bucket_surplus(moved_case(case, cb, p, math.sqrt(ratio)), folders, bucket)
            if abs(g_half) > 1e-7 * scale_half:
                assert math.copysign(1.0, g_half) == math.copysign(1.0, g0), (cb.position_keys[p], ratio, g_half)


@SLOW
@given(cases())
def test_no_liquidation_price_means_no_sign_change(folders: Folders, case: Case) -> None:
    """A position without liquidation price: its bucket stays on the same side at a few far-apart moves."""
    cb, state = load_eval(case, folders)
    liq = liquidation_prices(cb, state)
    pa = cb.positions
    missing = [p for p in range(len(pa)) if math.isnan(liq[p])]
    assume(missing)
    p = missing[0]
    bucket = int(pa.bucket[p])
    g0 = float(state.equity[bucket] - state.maintenance[bucket])
    for ratio in (0.05, 0.5, 0.9, 1.1, 2.0, 20.0):
        g, scale = bucket_surplus(moved_case(case, cb, p, ratio), folders, bucket)
        if abs(g) > 1e-7 * scale:
            assert math.copysign(1.0, g) == math.copysign(1.0, g0), (cb.position_keys[p], ratio, g0, g)


# == 4. more stablecoin collateral never brings a liquidation price closer =======================================

@SLOW
@given(cases(), st.floats(1.0, 1e6))
def test_adding_usdt_never_moves_liquidation_closer(folders: Folders, case: Case, added: float) -> None:
    cb, state = load_eval(case, folders)
    before = liquidation_prices(cb, state)
    more = copy.deepcopy(case)
    more.book["venues"]["lin"]["accounts"]["a"]["collateral"]["USDT"] += added
    cb2, state2 = load_eval(more, folders)
    after = liquidation_prices(cb2, state2)
    assert cb2.position_keys == cb.position_keys
    cross = [b for b, bid in enumerate(cb.buckets) if (bid.venue, bid.account, bid.symbol) == ("lin", "a", None)]
    (pool,) = cross
    # Only meaningful while the pool is not liquidatable: for a pool already under water the "liquidation price"
    # is where it would recover, and more collateral rightly brings that closer.
    assume(state.equity[pool] > state.maintenance[pool])
    assert state2.equity[pool] - state2.maintenance[pool] >= state.equity[pool] - state.maintenance[pool]
    for p in np.nonzero(cb.positions.bucket == pool)[0]:
        mark = cb.positions.mark[p]
        d_before = math.inf if math.isnan(before[p]) else abs(before[p] - mark)
        d_after = math.inf if math.isnan(after[p]) else abs(after[p] - mark)
        assert d_after >= d_before * (1 - 1e-12) - 1e-9 * mark, (cb.position_keys[p], before[p], after[p], mark)
    # other buckets are untouched
    others = cb.positions.bucket != pool
    np.testing.assert_array_equal(np.isnan(before[others]), np.isnan(after[others]))
    np.testing.assert_allclose(before[others], after[others], rtol=1e-12)


# == 5. order independence ========================================================================================

def _normalized(report: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for acc in report["accounts"]:
        key = (acc["venue"], acc["account"])
        assert key not in out
        out[key] = {k: v for k, v in acc.items() if k != "positions"}
        for pos in acc["positions"]:
            pkey = (*key, pos["symbol"])
            assert pkey not in out
            out[pkey] = pos
    return out


def _close(a: Any, b: Any, scale: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 * scale)
    return a == b


@SLOW
@given(cases(), st.randoms(use_true_random=False), st.booleans())
def test_report_independent_of_order(folders: Folders, case: Case, rng: random.Random, yaml_parser: bool) -> None:
    base = _normalized(margin_report(load_book(case.write(folders.next()))).to_dict())
    shuffled_path = case.write(folders.next(), shuffle=rng, yaml_parser=yaml_parser)
    shuffled = _normalized(margin_report(load_book(shuffled_path)).to_dict())
    assert base.keys() == shuffled.keys()
    scale = max(abs(v) for row in base.values() for v in row.values() if isinstance(v, float))
    for key, row in base.items():
        other = shuffled[key]
        assert row.keys() == other.keys()
        for field, value in row.items():
            assert _close(value, other[field], scale), (key, field, value, other[field])


def test_shuffle_really_reorders(tmp_path: Path) -> None:
    """The JSON writer keeps the shuffled order (a YAML dumper would sort the keys back)."""
    case = Case({"version": 1, "prices": {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0}}, {})
    rng = random.Random(3)
    orders = set()
    for i in range(5):
        data = json.loads(case.write(tmp_path / f"f{i}", shuffle=rng).read_text(encoding="utf-8"))
        orders.add(tuple(data["prices"]))
    assert len(orders) > 1
