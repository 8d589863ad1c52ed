"""Deribit-style portfolio margin (``margin_model: {kind: risk_matrix}``) for inverse futures and perpetuals.

Per currency (underlying) of a margin bucket, on the bucket's net coin delta D = Σ qty × contract_size / mark:
the risk vector is the PnL in coin of 2·buckets_count + 1 evenly spaced price moves m over ±price_range,
``D × m / (1 + m)`` (inverse PnL ``qty_usd × (1/P0 − 1/P1)``); volatility moves leave futures unchanged.
Gains are scaled by pnl_offset, the worst loss is taken, the perpetual's roll shock ``|D| × min_annualised_move``
is added: that is the initial margin; maintenance = mm_factor × initial.  Coin amounts; USD = × price, which is
independent of the price level for inverse contracts (D × P is the fixed USD face value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema.rules import RiskMatrixModel

_REQUIRED = ("price_range", "buckets_count", "min_annualised_move", "mm_factor")


@dataclass(frozen=True)
class MatrixParams:
    price_range: float
    buckets_count: int
    min_annualised_move: float
    mm_factor: float
    pnl_offset: float = 1.0

    @property
    def moves(self) -> np.ndarray:
        """The price moves of the risk vector (fractions), 0 included."""
        return np.linspace(-self.price_range, self.price_range, 2 * self.buckets_count + 1)


def matrix_params(model: RiskMatrixModel, underlying: str) -> MatrixParams:
    """The model's parameters for ``underlying`` (its per_underlying overrides over the top level)."""
    merged = model.model_dump(exclude={"kind", "per_underlying"}, exclude_none=True)
    override = model.per_underlying.get(underlying)
    if override is not None:
        merged.update(override.model_dump(exclude_none=True))
    missing = [k for k in _REQUIRED if k not in merged]
    if missing:
        raise ValueError(f"risk_matrix parameters for {underlying} lack {', '.join(missing)}")
    return MatrixParams(merged["price_range"], int(merged["buckets_count"]), merged["min_annualised_move"],
                        merged["mm_factor"], merged.get("pnl_offset", 1.0))


def matrix_margin(delta_coin: float, params: MatrixParams) -> tuple[float, float]:
    """(initial, maintenance) margin in coin of a net coin delta ``delta_coin``."""
    m = params.moves
    pnl = delta_coin * m / (1.0 + m)
    scaled = np.where(pnl > 0, pnl * params.pnl_offset, pnl)
    worst = max(0.0, float(-scaled.min()))
    initial = worst + abs(delta_coin) * params.min_annualised_move
    return initial, params.mm_factor * initial
