"""The delta-normal (parametric, closed-form) net portfolio margin: ``R_b = c·√h·‖Fᵀδ_b‖₂ + k·MM_b``.

δ_b (A,) is the first-order USD sensitivity of bucket b's equity to each asset's simple return, ∂E_b/∂r_a at
today's prices: positions *and collateral* together (a BTC long funded with BTC has twice the BTC delta of the
long alone), with the venue's own valuation (haircuts, bid rates, folded PnL) — computed here by central
differences of the exact revaluation, so it holds for every rule shape.  F is a factor of the covariance Σ of
daily returns (F Fᵀ = Σ), c = φ(z_α)/(1 − α) the normal expected-shortfall factor, h the horizon in days, k the
buffer and MM_b today's maintenance margin (spec §5: the parametric model uses the margin at current prices).
The optimizer's second-order-cone constraint is the same formula in its variables (optimizer.formulation), and a
test holds the two equal.  Amounts in USD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiled import CompiledBook
from .errors import RiskModelError
from .measures import cov_factor, normal_es_factor
from .portfolio_margin import BucketRisk
from .revaluation import revalue
from .scenarios import ScenarioSet
from .venue_margin import MarginState, unrealized_pnl

BUMP = 1e-6
"""Relative price bump of the central differences (the result is exact for equity linear in each price)."""


@dataclass(frozen=True)
class NormalModel:
    """A covariance of daily simple returns over ``assets`` (pegged assets absent or zero), the confidence α and
    the horizon h (days)."""

    assets: tuple[str, ...]
    covariance: np.ndarray  # (A, A) per day
    alpha: float
    horizon_days: int = 1

    @property
    def multiplier(self) -> float:
        """c·√h: the expected shortfall of a unit-σ daily normal loss over the horizon."""
        return normal_es_factor(self.alpha) * float(np.sqrt(self.horizon_days))

    def factor_for(self, assets: list[str]) -> np.ndarray:
        """F (len(assets), r) with F Fᵀ = Σ on ``assets`` (rows of assets outside the model are zero)."""
        f = cov_factor(self.covariance)
        index = {a: i for i, a in enumerate(self.assets)}
        out = np.zeros((len(assets), f.shape[1]))
        for i, a in enumerate(assets):
            if a in index:
                out[i] = f[index[a]]
        return out


def bucket_deltas(cb: CompiledBook) -> np.ndarray:
    """(B, A) USD: ∂E_b/∂r_a, every bucket's equity sensitivity to each asset of ``cb.assets``."""
    n_a = len(cb.assets)
    growth = np.ones((n_a, 2 * n_a))
    idx = np.arange(n_a)
    growth[idx, 2 * idx] += BUMP
    growth[idx, 2 * idx + 1] -= BUMP
    equity = revalue(cb, growth).equity
    return (equity[:, 0::2] - equity[:, 1::2]) / (2 * BUMP)


def position_deltas(cb: CompiledBook) -> np.ndarray:
    """(P, A) USD: each position's PnL sensitivity at 100 % valuation — ∂PnL/∂x · settle price on its underlying
    and PnL × settle price on its settle asset (the PnL is paid in the settle asset)."""
    pa = cb.positions
    n_p = len(pa.qty)
    out = np.zeros((n_p, len(cb.assets)))
    if not n_p:
        return out
    marks = pa.mark[:, None] * np.array([1 + BUMP, 1 - BUMP])[None, :]
    pnl = unrealized_pnl(pa, marks)
    slope = (pnl[:, 0] - pnl[:, 1]) / (2 * BUMP)
    settle_price = cb.prices[pa.settle]
    rows = np.arange(n_p)
    np.add.at(out, (rows, pa.underlying), slope * settle_price)
    np.add.at(out, (rows, pa.settle), unrealized_pnl(pa, pa.mark[:, None])[:, 0] * settle_price)
    return out


def normal_requirement(cb: CompiledBook, state: MarginState, model: NormalModel, buffer: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(R_b, stressed equity E_b − c√h‖Fᵀδ_b‖) for every bucket, USD."""
    f = model.factor_for(cb.assets)
    sigma = np.linalg.norm(bucket_deltas(cb) @ f, axis=1)
    loss = model.multiplier * sigma
    return loss + buffer * state.maintenance, state.equity - loss


def normal_model_of(scenarios: ScenarioSet, method: str) -> NormalModel | None:
    """The covariance model of a parametric scenario set when the policy asks for the closed form, else None."""
    if method != "delta_normal":
        return None
    model = scenarios.meta.get("normal")
    if not isinstance(model, NormalModel):
        raise RiskModelError("risk_model.method delta_normal needs a parametric model's covariance, and this scenario "
                             "set has none", "use risk_model.kind: parametric (the covariance is fitted on the window)")
    return model


def normal_bucket_risks(cb: CompiledBook, state: MarginState, model: NormalModel, buffer: float
                        ) -> list[BucketRisk]:
    """Every bucket's delta-normal margin with Euler contributions that sum exactly to it.

    The loss part c√h‖Fᵀδ_b‖ splits as Σ_items c√h·(Fᵀδ_item)ᵀu_b with u_b = Fᵀδ_b/‖Fᵀδ_b‖: each position's own
    delta (its PnL at 100 %), and per collateral asset the rest of the pool's delta in that asset (the holdings'
    haircut value, net of what the venue's valuation does to the positions' PnL); each position adds k × its MM.
    Standalone: the same measure per item alone, summed.
    """
    f = model.factor_for(cb.assets)
    c = model.multiplier
    deltas = bucket_deltas(cb)
    pos_deltas = position_deltas(cb)
    pa = cb.positions
    mm = state.terms.mm_usd
    out = []
    for b in range(cb.n_buckets):
        sigma = deltas[b] @ f
        norm = float(np.linalg.norm(sigma))
        u = sigma / norm if norm > 0 else np.zeros_like(sigma)
        rows = np.nonzero(pa.bucket == b)[0]
        rest = deltas[b] - pos_deltas[rows].sum(axis=0)
        contributions: dict[str, float] = {}
        standalone = float(cb.bucket_extra_mm[b]) * buffer if len(cb.bucket_extra_mm) else 0.0
        if len(cb.bucket_extra_mm) and cb.bucket_extra_mm[b]:
            contributions["venue:portfolio_margin"] = buffer * float(cb.bucket_extra_mm[b])
        for p in rows:
            s = pos_deltas[p] @ f
            contributions[cb.position_keys[p][2]] = c * float(s @ u) + buffer * float(mm[p])
            standalone += c * float(np.linalg.norm(s)) + buffer * float(mm[p])
        moving = np.abs(rest) > 1e-9 * max(1.0, float(np.abs(deltas[b]).max(initial=0.0)))
        for a in np.nonzero(moving & np.any(f != 0, axis=1))[0]:  # pegged and unmodelled assets carry no risk
            s = rest[a] * f[a]
            contributions[f"collateral:{cb.assets[a]}"] = c * float(s @ u)
            standalone += c * float(np.linalg.norm(s))
        need = c * norm + buffer * float(state.maintenance[b])
        out.append(BucketRisk(b, need, float(state.equity[b]) - c * norm, standalone, standalone - need,
                              contributions, []))
    return out
