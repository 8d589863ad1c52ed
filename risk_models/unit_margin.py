"""Venue portfolio-margin models evaluated per risk unit (one underlying of one margin bucket).

Both shipped models reduce to one shape: the USD requirement of a unit whose underlying moved by a ratio x is

    MM(x) = mm_mult × (max(0, max_j(a_j·x + b_j)) + c),      IM(x) = im_mult × (same)

a convex piecewise-linear function of x, so the liquidation search, scenario revaluation and the optimizer
treat it like bracketed margin.  With D_lin the unit's linear USD delta and D_inv its inverse USD face (both
at x = 1), the PnL of a price move m is D_lin·x·m + D_inv·m in USD at the moved price:

- ``risk_matrix`` (Deribit; inverse only): the risk vector is the coin PnL D_coin·m/(1+m) over 2n+1 moves,
  gains × pnl_offset; worst loss + roll shock |D_coin|·min_annualised_move = initial; maintenance =
  mm_factor × initial.  In USD at the current price: constant in x (the coin delta scales with 1/x).
- ``okx_pm`` (OKX): MR1 = worst loss over the spot-shock moves, MR6 = extreme_cover × worst loss over
  ± extreme_move; MMR = max(MR1, MR6); IMR = imr_factor × MMR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .risk_matrix import matrix_params
from .schema.rules import OkxPmModel, RiskMatrixModel


@dataclass(frozen=True)
class UnitMargins:
    """U risk units: bucket, underlying asset, and the pieces of their requirement (USD)."""

    bucket: np.ndarray  # (U,) int
    underlying: np.ndarray  # (U,) asset index
    slopes: np.ndarray  # (U, J)
    intercepts: np.ndarray  # (U, J)
    const: np.ndarray  # (U,)
    mm_mult: np.ndarray  # (U,)
    im_mult: np.ndarray  # (U,)

    @classmethod
    def empty(cls) -> UnitMargins:
        z = np.zeros(0)
        return cls(np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros((0, 1)), np.zeros((0, 1)), z, z, z)

    def __len__(self) -> int:
        return len(self.bucket)

    def take(self, idx: np.ndarray) -> UnitMargins:
        return UnitMargins(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def inner(self, x: np.ndarray) -> np.ndarray:
        """max(0, max_j(a_j x + b_j)) + c for x of shape (U,) or (U, K)."""
        col = (lambda a: a) if x.ndim == 1 else (lambda a: a[:, None])
        worst = np.zeros_like(x, dtype=float)
        for j in range(self.slopes.shape[1]):
            np.maximum(worst, col(self.slopes[:, j]) * x + col(self.intercepts[:, j]), out=worst)
        return worst + col(self.const)

    def maintenance(self, x: np.ndarray) -> np.ndarray:
        return self.inner(x) * (self.mm_mult if x.ndim == 1 else self.mm_mult[:, None])

    def initial(self, x: np.ndarray) -> np.ndarray:
        return self.inner(x) * (self.im_mult if x.ndim == 1 else self.im_mult[:, None])

    def bucket_maintenance(self, growth: np.ndarray, n_buckets: int) -> np.ndarray:
        """(B, S) requirement of every bucket with each unit's underlying moved by ``growth`` (A, S)."""
        out = np.zeros((n_buckets, growth.shape[1]))
        if len(self):
            np.add.at(out, self.bucket, self.maintenance(growth[self.underlying]))
        return out


@dataclass(frozen=True)
class UnitMember:
    """One position of a portfolio-margined venue, as the unit builder needs it."""

    row: int
    bucket: int
    underlying: int  # asset index
    name: str  # underlying asset name (parameters are per underlying)
    inverse: bool
    size: float  # qty × contract_size (signed)
    mark: float
    settle_price: float  # USD
    underlying_price: float  # USD
    ask: float
    model: RiskMatrixModel | OkxPmModel


def _pieces(model: RiskMatrixModel | OkxPmModel, name: str, d_lin: float, d_inv: float
            ) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    if isinstance(model, RiskMatrixModel):
        params = matrix_params(model, name)
        m = params.moves
        pnl = d_inv * m / (1.0 + m)
        intercepts = np.concatenate([-pnl, -params.pnl_offset * pnl])
        return (np.zeros_like(intercepts), intercepts, abs(d_inv) * params.min_annualised_move, params.mm_factor,
                1.0)
    group = model.group(name)
    spot = np.array(group.spot_moves)
    moves = np.concatenate([[0.0], spot, -spot])
    extreme = np.array([group.extreme_move, -group.extreme_move])
    slopes = np.concatenate([-d_lin * moves, -model.extreme_cover * d_lin * extreme])
    intercepts = np.concatenate([-d_inv * moves, -model.extreme_cover * d_inv * extreme])
    return slopes, intercepts, 0.0, 1.0, model.imr_factor


def build_units(members: list[UnitMember]) -> tuple[UnitMargins, dict[int, tuple[float, float]]]:
    """The units of ``members`` grouped by (bucket, underlying), and each position's (MM, IM) alone, USD."""
    groups: dict[tuple[int, int], list[UnitMember]] = {}
    for m in members:
        groups.setdefault((m.bucket, m.underlying), []).append(m)
    rows = []
    for (bucket, underlying), ms in groups.items():
        rows.append((bucket, underlying, *_unit(ms)))
    alone = {}
    for m in members:
        slopes, intercepts, const, mm_mult, im_mult = _unit([m])
        unit = _assemble([(m.bucket, m.underlying, slopes, intercepts, const, mm_mult, im_mult)])
        one = np.ones(1)
        alone[m.row] = (float(unit.maintenance(one)[0]), float(unit.initial(one)[0]))
    return (_assemble(rows) if rows else UnitMargins.empty()), alone


def _unit(ms: list[UnitMember]) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    d_lin = sum(m.size * m.mark * m.settle_price for m in ms if not m.inverse)
    d_inv = sum(m.size * m.underlying_price / m.mark for m in ms if m.inverse)
    slopes, intercepts, const, mm_mult, im_mult = _pieces(ms[0].model, ms[0].name, d_lin, d_inv)
    return slopes, intercepts, const, mm_mult * ms[0].ask, im_mult * ms[0].ask


def _assemble(rows: list[tuple]) -> UnitMargins:
    width = max(len(r[2]) for r in rows)

    def pad(a: np.ndarray) -> np.ndarray:  # repeating a piece never changes a maximum
        return np.concatenate([a, np.full(width - len(a), a[0])])

    return UnitMargins(
        bucket=np.array([r[0] for r in rows], dtype=int), underlying=np.array([r[1] for r in rows], dtype=int),
        slopes=np.stack([pad(r[2]) for r in rows]), intercepts=np.stack([pad(r[3]) for r in rows]),
        const=np.array([r[4] for r in rows]), mm_mult=np.array([r[5] for r in rows]),
        im_mult=np.array([r[6] for r in rows]),
    )
