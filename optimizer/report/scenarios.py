"""Per-scenario needs of every cross pool, from risk_models' exact revaluation (the re-check's own path).

A pool's need in scenario s is its counted loss plus buffered maintenance margin, cover_s·(L_s + k·MM_s), USD;
the policy's requirement R is ρ of these needs (expected shortfall or worst case), and the pool survives when its
posted equity is at least R.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk_models.loading import LoadedBook
from risk_models.revaluation import growth_matrix, revalue
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy

from ..recheck import Checked, evaluate_book


@dataclass(frozen=True)
class WorstScenario:
    """One of a pool's worst scenarios by counted loss.  USD."""

    label: str  # the scenario's date (historical sets) or name
    loss: float
    need: float


@dataclass(frozen=True)
class PoolScenarios:
    """One cross pool in every scenario.  USD."""

    label: str  # "venue/account/cross"
    venue: str
    account: str
    equity: float
    maintenance_margin: float
    requirement: float  # R = ρ(needs), the buffered net portfolio margin
    stressed_equity: float
    needs: np.ndarray  # (S,) cover·(L_s + k·MM_s)
    worst: tuple[WorstScenario, ...]


def pool_scenarios(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet,
                   checked: Checked | None = None) -> list[PoolScenarios]:
    """Every cross pool of ``loaded`` under ``scenarios`` with the policy's buffer; ``checked`` is its evaluation by
    the re-check (computed when not given)."""
    checked = checked or evaluate_book(loaded, policy, scenarios)
    cb, st = checked.compiled, checked.state
    rv = revalue(cb, growth_matrix(cb, scenarios, tuple(policy.risk_model.pegged)))
    loss = st.equity[:, None] - rv.equity
    needs = scenarios.coverage * (loss + policy.cross.buffer * rv.maintenance)
    index = {label: s for s, label in enumerate(scenarios.labels)}
    out = []
    for b, bucket in enumerate(cb.buckets):
        if bucket.symbol is not None:
            continue
        risk = checked.risks[b]
        worst = tuple(WorstScenario(label, loss_s, float(needs[b, index[label]]))
                      for label, loss_s in risk.worst_scenarios)
        out.append(PoolScenarios(bucket.label, bucket.venue, bucket.account, float(st.equity[b]),
                                 float(st.maintenance[b]), risk.net_portfolio_margin, risk.stressed_equity,
                                 needs[b].copy(), worst))
    return out
