"""The one object that carries a joint scenario distribution from generation to risk measurement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import RiskModelError


@dataclass(frozen=True)
class ScenarioSet:
    """S joint scenarios over A assets.

    ``returns[s, a]`` is the simple return of asset a over the horizon in scenario s: the shocked USD price is
    ``price × (1 + returns[s, a])`` (so returns are > −1).  ``weights`` are probabilities (>= 0, sum 1) used by
    the risk measures; ``cover[s]`` is the fraction of scenario s's loss that counts (SPAN's extreme moves count
    a fraction, default 1); ``vol_shocks[s, a]`` is a relative implied-volatility move for grid scenarios (None
    for price-only sets).  ``labels`` name the scenarios (dates for historical sets, e.g. "2020-03-12").
    """

    assets: tuple[str, ...]
    returns: np.ndarray  # (S, A)
    labels: tuple[str, ...]
    kind: str
    horizon_days: int = 1
    weights: np.ndarray | None = None  # (S,) defaults to uniform
    cover: np.ndarray | None = None  # (S,) defaults to ones
    vol_shocks: np.ndarray | None = None  # (S, A)
    window: tuple[str, str] | None = None  # first and last date of the data behind the set
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s, a = self.returns.shape
        if a != len(self.assets):
            raise ValueError(f"returns has {a} columns for {len(self.assets)} assets")
        if len(self.labels) != s:
            raise ValueError(f"{len(self.labels)} labels for {s} scenarios")
        if not np.all(np.isfinite(self.returns)) or np.any(self.returns <= -1.0):
            raise ValueError("scenario returns must be finite and > -1 (a price cannot fall to or below 0)")
        for name in ("weights", "cover"):
            v = getattr(self, name)
            if v is not None and (v.shape != (s,) or np.any(v < 0)):
                raise ValueError(f"{name} must be a non-negative vector of length {s}")
        if self.weights is not None and not np.isclose(self.weights.sum(), 1.0, rtol=1e-9, atol=1e-12):
            raise ValueError("weights must sum to 1")

    @property
    def n_scenarios(self) -> int:
        return self.returns.shape[0]

    @property
    def probabilities(self) -> np.ndarray:
        """Scenario weights (uniform when not given)."""
        s = self.n_scenarios
        return np.full(s, 1.0 / s) if self.weights is None else self.weights

    @property
    def coverage(self) -> np.ndarray:
        return np.ones(self.n_scenarios) if self.cover is None else self.cover

    def returns_of(self, assets: Sequence[str], pegged: Sequence[str] = ()) -> np.ndarray:
        """(S, len(assets)) returns in the given asset order; pegged assets (and only they) may be absent: 0."""
        return self.growth_of(assets, pegged).T - 1.0

    def growth_of(self, assets: Sequence[str], pegged: Sequence[str] = ()) -> np.ndarray:
        """(len(assets), S) price growth factors 1 + r, asset-major (the layout revaluation works in)."""
        index = {a: i for i, a in enumerate(self.assets)}
        missing = [a for a in assets if a not in index and a not in pegged]
        if missing:
            raise RiskModelError(f"the scenario set has no returns for {', '.join(missing)}",
                                 "include every asset of the book (only pegged assets may be absent)")
        rows = np.array([index.get(a, -1) for a in assets], dtype=int)
        out = self._growth_t[np.maximum(rows, 0)]
        out[rows < 0] = 1.0
        return out

    @cached_property
    def _growth_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.returns.T) + 1.0
