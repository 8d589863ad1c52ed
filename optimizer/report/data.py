"""Everything the report shows, as plain data taken from a re-checked Result and risk_models.  USD throughout.

Figures of the recommendation (allocations, margins, equity, liquidation prices, transfers, binding constraints)
are read from the spec §6 document; the before side of the collateral mix from the input book; per-scenario pool
needs and the unbuffered net portfolio margin from the re-check's evaluation (``optimizer.recheck.evaluate_book``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.schema.policy import Policy

from ..recheck import evaluate_book
from ..run import Result
from ..sweep import with_value
from .buffer_sweep import buffer_sweep
from .scenarios import PoolScenarios, pool_scenarios

WALLET = "wallet"


@dataclass(frozen=True)
class Summary:
    """Headline numbers of the recommendation (USD; carry over the policy's horizon)."""

    status: str
    objective: str
    objective_value: float
    objective_value_before: float
    carry_saved_per_year: float
    locked_before: float
    locked_after: float
    free_before: float
    free_after: float
    solver_seconds: float
    buffer: float
    measure: str  # e.g. "ES 99 %, 1-day"
    carry_horizon_days: float


@dataclass(frozen=True)
class PoolWaterfall:
    """One cross pool after the recommendation: venue MM → net portfolio margin (k = 1) → buffer → posted equity."""

    label: str
    venue_mm: float
    net_portfolio_margin: float  # k = 1
    requirement: float  # with the policy's buffer k: the document's net_portfolio_margin
    equity: float
    equity_before: float

    @property
    def buffer_add(self) -> float:
        return self.requirement - self.net_portfolio_margin

    @property
    def headroom(self) -> float:
        return self.equity - self.requirement


@dataclass(frozen=True)
class PoolDistribution:
    """One cross pool's scenario needs before and after the recommendation."""

    label: str
    before: PoolScenarios
    after: PoolScenarios
    probabilities: np.ndarray  # (S,) scenario weights, summing to 1


@dataclass(frozen=True)
class ReportData:
    title: str
    summary: Summary
    collateral: pd.DataFrame  # venue, asset, state ("before" | "after"), value
    waterfalls: list[PoolWaterfall]
    distributions: list[PoolDistribution]
    liquidation: pd.DataFrame  # position, venue, account, symbol, mode_before, mode_after, mark, liq_*, distance_*
    liquidation_floor: float  # the policy's isolated liquidation distance (fraction)
    sweep: list[dict[str, Any]]  # rows of buffer_sweep
    transfers: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    margin_modes: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)


def build_report(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, result: Result,
                 sweep_values: list[float], time_limit: float = 120.0) -> ReportData:
    """The report's data for ``result``, the re-checked recommendation for ``loaded`` under ``policy``."""
    doc = result.document
    after_book = LoadedBook("<recommendation>", result.book, loaded.rules)
    before = evaluate_book(loaded, policy, scenarios)
    after = evaluate_book(after_book, policy, scenarios)
    unbuffered = evaluate_book(after_book, with_value(policy, "buffer", 1.0), scenarios)
    pools_before = {p.label: p for p in pool_scenarios(loaded, policy, scenarios, before)}
    pools_after = pool_scenarios(after_book, policy, scenarios, after)
    unbuffered_npm = {cb_bucket.label: r.net_portfolio_margin
                      for cb_bucket, r in zip(unbuffered.compiled.buckets, unbuffered.risks, strict=True)}
    accounts_before = {(a["venue"], a["account"]): a for a in doc["before"]["accounts"]}
    waterfalls = []
    for a in doc["after"]["accounts"]:
        label = f"{a['venue']}/{a['account']}/cross"
        waterfalls.append(PoolWaterfall(label, a["maintenance_margin"], unbuffered_npm[label],
                                        a["net_portfolio_margin"], a["equity"],
                                        accounts_before[(a["venue"], a["account"])]["equity"]))
    marks = {key: float(m) for key, m in zip(before.compiled.position_keys, before.compiled.positions.mark,
                                             strict=True)}
    modes_before = dict(zip(before.compiled.position_keys, before.compiled.position_modes, strict=True))
    modes_after = dict(zip(after.compiled.position_keys, after.compiled.position_modes, strict=True))
    return ReportData(
        title=f"pmopt report — {Path(loaded.file).name}" + (f", {loaded.book.as_of[:10]}" if loaded.book.as_of else ""),
        summary=_summary(doc, policy),
        collateral=pd.concat([collateral_by_venue(loaded, loaded.book, "before"), _allocated(doc)],
                             ignore_index=True),
        waterfalls=waterfalls,
        distributions=[PoolDistribution(p.label, pools_before[p.label], p, scenarios.probabilities)
                       for p in pools_after],
        liquidation=_liquidation(doc, marks, modes_before, modes_after),
        liquidation_floor=policy.isolated.liquidation_distance,
        sweep=buffer_sweep(loaded, policy, scenarios, sweep_values, time_limit) if sweep_values else [],
        transfers=doc["transfers"], trades=doc["trades"], margin_modes=doc["margin_modes"],
        bindings=doc["binding_constraints"],
    )


def measure_label(policy: Policy) -> str:
    """'ES 99 %, 1-day', 'worst case, 1-day', 'ES 99 % (delta-normal), 1-day'."""
    rm = policy.risk_model
    head = f"ES {100 * rm.confidence:.4g} %" if rm.measure == "es" else "worst case"
    closed = " (delta-normal)" if rm.method == "delta_normal" else ""
    return f"{head}{closed}, {rm.horizon_days}-day"


def collateral_by_venue(loaded: LoadedBook, book: Book, state: str) -> pd.DataFrame:
    """USD value (units × price) of every asset held per venue (cross collateral and isolated margins) and in the
    wallet; a loan is a negative value."""
    values: dict[tuple[str, str], float] = {}
    for venue_id, venue in book.venues.items():
        contracts = loaded.rules[venue_id].rules.contracts
        for account in venue.accounts.values():
            for asset, units in account.collateral.items():
                values[(venue_id, asset)] = values.get((venue_id, asset), 0.0) + units * book.prices[asset]
            for p in account.positions:
                if p.margin_mode == "isolated":
                    settle = contracts[p.symbol].settle
                    values[(venue_id, settle)] = (values.get((venue_id, settle), 0.0)
                                                  + (p.isolated_margin or 0.0) * book.prices[settle])
    for asset, units in book.wallet.items():
        values[(WALLET, asset)] = values.get((WALLET, asset), 0.0) + units * book.prices[asset]
    return _frame(values, state)


def _allocated(doc: dict[str, Any]) -> pd.DataFrame:
    """The document's allocations summed per venue and asset (the after side)."""
    values: dict[tuple[str, str], float] = {}
    for row in doc["allocations"]:
        venue = row["bucket"].split("/", 1)[0]
        values[(venue, row["asset"])] = values.get((venue, row["asset"]), 0.0) + row["value"]
    return _frame(values, "after")


def _frame(values: dict[tuple[str, str], float], state: str) -> pd.DataFrame:
    rows = [{"venue": v, "asset": a, "state": state, "value": x} for (v, a), x in values.items()]
    return pd.DataFrame(rows, columns=["venue", "asset", "state", "value"])


def _summary(doc: dict[str, Any], policy: Policy) -> Summary:
    return Summary(doc["status"], doc["objective"], doc["objective_value"], doc["objective_value_before"],
                   doc["carry_saved_per_year"], doc["before"]["locked"], doc["after"]["locked"],
                   doc["before"]["free"], doc["after"]["free"], doc["solver"]["seconds"], policy.cross.buffer,
                   measure_label(policy), policy.carry_horizon_days)


def _liquidation(doc: dict[str, Any], marks: dict[tuple[str, str, str], float],
                 modes_before: dict[tuple[str, str, str], str], modes_after: dict[tuple[str, str, str], str]
                 ) -> pd.DataFrame:
    """|mark − liquidation| / mark of every position before and after (NaN: no liquidation price)."""
    liq_after = {(a["venue"], a["account"]): a["liquidation_prices"] for a in doc["after"]["accounts"]}
    rows = []
    for a in doc["before"]["accounts"]:
        for symbol, before in a["liquidation_prices"].items():
            key = (a["venue"], a["account"], symbol)
            after = liq_after[(a["venue"], a["account"])].get(symbol)
            mark = marks[key]
            rows.append({"position": f"{a['venue']}/{a['account']} {symbol}", "venue": a["venue"],
                         "account": a["account"], "symbol": symbol, "mode_before": modes_before[key],
                         "mode_after": modes_after[key], "mark": mark,
                         "liq_before": math.nan if before is None else before,
                         "liq_after": math.nan if after is None else after,
                         "distance_before": _distance(mark, before), "distance_after": _distance(mark, after)})
    return pd.DataFrame(rows)


def _distance(mark: float, liquidation: float | None) -> float:
    return math.nan if liquidation is None else abs(mark - liquidation) / mark
