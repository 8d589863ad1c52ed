"""Scenario sets: joint asset returns over a horizon (historical, filtered historical, stressed, parametric,
venue-style grids)."""

from .base import ScenarioSet

__all__ = ["ScenarioSet"]
