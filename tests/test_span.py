"""SPAN-style scanning risk and spreads (risk_models.span) against the published numbers of margin-rules §4."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from risk_models.measures import RiskMeasure
from risk_models.span import (
    calendar_spread_charge,
    futures_risk_array,
    inter_commodity_credit,
    inter_unit_offset,
    inter_unit_offset_expr,
    scan_risk,
    scanning_offset,
    span_cover,
    span_price_moves,
    span_requirement,
)

# cvxpy 1.9 warns while inferring bounds of A @ x (0 × inf); the forms here do not depend on those bounds
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")

# McMillan, S&P future $500/pt, scan range $10,000, extreme entries already at 35 % of 2 × range (profit positive)
LONG_FUTURE = np.array([0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670, 10000, 10000, -10000, -10000,
                        7000, -7000], dtype=float)
LONG_CALL = np.array([460, -610, 2640, 1730, -1270, -2340, 5210, 4540, -2540, -3430, 8060, 7640, -3380, -3990,
                      3130, -1500], dtype=float)


def test_mcmillan_long_call() -> None:
    assert scan_risk(LONG_CALL) == 3990.0
    assert span_requirement(LONG_CALL) == 3990.0


def test_mcmillan_covered_write() -> None:
    covered_write = LONG_FUTURE - LONG_CALL  # long future, short call: worst in scenario 13 (down 3/3, vol up)
    assert scan_risk(covered_write) == 6620.0
    assert span_requirement(covered_write) == 6620.0
    assert span_requirement(covered_write, short_option_minimum=7000.0) == 7000.0


def test_cover_applied_or_not() -> None:
    """McMillan's arrays carry the cover; a raw array (full extreme P&L) with the cover vector gives the same."""
    assert np.allclose(futures_risk_array(10_000.0), LONG_FUTURE, atol=5.0)  # McMillan rounds to $10
    raw = 10_000.0 * span_price_moves()
    assert raw[14] == 20_000.0
    assert scan_risk(raw) == 20_000.0  # raw array, cover not applied: the full extreme loss
    assert scan_risk(raw, span_cover(0.35)) == pytest.approx(10_000.0)
    assert scan_risk(raw, span_cover(0.35)) == pytest.approx(scan_risk(futures_risk_array(10_000.0)))
    cme = futures_risk_array(900.0, extreme_multiple=3.0, extreme_cover=0.33)  # CME's parameters
    assert cme[14] == pytest.approx(891.0) and scan_risk(cme) == pytest.approx(900.0)
    assert scan_risk(-LONG_FUTURE[:2]) == 0.0  # no loss: 0


def test_cme_calendar_spreads() -> None:
    charges = calendar_spread_charge({"M2": 500.0, "M3": 500.0, "M4": 750.0},
                                     {("M2", "M3"): 200.0, ("M2", "M4"): 50.0, ("M3", "M4"): 0.0})
    assert charges == {("M2", "M3"): 200.0, ("M2", "M4"): 300.0, ("M3", "M4"): 250.0}
    # the first term is the scan risk of long-one/short-the-other with aligned scenarios
    m2, m4 = futures_risk_array(500.0), futures_risk_array(750.0)
    assert scan_risk(m2 - m4) == pytest.approx(250.0)
    with pytest.raises(KeyError, match="M5"):
        calendar_spread_charge({"M2": 500.0}, {("M2", "M5"): 10.0})


def test_cme_scanning_based_spread_30y_10y() -> None:
    leg_30y = 2 * futures_risk_array(3100.0)  # +2 30Y
    leg_10y = -3 * futures_risk_array(1600.0)  # −3 10Y
    assert scan_risk(leg_30y) + scan_risk(leg_10y) == pytest.approx(11_000.0)  # summed outrights
    # worst scenario: rates up, 30Y loses 6,200 while the 10Y short gains 4,800: 6,200 − 0.7 × 4,800
    assert scanning_offset(leg_30y, leg_10y, 0.70) == pytest.approx(2840.0)
    assert scanning_offset(leg_10y, leg_30y, 0.70) == pytest.approx(2840.0)  # roles are per scenario
    raw = [2 * 3100.0 * span_price_moves(), -3 * 1600.0 * span_price_moves()]
    assert scanning_offset(*raw, 0.70, cover=span_cover(0.35)) == pytest.approx(2840.0)


def test_corn_soybeans_ratio_spread() -> None:
    """2:1 at 55 %: 2 × 1,750 + 2,500 = 6,000 outright, credit 0.55 × 6,000 = 3,300 → 2,700.

    This is the traditional (ratio-based) credit.  The scanning-based definition gives 3,500 − 0.55 × 2,500 =
    2,125 for the same legs, not 2,700: the two published examples use different methods."""
    corn, soy = 2 * futures_risk_array(1750.0), -1 * futures_risk_array(2500.0)
    credits = inter_commodity_credit([2, -1], [2, -1], [1750.0, 2500.0], 0.55)
    assert credits == pytest.approx([1925.0, 1375.0])
    total = (span_requirement(corn, inter_commodity_credit=credits[0])
             + span_requirement(soy, inter_commodity_credit=credits[1]))
    assert total == pytest.approx(2700.0)
    assert scanning_offset(corn, soy, 0.55) == pytest.approx(2125.0)
    # spreads formed: 5 corn long / 2 soy short → 2 spreads; same side on both legs → none
    assert inter_commodity_credit([5, -2], [2, -1], [1750.0, 2500.0], 0.55) == pytest.approx([3850.0, 2750.0])
    assert inter_commodity_credit([-4, 2], [2, -1], [1750.0, 2500.0], 0.55) == pytest.approx([3850.0, 2750.0])
    assert inter_commodity_credit([2, 1], [2, -1], [1750.0, 2500.0], 0.55) == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("seed", range(6))
def test_inter_unit_offset_numpy_equals_cvxpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units, scen = int(rng.integers(1, 5)), 27
    pnl = rng.normal(0.0, 1e3, (units, scen))
    credit = rng.uniform(0.0, 1.0, units) if seed % 2 else 0.6
    losses = inter_unit_offset(pnl, credit)
    c = np.broadcast_to(credit, (units,))[:, None]
    assert np.allclose(losses, (np.maximum(-pnl, 0) - c * np.maximum(pnl, 0)).sum(axis=0))
    param = cp.Parameter((units, scen), value=pnl)
    expr, cons = inter_unit_offset_expr(param, credit)
    prob = cp.Problem(cp.Minimize(cp.sum(expr)), cons)
    prob.solve(solver=cp.HIGHS)
    assert np.allclose(expr.value, losses, rtol=1e-9, atol=1e-6)
    # inside a risk measure (the way grid scenario sets use it): minimized worst case / ES = numpy
    for measure in (RiskMeasure("worst"), RiskMeasure("es", 0.9)):
        expr, cons = inter_unit_offset_expr(param, credit)
        risk, more = measure.expression(expr)
        prob = cp.Problem(cp.Minimize(risk), [*cons, *more])
        prob.solve(solver=cp.HIGHS)
        assert prob.value == pytest.approx(measure.evaluate(losses), abs=1e-6)
    # credit 1: full netting (loss = −Σ pnl); credit 0: gains ignored
    assert np.allclose(inter_unit_offset(pnl, 1.0), -pnl.sum(axis=0))
    assert np.allclose(inter_unit_offset(pnl, 0.0), np.maximum(-pnl, 0).sum(axis=0))
