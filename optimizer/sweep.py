"""`pmopt sweep`: the recommendation as one policy number varies, re-solving one compiled problem."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from risk_models.compiled import compile_book
from risk_models.errors import InputError
from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy
from risk_models.venue_margin import evaluate

from .problem import alone_unit, build_problem, isolated_need
from .recheck import recheck
from .recommendation import recommended_book
from .run import Infeasible, carry, optimize
from .solve import CompiledProblem
from .working_set import ScenarioOracle, solve_generated, worth_it

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
              on_point: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One solve per value on one compiled problem; every point re-checked; an infeasible point reports the
    smallest top-up (from a full elastic re-solve) instead of stopping the sweep.  ``on_point`` is called with
    each row as soon as it is known (a progress bar)."""
    done = on_point or (lambda _row: None)
    cb = compile_book(loaded)
    data = build_problem(loaded, cb, evaluate(cb), policy, scenarios)
    if data.normal is not None:  # the cone is solved by outer approximation: each point afresh
        fresh = []
        for v in values:
            fresh.append(_fresh_point(loaded, with_value(policy, param, v), scenarios, v))
            done(fresh[-1])
        return fresh
    working = None
    if worth_it(data):  # compile over the working sets of the base policy's optimum (constraint generation)
        base = solve_generated(loaded, data, scenarios, cuts=False)  # rows: aggregated cuts hold the knobs fixed
        working = base.working_sets if base.status != "infeasible" else None
    compiled = CompiledProblem(data, working)
    knobs = compiled.x.knobs
    rows = []
    for value in values:
        pol = with_value(policy, param, value)
        if param == "buffer":
            knobs.buffer.value = value
        elif param == "confidence":
            knobs.tail.value = 1.0 / (1.0 - value)
        elif param == "liquidation_distance":
            venue_of = [cb.position_keys[p.index][0] for p in data.positions]
            needs = [isolated_need(cb, p.index, value, alone_unit(cb, loaded, v, p.index)) / data.scale
                     for p, v in zip(data.positions, venue_of, strict=True)]
            knobs.iso_need.value = np.array([n if math.isfinite(n) else 0.0 for n in needs])
        else:  # yield:ASSET
            horizon = pol.carry_horizon_days / 365.0
            knobs.yields.value = np.array([pol.yields.get(data.assets[s.asset], 0.0) * horizon for s in data.slots])
        sol = compiled.solve()
        if sol is not None and working is not None:
            # the compiled working sets may miss this point's tail: checked over every scenario, else afresh
            point = replace(data, policy=pol, alpha=pol.risk_model.confidence, buffer=pol.cross.buffer)
            if ScenarioOracle(loaded, point, scenarios).separate(compiled.x, working):
                sol = None
        if sol is None:
            rows.append(_fresh_point(loaded, pol, scenarios, value))
            done(rows[-1])
            continue
        book = recommended_book(data, loaded.book, sol)
        recheck(loaded, book, pol, scenarios, data.scale)
        locked, free = carry(loaded, book)
        rows.append({"value": value, "status": sol.status, "objective_value": sol.objective, "locked": locked,
                     "free": free, "top_up": 0.0})
        done(rows[-1])
    return rows


def _fresh_point(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, value: float) -> dict[str, Any]:
    try:
        result = optimize(loaded, policy, scenarios, reductions=False)
    except Infeasible as exc:
        return {"value": value, "status": "infeasible", "objective_value": None, "locked": None, "free": None,
                "top_up": sum(t["value"] for t in exc.document["top_up"])}
    locked, free = carry(loaded, result.book)
    return {"value": value, "status": result.document["status"], "objective_value": result.document["objective_value"],
            "locked": locked, "free": free, "top_up": 0.0}
