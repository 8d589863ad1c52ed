"""From a policy's ``risk_model`` (spec §3) to a ScenarioSet: the glue between market data and generators.

Defaults when no policy is given (spec §5): historical simulation, 99 % expected shortfall, 1-day horizon,
1,095-day window, buffer 1, USDT and USDC pegged.  The parametric model is a 10,000-draw normal Monte Carlo
from the RiskMetrics EWMA covariance (λ 0.94) of the window's daily log returns (seed 0, reproducible); the
grid model is OKX's MR1/MR6 price grid per risk unit (reference §4), aggregated per unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .delta_normal import NormalModel
from .estimators import EWMACovariance
from .market_data import PriceHistory, PriceWindow
from .scenarios import (
    ScenarioSet,
    combine,
    filtered_historical,
    grid_for_assets,
    historical,
    monte_carlo,
    named_shocks,
)
from .scenarios.historical import return_span
from .schema.policy import RiskModelPolicy, StressScenario

MC_SCENARIOS = 10_000


def build_scenarios(model: RiskModelPolicy, assets: Sequence[str], history: PriceHistory,
                    as_of: str | None = None, stress: Sequence[StressScenario] = (), policy_file: str = "policy"
                    ) -> ScenarioSet:
    """The scenario set of ``model`` over the book's ``assets`` (pegged ones stay at 0), window ending ``as_of``."""
    pegged = tuple(model.pegged)
    risky = [a for a in assets if a not in pegged]
    h = model.horizon_days
    if not risky:
        sc = ScenarioSet((), np.zeros((1, 0)), ("no move",), model.kind, h)
    elif model.kind == "grid":
        sc = grid_for_assets("okx", {a: {} for a in risky})
    else:
        window = history.window(risky, end=as_of, days=model.window_days, pegged=pegged)
        if model.kind == "historical":
            sc = historical(window, h)
        elif model.kind == "filtered_historical":
            sc = filtered_historical(window, h)
        else:
            cov = EWMACovariance().fit(window.log_returns()).covariance_
            sc = monte_carlo(cov, window.assets, MC_SCENARIOS, seed=0, horizon_days=h, pegged=pegged)
            # the covariance travels with the draws: the delta-normal method uses it in closed form
            normal = NormalModel(tuple(window.assets), cov, model.confidence, h)
            sc = ScenarioSet(sc.assets, sc.returns, sc.labels, "parametric", h, window=_span(window),
                             meta={**sc.meta, "normal": normal, "method": model.method})
    if stress:
        shocks = named_shocks([s.model_dump() for s in stress], tuple(assets), horizon_days=h, file=policy_file)
        sc = combine(sc, shocks, pegged=pegged)
    return sc


def _span(window: PriceWindow) -> tuple[str, str]:
    return return_span(window)
