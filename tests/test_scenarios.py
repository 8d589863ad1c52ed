"""Scenario generators: hand-checked toy windows, the shipped stress windows, Monte Carlo moments and venue grids."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk_models.errors import InputError
from risk_models.estimators import RiskModelError
from risk_models.market_data import PriceHistory, PriceWindow, default_prices
from risk_models.scenarios import ScenarioSet
from risk_models.scenarios.filtered import filtered_historical
from risk_models.scenarios.grids import deribit_grid, grid_for_assets, okx_mr1_grid, span_grid, stack_grids
from risk_models.scenarios.historical import historical
from risk_models.scenarios.parametric import monte_carlo
from risk_models.scenarios.stressed import STRESS_WINDOWS, combine, named_shocks, stressed

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def price_window(start: str = "2024-01-01", pegged: tuple[str, ...] = (), **columns: list[float]) -> PriceWindow:
    n = len(next(iter(columns.values())))
    return PriceWindow(pd.DataFrame(columns, index=pd.date_range(start, periods=n, freq="D")), pegged)


# == historical =====================================================================================================

def test_historical_two_day_overlapping_returns_by_hand() -> None:
    w = price_window(BTC=[100.0, 110.0, 99.0, 120.0], ETH=[10.0, 10.0, 12.0, 9.0])
    one = historical(w)
    np.testing.assert_allclose(one.returns[:, 0], [0.1, -0.1, 120 / 99 - 1], rtol=1e-14)
    two = historical(w, horizon_days=2)
    np.testing.assert_allclose(two.returns, [[-0.01, 0.2], [120 / 110 - 1, -0.1]], rtol=1e-14)
    assert two.labels == ("2024-01-03", "2024-01-04")
    assert two.window == ("2024-01-02", "2024-01-04")
    assert (two.kind, two.horizon_days, two.weights) == ("historical", 2, None)
    np.testing.assert_array_equal(two.probabilities, [0.5, 0.5])
    with pytest.raises(RiskModelError, match="longer than the window's 3 daily returns"):
        historical(w, horizon_days=4)


def test_pegged_assets_return_zero() -> None:
    ph = PriceHistory(pd.DataFrame({"BTC": np.linspace(100, 150, 40), "USDT": np.linspace(0.98, 1.02, 40)},
                                   index=pd.date_range("2024-01-01", periods=40)), "toy")
    w = ph.window(["BTC", "USDT", "USDC"], days=35)
    for s in (historical(w, 3), filtered_historical(w, 3)):
        np.testing.assert_array_equal(s.returns[:, 1:], 0.0)
        assert np.all(s.returns[:, 0] > 0)
        assert s.meta["pegged"] == ("USDT", "USDC")


def test_shipped_window_matches_the_spec_example() -> None:
    w = default_prices().window(["BTC", "ETH", "USDT", "USDC"], end="2025-02-20", days=1095)
    s = historical(w)
    assert (s.n_scenarios, s.window) == (1095, ("2022-02-22", "2025-02-20"))
    assert s.labels[-1] == "2025-02-20"
    assert s.meta["source"] == "embedded crypto_daily_close_usd.csv"


# == filtered historical ============================================================================================

def test_fhs_with_constant_volatility_gives_back_historical_returns() -> None:
    rng = np.random.default_rng(3)
    logs = 0.03 * rng.choice([-1.0, 1.0], size=(60, 2))
    prices = 100.0 * np.exp(np.vstack([np.zeros((1, 2)), np.cumsum(logs, axis=0)]))
    w = price_window(BTC=prices[:, 0], ETH=prices[:, 1])
    for h in (1, 3):
        fhs, hs = filtered_historical(w, h), historical(w, h)
        np.testing.assert_allclose(fhs.returns, hs.returns, rtol=1e-12, atol=1e-15)
        assert fhs.labels == hs.labels and fhs.window == hs.window
    assert fhs.meta["volatility_today"]["BTC"] == pytest.approx(0.03, rel=1e-12)


def test_fhs_rescales_calm_days_to_todays_volatility() -> None:
    sigma = 0.01
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=400)
    logs = sigma * signs * np.r_[np.ones(200), 2 * np.ones(200)]        # volatility doubles half-way
    w = price_window(BTC=100.0 * np.exp(np.r_[0.0, np.cumsum(logs)]))
    fhs = np.log1p(filtered_historical(w, lam=0.94).returns[:, 0])
    # σ_t = σ exactly on calm days (seed = σ²), σ_T = 2σ up to 0.94**200: calm returns are doubled
    np.testing.assert_allclose(fhs[:200], 2 * logs[:200], rtol=1e-5)
    np.testing.assert_allclose(fhs[-20:], logs[-20:], rtol=1e-4)


# == Monte Carlo ====================================================================================================

COV = np.array([[4e-4, 2e-4, 0.0], [2e-4, 9e-4, -1e-4], [0.0, -1e-4, 1e-4]])


def test_monte_carlo_normal_recovers_the_covariance() -> None:
    s = monte_carlo(COV, ("BTC", "ETH", "SOL"), 200_000, seed=11, horizon_days=4)
    x = np.log1p(s.returns)
    np.testing.assert_allclose(np.cov(x.T), 4 * COV, rtol=0.02, atol=4e-6)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=2e-4)
    assert s.labels[:2] == ("mc-000001", "mc-000002") and s.labels[-1] == "mc-200000"
    assert (s.kind, s.horizon_days) == ("parametric", 4)
    np.testing.assert_array_equal(monte_carlo(COV, ("BTC", "ETH", "SOL"), 10, seed=11, horizon_days=4).returns,
                                  s.returns[:10])


def test_monte_carlo_student_t_has_the_same_covariance_and_fat_tails() -> None:
    s = monte_carlo(COV, ("BTC", "ETH", "SOL"), 200_000, seed=2, distribution="student_t", dof=6)
    x = np.log1p(s.returns)
    np.testing.assert_allclose(np.cov(x.T), COV, rtol=0.04, atol=4e-6)
    z = x[:, 0] / x[:, 0].std()
    assert np.mean(z**4) - 3 == pytest.approx(3.0, abs=1.0)          # excess kurtosis of t(6): 6 / (6 − 4)
    assert s.meta["distribution"] == "student_t"


def test_monte_carlo_pegs_and_validates() -> None:
    cov = np.diag([4e-4, 1e-6])
    s = monte_carlo(cov, ("BTC", "USDT"), 100, seed=0)
    np.testing.assert_array_equal(s.returns[:, 1], 0.0)
    with pytest.raises(RiskModelError, match="not positive semi-definite"):
        monte_carlo(np.array([[1e-4, 2e-4], [2e-4, 1e-4]]), ("A", "B"))
    with pytest.raises(RiskModelError, match="dof > 2"):
        monte_carlo(cov, ("BTC", "ETH"), distribution="student_t", dof=2)
    with pytest.raises(RiskModelError, match="2×2 for 3 assets"):
        monte_carlo(cov, ("A", "B", "C"))


# == stress =========================================================================================================

def test_stress_windows_of_the_shipped_data() -> None:
    ph = default_prices()
    covid = stressed(ph, "2020-03", ["BTC", "ETH", "USDT"])
    worst = int(np.argmin(covid.returns[:, 0]))
    assert covid.labels[worst] == "2020-03-12"
    assert covid.returns[worst, 0] == pytest.approx(-0.3716953857, abs=1e-6)
    assert covid.window == ("2020-03-02", "2020-03-31")
    assert (covid.kind, covid.meta["stress_window"]) == ("stressed", "2020-03")
    np.testing.assert_array_equal(covid.returns[:, 2], 0.0)
    ftx = stressed(ph, "2022-11", ["SOL", "BTC"])
    assert ftx.labels[int(np.argmin(ftx.returns[:, 0]))] == "2022-11-09"
    assert ftx.returns[:, 0].min() < -0.40
    depeg = stressed(ph, "2023-03", ["BTC", "USDC", "USDT"])       # USDC unpegged here, USDT still pegged
    assert depeg.labels[int(np.argmin(depeg.returns[:, 1]))] == "2023-03-11"
    assert depeg.returns[:, 1].min() == pytest.approx(0.9715 / 0.999479 - 1, abs=1e-6)
    np.testing.assert_array_equal(depeg.returns[:, 2], 0.0)
    assert set(STRESS_WINDOWS) >= {"2020-03", "2021-05", "2022-05", "2022-11", "2023-03"}


def test_stress_window_without_data_needs_a_proxy() -> None:
    ph = default_prices()
    with pytest.raises(InputError, match="history starts 2020-04-10") as err:
        stressed(ph, "2020-03", ["BTC", "SOL"])
    assert err.value.key == "SOL"
    proxied = stressed(ph, "2020-03", ["BTC", "SOL"], proxies={"SOL": "ETH"})
    np.testing.assert_array_equal(proxied.returns[:, 1], stressed(ph, "2020-03", ["ETH"]).returns[:, 0])
    assert proxied.meta["proxies"] == {"SOL": "ETH"}
    with pytest.raises(RiskModelError, match="unknown stress window '2019-01'"):
        stressed(ph, "2019-01", ["BTC"])


def test_named_shocks_from_the_policy() -> None:
    spec = [{"name": "lst-depeg", "shocks": {"WBETH": -0.30, "ETH": -0.08, "BTC": -0.05}},
            SimpleNamespace(name="usdt-depeg", shocks={"USDT": -0.1})]
    s = named_shocks(spec, ["BTC", "ETH", "WBETH", "USDT"])
    np.testing.assert_array_equal(s.returns, [[-0.05, -0.08, -0.30, 0.0], [0.0, 0.0, 0.0, -0.1]])
    assert (s.labels, s.kind) == (("lst-depeg", "usdt-depeg"), "named_shocks")
    with pytest.raises(InputError) as err:
        named_shocks(spec, ["BTC", "ETH", "USDT"], file="policy.yaml")
    assert (err.value.file, err.value.key) == ("policy.yaml", "stress_scenarios[0].shocks.WBETH")
    with pytest.raises(InputError, match="must be a finite return > -1"):
        named_shocks([{"name": "x", "shocks": {"BTC": -1.0}}], ["BTC"])
    with pytest.raises(InputError, match="used twice"):
        named_shocks([{"name": "x", "shocks": {"BTC": -0.1}}] * 2, ["BTC"])


def test_combine_sets() -> None:
    w = price_window(BTC=[100.0, 110.0, 99.0, 120.0], ETH=[10.0, 10.0, 12.0, 9.0])
    base = historical(w)
    shocks = named_shocks([{"name": "crash", "shocks": {"BTC": -0.5}}], ["BTC", "ETH", "USDT"])
    both = combine(base, shocks)
    assert both.assets == ("BTC", "ETH", "USDT")
    np.testing.assert_array_equal(both.returns[-1], [-0.5, 0.0, 0.0])
    np.testing.assert_array_equal(both.returns[:3, 2], 0.0)             # pegged USDT absent from the history
    assert both.labels == (*base.labels, "crash") and both.weights is None
    np.testing.assert_array_equal(both.probabilities, [0.25] * 4)
    assert both.meta["parts"] == (("historical", 0, 3), ("named_shocks", 3, 1))
    weighted = combine(base, shocks, mass=(1.0, 0.0))
    np.testing.assert_allclose(weighted.weights, [1 / 3, 1 / 3, 1 / 3, 0.0])
    with pytest.raises(RiskModelError, match=r"set 0 \(historical\) has no returns for SOL"):
        combine(base, named_shocks([{"name": "x", "shocks": {"SOL": -0.2}}], ["SOL"]))
    with pytest.raises(RiskModelError, match="cannot combine horizons"):
        combine(base, historical(w, 2))
    grid = combine(stack_grids([span_grid("BTC", 0.1, vol_up=0.1), span_grid("ETH", 0.2)]), base)
    assert grid.vol_shocks is not None and np.all(grid.vol_shocks[32:] == 0.0) and grid.vol_shocks[0, 0] == 0.1
    np.testing.assert_array_equal(grid.coverage[30:33], [0.35, 0.35, 1.0])


# == venue grids ====================================================================================================

MCMILLAN_LONG_FUTURE = [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670, 10000, 10000, -10000, -10000,
                        7000, -7000]


def test_span_grid_is_the_mcmillan_risk_array_order() -> None:
    g = span_grid("ES", 0.1, vol_up=0.05, vol_down=0.04)
    t = 1 / 3
    np.testing.assert_allclose(g.returns[:, 0] / 0.1,
                               [0, 0, t, t, -t, -t, 2 * t, 2 * t, -2 * t, -2 * t, 1, 1, -1, -1, 2, -2], rtol=1e-14)
    np.testing.assert_array_equal(g.vol_shocks[:, 0], [0.05, -0.04] * 7 + [0.0, 0.0])
    np.testing.assert_array_equal(g.coverage, [1.0] * 14 + [0.35, 0.35])
    # a long future whose full scan range is $10,000 (notional 100,000 × 10 %): P&L × cover, rounded to $10
    # as in McMillan's table, is the published array; the extreme moves are exactly ±7,000 = 2 × 10,000 × 0.35
    pnl = 100_000 * g.returns[:, 0] * g.coverage
    np.testing.assert_array_equal(np.round(pnl, -1), MCMILLAN_LONG_FUTURE)
    np.testing.assert_allclose(pnl[14:], [7000, -7000], rtol=1e-12)
    cme = span_grid("ES", 0.1, extreme_multiple=3.0, extreme_cover=0.33)
    np.testing.assert_allclose(100_000 * cme.returns[14:, 0] * cme.coverage[14:], [9900, -9900], rtol=1e-12)
    with pytest.raises(RiskModelError, match="extreme move down"):
        span_grid("BTC", 0.5)


def test_deribit_grid_has_27_scenarios_over_the_btc_range() -> None:
    g = deribit_grid("BTC", 0.16, 4, vol_up=0.5, vol_down=0.25)
    assert g.n_scenarios == 27
    moves = g.returns[:, 0]
    np.testing.assert_allclose(moves[::3], np.linspace(-0.16, 0.16, 9), rtol=1e-14, atol=1e-17)
    assert (moves.min(), moves.max()) == (-0.16, 0.16)
    np.testing.assert_array_equal(g.vol_shocks[:3, 0], [0.5, 0.0, -0.25])
    assert g.labels[0] == "BTC deribit -16.00% vol up"


def test_okx_grid_per_reference() -> None:
    g = okx_mr1_grid("BTC")
    np.testing.assert_allclose(g.returns[:, 0], [0, 0.04, -0.04, 0.08, -0.08, 0.12, -0.12, 0.24, -0.24])
    assert g.meta["component"] == ("MR1",) * 7 + ("MR6",) * 2
    np.testing.assert_allclose(okx_mr1_grid("XRP").returns[-2:, 0], [0.5, -0.5])
    np.testing.assert_allclose(okx_mr1_grid("SOL", moves=(0, 0.05), extreme=0.1).returns[:, 0],
                               [0, 0.05, -0.05, 0.1, -0.1])


def test_grid_for_assets_records_risk_units() -> None:
    g = grid_for_assets("deribit", {"BTC": {"price_range": 0.16}, "ETH": {"price_range": 0.18}})
    assert g.assets == ("BTC", "ETH") and g.n_scenarios == 54
    assert g.meta["units"] == {"BTC": (0, 27), "ETH": (27, 54)}
    assert g.meta["risk_unit"] == ("BTC",) * 27 + ("ETH",) * 27
    np.testing.assert_array_equal(g.returns[:27, 1], 0.0)
    np.testing.assert_array_equal(g.returns[27:, 0], 0.0)
    # per-unit scanning risk of long 1 BTC-USD 1,000 and short ETH-USD 2,000: worst loss within each block
    pnl = g.returns @ np.array([1000.0, -2000.0])
    per_unit = {u: -pnl[a:b].min() for u, (a, b) in g.meta["units"].items()}
    assert per_unit == pytest.approx({"BTC": 160.0, "ETH": 360.0})
    mixed = stack_grids([span_grid("BTC", 0.1), okx_mr1_grid("ETH")])
    assert mixed.meta["grid"] == ("span", "okx")
    assert mixed.meta["component"][16:] == ("MR1",) * 7 + ("MR6",) * 2
    with pytest.raises(RiskModelError, match="bad span grid parameters for BTC"):
        grid_for_assets("span", {"BTC": {"price_range": 0.1}})
    with pytest.raises(RiskModelError, match="two grids for BTC"):
        stack_grids([span_grid("BTC", 0.1), okx_mr1_grid("BTC")])


# == properties =====================================================================================================

def rows(s: ScenarioSet) -> list[tuple[float, ...]]:
    return sorted(map(tuple, s.returns.tolist()))


@PROPS
@given(seed=st.integers(0, 10_000), n_assets=st.integers(1, 4), h=st.integers(1, 3), data=st.data())
def test_asset_order_does_not_change_the_scenarios(seed: int, n_assets: int, h: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    names = [f"A{i}" for i in range(n_assets)]
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.05, (12, n_assets)), axis=0))
    order = data.draw(st.permutations(range(n_assets)))
    w = price_window(**{n: prices[:, i] for i, n in enumerate(names)})
    shuffled = price_window(**{names[i]: prices[:, i] for i in order})
    for gen in (historical, filtered_historical):
        a, b = gen(w, h), gen(shuffled, h)
        np.testing.assert_allclose(b.returns, a.returns[:, order], rtol=1e-12)


@PROPS
@given(seed=st.integers(0, 10_000), data=st.data())
def test_combination_order_keeps_the_multiset_of_scenarios(seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.05, (8, 2)), axis=0))
    parts = [historical(price_window(BTC=prices[:, 0], ETH=prices[:, 1])),
             named_shocks([{"name": "s", "shocks": {"BTC": float(rng.uniform(-0.9, 0.5))}}], ["BTC", "ETH"]),
             monte_carlo(np.diag([1e-3, 2e-3]), ("BTC", "ETH"), 5, seed=seed)]
    order = data.draw(st.permutations(range(3)))
    assert rows(combine(*parts)) == rows(combine(*[parts[i] for i in order]))
    assert rows(combine(*parts)) == sorted(r for p in parts for r in rows(p))
