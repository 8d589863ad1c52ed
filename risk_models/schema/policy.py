"""The policy file (spec §3): what the analyst asks of the risk model and the optimizer.  Rates are fractions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import Strict

Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class RiskModelPolicy(Strict):
    """The correlation-aware model behind the buffer constraints (defaults: spec §5's documented defaults)."""

    kind: Literal["historical", "filtered_historical", "parametric", "grid"] = "historical"
    horizon_days: int = Field(default=1, ge=1, le=30)
    window_days: int = Field(default=1095, ge=30)
    confidence: float = Field(default=0.99, gt=0.5, lt=1)
    measure: Literal["es", "worst"] = "es"
    pegged: list[str] = Field(default_factory=lambda: ["USDT", "USDC"])
    # pmopt extension: how a parametric model is evaluated — a Monte Carlo scenario set from the covariance
    # (an LP/MILP), or the closed-form delta-normal expected shortfall (a second-order cone: Clarabel)
    method: Literal["monte_carlo", "delta_normal"] = "monte_carlo"

    @model_validator(mode="after")
    def _method_fits_kind(self) -> RiskModelPolicy:
        if self.method == "delta_normal" and (self.kind != "parametric" or self.measure != "es"):
            raise ValueError("method: delta_normal needs kind: parametric and measure: es (the closed form is a "
                             "normal expected shortfall)")
        return self


class StressScenario(Strict):
    name: str = Field(min_length=1)
    shocks: dict[str, Annotated[float, Field(gt=-1)]] = Field(min_length=1)


class CrossPolicy(Strict):
    buffer: float = Field(default=1.0, ge=0)
    require_initial_margin: bool = False


class IsolatedPolicy(Strict):
    liquidation_distance: float = Field(default=0.0, ge=0, lt=1)


class Policy(Strict):
    version: Literal[1]
    objective: Literal["carry_cost", "locked_value"] = "carry_cost"
    carry_horizon_days: float = Field(default=7, gt=0)
    risk_model: RiskModelPolicy = Field(default_factory=RiskModelPolicy)
    stress_scenarios: list[StressScenario] = Field(default_factory=list)
    cross: CrossPolicy = Field(default_factory=CrossPolicy)
    isolated: IsolatedPolicy = Field(default_factory=IsolatedPolicy)
    concentration: dict[str, Fraction] = Field(default_factory=dict)
    venue_cap: dict[str, Fraction] = Field(default_factory=dict)
    reserve: dict[str, NonNegative] = Field(default_factory=dict)
    yields: dict[str, Annotated[float, Field(ge=-1, le=10)]] = Field(default_factory=dict)
    borrow_rates: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(default_factory=dict)
    transfer_cost_bps: NonNegative = 0.0
    mode_switch_cost_bps: NonNegative = 0.0

    @model_validator(mode="after")
    def _stress_needs_scenarios(self) -> Policy:
        if self.stress_scenarios and self.risk_model.method == "delta_normal":
            raise ValueError("stress_scenarios need a scenario set: use risk_model.method: monte_carlo with them, "
                             "or drop them for the closed-form delta_normal model")
        return self
