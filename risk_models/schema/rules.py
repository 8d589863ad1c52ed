"""The rules file (spec §2): one venue's margin rules, validated.  Amounts in settle-asset units unless noted."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from .common import Strict


def _caps_ascending(caps: list[float | None], what: str) -> None:
    """Caps strictly ascending; only the last may be null (unbounded)."""
    for i, cap in enumerate(caps[:-1]):
        if cap is None:
            raise ValueError(f"{what} {i}: only the last {what} may have cap null")
        nxt = caps[i + 1]
        if nxt is not None and nxt <= cap:
            raise ValueError(f"{what}s are not ascending: cap {nxt:g} ({what} {i + 1}) <= cap {cap:g} ({what} {i})")


class Bracket(Strict):
    """One maintenance tier: notional up to ``cap`` (settle units; None = unbounded) at rate ``mmr``."""

    cap: float | None = Field(default=None, gt=0)
    mmr: float = Field(ge=0, lt=1)
    max_leverage: float = Field(gt=0)


class SizeMargin(Strict):
    """Deribit-style size-dependent standard margin (extra key ``size_margin``; spec §2 allows such keys).

    Rates grow linearly with the position's notional in settle units:
    ``IM rate = initial_base + rate_per_unit × N``, ``MM rate = maintenance_base + rate_per_unit × N``.
    """

    initial_base: float = Field(ge=0, lt=1)
    maintenance_base: float = Field(ge=0, lt=1)
    rate_per_unit: float = Field(ge=0)


class OpenInterestScaling(Strict):
    """dYdX v4 open-interest IMF scaling (extra key ``open_interest_scaling``), amounts in USD notional.

    ``effective_IMF = min(IMF + max((open_interest − lower_cap) / (upper_cap − lower_cap), 0) × (1 − IMF), 1)``
    where IMF = 1 / max_leverage of the bracket; the maintenance fraction is not scaled.
    """

    lower_cap: float = Field(ge=0)
    upper_cap: float = Field(gt=0)
    open_interest: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> OpenInterestScaling:
        if self.upper_cap <= self.lower_cap:
            raise ValueError("upper_cap must be greater than lower_cap")
        return self


class Contract(Strict):
    """One tradable contract of a venue."""

    underlying: str
    settle: str
    kind: Literal["linear", "inverse"]
    contract_size: float = Field(gt=0)
    brackets: list[Bracket] = Field(default_factory=list)
    """Empty only on a venue whose margin_model replaces brackets."""
    isolated_allowed: bool = True
    size_margin: SizeMargin | None = None
    open_interest_scaling: OpenInterestScaling | None = None

    @field_validator("brackets")
    @classmethod
    def _ascending(cls, brackets: list[Bracket]) -> list[Bracket]:
        _caps_ascending([b.cap for b in brackets], "bracket")
        for i, b in enumerate(brackets[:-1]):
            nxt = brackets[i + 1]
            if nxt.mmr < b.mmr:
                raise ValueError(
                    f"brackets are not ascending: mmr {nxt.mmr:g} (bracket {i + 1}) < mmr {b.mmr:g} (bracket {i})"
                )
        return brackets

    @cached_property
    def caps(self) -> np.ndarray:
        """Upper notional bound of each bracket, settle units (inf for an unbounded last bracket)."""
        return np.array([math.inf if b.cap is None else b.cap for b in self.brackets])

    @cached_property
    def mmrs(self) -> np.ndarray:
        return np.array([b.mmr for b in self.brackets])

    @cached_property
    def max_leverages(self) -> np.ndarray:
        return np.array([b.max_leverage for b in self.brackets])

    @cached_property
    def cums(self) -> np.ndarray:
        """Maintenance amounts: ``cum_1 = 0, cum_n = cum_{n-1} + cap_{n-1} × (mmr_n − mmr_{n-1})``."""
        mmr = self.mmrs
        cum = np.zeros_like(mmr)
        if len(mmr) > 1:
            cum[1:] = np.cumsum(self.caps[:-1] * np.diff(mmr))
        return cum

    @property
    def position_limit(self) -> float:
        """Largest allowed notional in settle units (a finite last cap), inf when unbounded."""
        return float(self.caps[-1]) if len(self.caps) else math.inf

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))


class HaircutTier(Strict):
    """Collateral tier: value up to ``cap`` (USD or asset units, see ``tier_unit``) counts at ``ratio``."""

    cap: float | None = Field(default=None, gt=0)
    ratio: float = Field(ge=0, le=1)


class CollateralRule(Strict):
    """How the cross pool values one asset (spec §2)."""

    tier_unit: Literal["usd", "asset"] = "usd"
    tiers: list[HaircutTier] = Field(default_factory=lambda: [HaircutTier(cap=None, ratio=1.0)], min_length=1)
    bid_rate: float = Field(default=1.0, gt=0)
    ask_rate: float = Field(default=1.0, gt=0)
    size_discount_k: float = Field(default=0.0, ge=0)
    """Extra key: FTX/Drift size discount, weight = min(tier weight, 1.1 / (1 + k √size)), size in asset units."""
    liability_weight: float = Field(default=1.0, ge=1)
    """Extra key: weight of a negative balance (Drift: max(l, 0.8 l + k √size)); spec default 100 %."""

    @field_validator("tiers")
    @classmethod
    def _tiers_ascending(cls, tiers: list[HaircutTier]) -> list[HaircutTier]:
        _caps_ascending([t.cap for t in tiers], "tier")
        for i, t in enumerate(tiers[:-1]):
            nxt = tiers[i + 1]
            if nxt.ratio > t.ratio:
                raise ValueError(f"tier ratios must not increase: {nxt.ratio:g} (tier {i + 1}) > {t.ratio:g}")
        return tiers


class RiskMatrixParams(Strict):
    """Deribit-style risk-matrix parameters (names as in Deribit's pme/simulate API)."""

    price_range: float | None = Field(default=None, gt=0, lt=1)
    buckets_count: int | None = Field(default=None, ge=1)
    volatility_range_up: float | None = Field(default=None, ge=0)
    volatility_range_down: float | None = Field(default=None, ge=0)
    pnl_offset: float | None = Field(default=None, ge=0, le=1)
    annualised_move_risk: float | None = Field(default=None, ge=0)
    min_annualised_move: float | None = Field(default=None, ge=0)
    max_delta_shock: float | None = Field(default=None, ge=0)
    delta_total_liq_shock_threshold: float | None = Field(default=None, ge=0)
    extended_table_factor: float | None = Field(default=None, ge=0)
    extended_dampener: float | None = Field(default=None, ge=0)
    mm_factor: float | None = Field(default=None, gt=0, le=1)


class RiskMatrixModel(RiskMatrixParams):
    kind: Literal["risk_matrix"]
    per_underlying: dict[str, RiskMatrixParams] = Field(default_factory=dict)


class OkxGroup(Strict):
    """One OKX risk-unit group: spot-shock moves (MR1, each ±) and the extreme move (MR6, ±), fractions."""

    spot_moves: list[Annotated[float, Field(ge=0, lt=1)]] = Field(min_length=1)
    extreme_move: float = Field(ge=0, lt=1)


class OkxPmModel(Strict):
    """OKX-style portfolio margin per risk unit (underlying): MMR = max(MR1 spot shock, MR6 extreme move);
    IMR = imr_factor × MMR.  ``extreme_cover`` is the share of the extreme-move loss counted."""

    kind: Literal["okx_pm"]
    imr_factor: float = Field(default=1.3, ge=1)
    extreme_cover: float = Field(default=1.0, ge=0, le=1)
    groups: dict[str, OkxGroup] = Field(default_factory=dict)
    others: OkxGroup

    def group(self, underlying: str) -> OkxGroup:
        return self.groups.get(underlying, self.others)


class Rules(Strict):
    """One venue's rules file."""

    version: Literal[1]
    venue: str
    source: str = Field(min_length=1)
    date: str | None = None
    """Extra key: ISO date of the snapshot the numbers were taken from."""
    not_covered: str | None = None
    """Extra key: what this rule set does not model (so that nobody mistakes silence for coverage)."""
    liquidation_fee_rate: float = Field(default=0.0, ge=0, lt=1)
    mm_price_basis: Literal["mark", "entry"] = "mark"
    mode_switch: Literal["free", "close_reopen"] = "free"
    isolated_with_multi_asset: bool = True
    contracts: dict[str, Contract] = Field(min_length=1)
    collateral: dict[str, CollateralRule] = Field(default_factory=dict)
    margin_model: Annotated[RiskMatrixModel | OkxPmModel, Field(discriminator="kind")] | None = None

    @model_validator(mode="after")
    def _brackets_or_model(self) -> Rules:
        missing = [name for name, c in self.contracts.items() if not c.brackets]
        if missing and self.margin_model is None:
            raise ValueError(f"contracts {', '.join(missing[:5])} have no brackets: give brackets or a margin_model")
        return self

    def collateral_rule(self, asset: str) -> CollateralRule | None:
        """The rule for ``asset``; settle assets of the venue's contracts are accepted at 100 % when not listed."""
        rule = self.collateral.get(asset)
        if rule is None and asset in self.settle_assets:
            return PLAIN_COLLATERAL
        return rule

    @property
    def settle_assets(self) -> frozenset[str]:
        return frozenset(c.settle for c in self.contracts.values())


PLAIN_COLLATERAL = CollateralRule()
"""Valued at 100 %, bid and ask 1: isolated margins, and settle assets a rule set does not list."""
