"""`pmopt sweep`: the recommendation as one policy number varies."""

from __future__ import annotations

from typing import Any

from risk_models.errors import InputError
from risk_models.loading import LoadedBook
from risk_models.market_data import PriceHistory
from risk_models.risk_model import build_scenarios
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy

from .run import Infeasible, optimize

PARAMS = ("buffer", "confidence", "liquidation_distance")


def with_value(policy: Policy, param: str, value: float) -> Policy:
    """The policy with ``param`` set to ``value`` (validated like a policy file)."""
    data = policy.model_dump()
    if param == "buffer":
        data["cross"]["buffer"] = value
    elif param == "confidence":
        data["risk_model"]["confidence"] = value
    elif param == "liquidation_distance":
        data["isolated"]["liquidation_distance"] = value
    elif param.startswith("yield:"):
        data["yields"][param.split(":", 1)[1]] = value
    else:
        raise InputError("--param", param, "unknown parameter", f"use one of {', '.join(PARAMS)} or yield:ASSET")
    return Policy.model_validate(data)


def run_sweep(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, param: str, values: list[float],
              history: PriceHistory) -> list[dict[str, Any]]:
    """One optimization per value; an infeasible point reports its top-up instead of stopping the sweep."""
    rows = []
    for value in values:
        pol = with_value(policy, param, value)
        if pol.risk_model != policy.risk_model:
            scenarios = build_scenarios(pol.risk_model, sorted(loaded.book.prices), history, loaded.book.as_of,
                                        pol.stress_scenarios)
        try:
            doc = optimize(loaded, pol, scenarios).document
            rows.append({"value": value, "status": doc["status"], "objective_value": doc["objective_value"],
                         "locked": doc["after"]["locked"], "free": doc["after"]["free"], "top_up": 0.0})
        except Infeasible as exc:
            rows.append({"value": value, "status": "infeasible", "objective_value": None, "locked": None,
                         "free": None, "top_up": sum(t["value"] for t in exc.document["top_up"])})
    return rows
