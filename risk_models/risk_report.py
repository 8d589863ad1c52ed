"""Net portfolio margin per account (the numbers behind `pmopt risk`, spec §5).  Amounts in USD."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .compiled import CompiledBook
from .delta_normal import NormalModel, normal_bucket_risks
from .errors import InputError
from .guard_rails import anti_procyclicality, emir_offset_floor, liquidity_addon
from .margin_report import check_finite
from .measures import RiskMeasure
from .portfolio_margin import BucketRisk, portfolio_margin
from .revaluation import DEFAULT_PEGGED
from .scenarios import ScenarioSet
from .venue_margin import MarginState


@dataclass(frozen=True)
class IsolatedRisk:
    symbol: str
    net_portfolio_margin: float
    isolated_margin: float


@dataclass(frozen=True)
class AccountRisk:
    venue: str
    account: str
    equity: float
    maintenance_margin: float
    net_portfolio_margin: float
    standalone_margin: float
    diversification_benefit: float
    stressed_equity: float
    contributions: dict[str, float]
    worst_scenarios: list[dict[str, float | str]]
    isolated: list[IsolatedRisk]


@dataclass(frozen=True)
class ModelInfo:
    kind: str
    confidence: float
    measure: str
    horizon_days: int
    scenarios: int
    window: list[str] | None


@dataclass(frozen=True)
class RiskReport:
    model: ModelInfo
    accounts: list[AccountRisk]

    def to_dict(self) -> dict:
        """The JSON document of spec §5."""
        return {"version": 1, "model": asdict(self.model), "accounts": [asdict(a) for a in self.accounts]}


def risk_report(file: str, cb: CompiledBook, state: MarginState, scenarios: ScenarioSet, measure: RiskMeasure,
                buffer: float = 1.0, pegged: tuple[str, ...] = DEFAULT_PEGGED, model_kind: str | None = None,
                guard_rails: GuardRails | None = None, normal: NormalModel | None = None) -> RiskReport:
    """Net portfolio margin, stressed equity, attribution and diversification of every account.

    ``model_kind`` names the model in the report (default: the scenario set's kind); "parametric" uses today's
    maintenance margin for MM_s (spec §5); ``normal`` evaluates it in closed form (delta-normal) instead.
    """
    check_finite(file, cb, state)
    kind = model_kind or scenarios.kind
    if normal is not None:  # the closed-form delta-normal margin (risk_models.delta_normal)
        risks = normal_bucket_risks(cb, state, normal, buffer)
    else:
        risks = portfolio_margin(cb, state, scenarios, measure, buffer, pegged, mm_at_current=kind == "parametric")
    if guard_rails is not None:
        risks = [guard_rails.apply(cb, state, r) for r in risks]
    by_bucket: dict[int, BucketRisk] = {r.bucket: r for r in risks}
    accounts = []
    for b, bid in enumerate(cb.buckets):
        if bid.symbol is not None:
            continue
        r = by_bucket[b]
        isolated = []
        for ib, other in enumerate(cb.buckets):
            if other.symbol is not None and (other.venue, other.account) == (bid.venue, bid.account):
                p = int(np.nonzero(cb.positions.bucket == ib)[0][0])
                isolated.append(IsolatedRisk(other.symbol, by_bucket[ib].net_portfolio_margin,
                                             float(cb.isolated_margin[p])))
        accounts.append(AccountRisk(
            venue=bid.venue, account=bid.account, equity=float(state.equity[b]),
            maintenance_margin=float(state.maintenance[b]), net_portfolio_margin=r.net_portfolio_margin,
            standalone_margin=float(r.standalone_margin or 0.0),
            diversification_benefit=float(r.diversification_benefit or 0.0), stressed_equity=r.stressed_equity,
            contributions=r.contributions,
            worst_scenarios=[{"label": label, "loss": loss} for label, loss in r.worst_scenarios],
            isolated=isolated,
        ))
    model = ModelInfo(kind, measure.alpha, measure.kind, scenarios.horizon_days, scenarios.n_scenarios,
                      list(scenarios.window) if scenarios.window else None)
    return RiskReport(model, accounts)


@dataclass(frozen=True)
class GuardRails:
    """Optional floors and add-ons applied to every bucket's net portfolio margin (reference §5), USD.

    ``offset_cap``: portfolio offsets may reduce margin by at most this share of (standalone − net) (EMIR: 0.8);
    ``apc_buffer``: anti-procyclicality buffer, margin × (1 + buffer) (EMIR: 0.25); ``adv_usd`` with
    ``liquidity_coefficient``: liquidity add-on k·|q|^1.5 / ADV^0.5 per position (q, ADV in USD).  Each shows as
    its own contribution ("guard:offset_cap", "guard:anti_procyclicality", "liquidity") so contributions still
    sum to the reported net portfolio margin.
    """

    offset_cap: float | None = None
    apc_buffer: float | None = None
    adv_usd: dict[str, float] | None = None
    liquidity_coefficient: float = 0.0

    def apply(self, cb: CompiledBook, state: MarginState, risk: BucketRisk) -> BucketRisk:
        contributions = dict(risk.contributions)
        net = risk.net_portfolio_margin
        if self.adv_usd:
            addon = self._liquidity(cb, state, risk.bucket)
            contributions["liquidity"] = addon
            net += addon
        if self.offset_cap is not None and risk.standalone_margin is not None:
            floored = emir_offset_floor(risk.standalone_margin, net, self.offset_cap)
            if floored > net:
                contributions["guard:offset_cap"] = floored - net
                net = floored
        if self.apc_buffer is not None:
            raised = anti_procyclicality(net, None, self.apc_buffer)
            contributions["guard:anti_procyclicality"] = raised - net
            net = raised
        standalone = risk.standalone_margin
        return BucketRisk(risk.bucket, float(net), risk.stressed_equity, standalone,
                          None if standalone is None else standalone - float(net), contributions,
                          risk.worst_scenarios)

    def _liquidity(self, cb: CompiledBook, state: MarginState, bucket: int) -> float:
        pa = cb.positions
        rows = np.nonzero(pa.bucket == bucket)[0]
        total = 0.0
        for p in rows:
            asset = cb.assets[pa.underlying[p]]
            adv = (self.adv_usd or {}).get(asset)
            if adv is None:
                raise InputError("--adv", asset, f"no average daily volume for {asset} ({cb.position_paths[p]})",
                                 "add a row 'asset,adv_usd' for it")
            total += liquidity_addon(state.terms.notional_usd[p], adv, self.liquidity_coefficient)
        return float(total)
