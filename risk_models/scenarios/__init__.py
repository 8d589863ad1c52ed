"""Scenario sets: joint asset returns over a horizon (historical, filtered historical, stressed, parametric,
venue-style grids)."""

from .base import ScenarioSet
from .filtered import filtered_historical
from .grids import deribit_grid, grid_for_assets, okx_mr1_grid, span_grid, stack_grids
from .historical import historical
from .parametric import monte_carlo
from .stressed import STRESS_WINDOWS, combine, named_shocks, stressed

__all__ = [
    "STRESS_WINDOWS",
    "ScenarioSet",
    "combine",
    "deribit_grid",
    "filtered_historical",
    "grid_for_assets",
    "historical",
    "monte_carlo",
    "named_shocks",
    "okx_mr1_grid",
    "span_grid",
    "stack_grids",
    "stressed",
]
