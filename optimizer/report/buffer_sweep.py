"""Capital needed as the cross buffer k varies: one re-checked optimization per value.

Rows have the keys of ``optimizer.sweep.run_sweep``.  Each point is solved afresh by ``optimizer.run.optimize`` (its
scenario working sets make a point about as fast as one ``pmopt optimize``), rather than by ``run_sweep``'s one
compiled problem over every scenario, which is exact too but about 20 times slower per point on the example desk.
"""

from __future__ import annotations

from typing import Any

from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy

from ..run import Infeasible, carry, optimize
from ..sweep import with_value

DEFAULT_BUFFERS = (1.0, 1.25, 1.5, 2.0, 3.0)


def buffer_sweep(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, values: list[float],
                 time_limit: float = 120.0) -> list[dict[str, Any]]:
    """One row per buffer value: status, objective_value and locked/free capital (USD), or the smallest top-up
    (USD) when the policy cannot be met at that buffer."""
    rows = []
    for value in values:
        try:
            result = optimize(loaded, with_value(policy, "buffer", value), scenarios, time_limit, reductions=False)
        except Infeasible as exc:
            rows.append({"value": value, "status": "infeasible", "objective_value": None, "locked": None,
                         "free": None, "top_up": sum(t["value"] for t in exc.document["top_up"])})
            continue
        locked, free = carry(loaded, result.book)
        rows.append({"value": value, "status": result.document["status"],
                     "objective_value": result.document["objective_value"], "locked": locked, "free": free,
                     "top_up": 0.0})
    return rows

