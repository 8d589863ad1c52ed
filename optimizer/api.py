"""The Python API: one call per `pmopt` command, returning pandas DataFrames for notebooks and scripts.

Every call accepts paths or objects already in memory: a book as a path, a mapping (the YAML's content), a
validated :class:`~risk_models.schema.Book` or a :class:`~risk_models.loading.LoadedBook`; a policy as a path, a
mapping or a :class:`~risk_models.schema.policy.Policy`; prices as a path, a wide DataFrame (one column per asset,
a daily date index) or a :class:`~risk_models.market_data.PriceHistory`.  Amounts are USD unless a column ends in
``_settle``; rates are fractions.  Bad input raises :class:`~risk_models.errors.InputErrors` (every problem at
once), an unmeetable policy :class:`~optimizer.run.Infeasible` with its remedies in ``.document``.

>>> import optimizer as pm
>>> pm.margin("examples/multi_venue/book.yaml")            # one row per position
>>> rec = pm.optimize("examples/multi_venue/book.yaml", "examples/multi_venue/policy.yaml")
>>> rec.transfers, rec.before_after
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from risk_models.compiled import compile_book
from risk_models.delta_normal import normal_model_of
from risk_models.loading import LoadedBook, load_book, load_policy, with_rules
from risk_models.margin_report import margin_report
from risk_models.market_data import PriceHistory, default_prices, load_prices, read_adv
from risk_models.measures import RiskMeasure
from risk_models.risk_model import build_scenarios
from risk_models.risk_report import GuardRails, RiskReport, risk_report
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.schema.policy import Policy
from risk_models.venue_margin import evaluate
from risk_models.yaml_io import validate_model, write_yaml

from .input_check import Kind, problems
from .run import Infeasible, Result
from .run import optimize as run_optimize
from .sweep import run_sweep
from .trades import apply_trades

BookLike = str | Path | Mapping[str, Any] | Book | LoadedBook
PolicyLike = str | Path | Mapping[str, Any] | Policy
PricesLike = str | Path | pd.DataFrame | PriceHistory

__all__ = ["Infeasible", "Recommendation", "contributions", "load", "margin", "optimize", "risk", "sweep", "validate"]


# == inputs ========================================================================================================

def load(book: BookLike, base_dir: str | Path | None = None) -> LoadedBook:
    """A validated book with its venues' rules.  Rule-set paths in an in-memory book are relative to ``base_dir``
    (default: the working directory); a file's are relative to the file."""
    if isinstance(book, LoadedBook):
        return book
    if isinstance(book, str | Path):
        return load_book(book)
    file = "<book>"
    if isinstance(book, Mapping):
        book = validate_model(Book, dict(book), file)
    return with_rules(file, book, Path(base_dir) if base_dir is not None else Path.cwd())


def _policy(policy: PolicyLike | None) -> tuple[Policy, str]:
    """The validated policy and the name errors use for it (spec defaults when None)."""
    if policy is None:
        return Policy(version=1), "policy"
    if isinstance(policy, Policy):
        return policy, "<policy>"
    if isinstance(policy, Mapping):
        return validate_model(Policy, dict(policy), "<policy>"), "<policy>"
    return load_policy(policy), str(policy)


def _history(prices: PricesLike | None) -> PriceHistory:
    if prices is None:
        return default_prices()
    if isinstance(prices, PriceHistory):
        return prices
    if isinstance(prices, pd.DataFrame):
        return PriceHistory(prices, "<prices DataFrame>")
    return load_prices(prices)


def scenarios_for(loaded: LoadedBook, policy: Policy, prices: PricesLike | None = None,
                  policy_name: str = "policy") -> ScenarioSet:
    """The policy's scenario set over the book's assets (its stress scenarios added), windows ending at as_of."""
    cb = compile_book(loaded)
    return build_scenarios(policy.risk_model, cb.assets, _history(prices), loaded.book.as_of,
                           policy.stress_scenarios, policy_name)


# == margin =======================================================================================================

def margin(book: BookLike, *, level: str = "position") -> pd.DataFrame:
    """Venue margin (`pmopt margin`): one row per position (``level="position"``) with its account's venue,
    account and rule set, or one row per account's cross pool (``level="account"``).

    Columns follow spec §4 (USD; ``maintenance_margin_settle`` in the settle asset).  ``.attrs["document"]`` holds
    the full JSON document.
    """
    report = margin_report(load(book))
    doc = report.to_dict()
    if level == "account":
        rows = [{k: v for k, v in a.items() if k != "positions"} for a in doc["accounts"]]
    elif level == "position":
        rows = [{"venue": a["venue"], "account": a["account"], "rules": a["rules"], **p}
                for a in doc["accounts"] for p in a["positions"]]
    else:
        raise ValueError(f"level must be 'position' or 'account', not {level!r}")
    frame = pd.DataFrame(rows)
    frame.attrs["document"] = doc
    return frame


# == risk =========================================================================================================

def risk_report_of(book: BookLike, policy: PolicyLike | None = None, *, model: str | None = None,
                   confidence: float | None = None, measure: str | None = None, horizon: int | None = None,
                   window: int | None = None, buffer: float | None = None, prices: PricesLike | None = None,
                   offset_cap: float | None = None, apc_buffer: float | None = None,
                   adv: str | Path | Mapping[str, float] | None = None, liquidity_coefficient: float = 0.0
                   ) -> RiskReport:
    """The report behind `pmopt risk` (spec §5); keyword arguments override the policy as the options do."""
    loaded = load(book)
    pol, name = _policy(policy)
    overrides = {k: v for k, v in {"kind": model, "confidence": confidence, "measure": measure,
                                   "horizon_days": horizon, "window_days": window}.items() if v is not None}
    spec = pol.risk_model.model_copy(update=overrides)
    if spec.kind == "grid":  # scanning risk: the worst move of each risk unit
        spec = spec.model_copy(update={"measure": "worst"})
    k = buffer if buffer is not None else (pol.cross.buffer if policy is not None else 1.0)
    cb = compile_book(loaded)
    state = evaluate(cb)
    scenarios = build_scenarios(spec, cb.assets, _history(prices), loaded.book.as_of, pol.stress_scenarios, name)
    volumes = read_adv(adv) if isinstance(adv, str | Path) else (dict(adv) if adv is not None else None)
    rails = GuardRails(offset_cap, apc_buffer, volumes, liquidity_coefficient)
    normal = normal_model_of(scenarios, spec.method) if spec.kind == "parametric" else None
    return risk_report(loaded.file, cb, state, scenarios, RiskMeasure(spec.measure, spec.confidence), k,
                       tuple(spec.pegged), model_kind=spec.kind, guard_rails=rails, normal=normal)


def risk(book: BookLike, policy: PolicyLike | None = None, **options: Any) -> pd.DataFrame:
    """Net portfolio margin (`pmopt risk`): one row per account with equity, venue maintenance margin, net
    portfolio margin, standalone margin, diversification benefit and stressed equity (USD).

    Options as :func:`risk_report_of` (model, confidence, measure, horizon, window, buffer, prices, offset_cap,
    apc_buffer, adv, liquidity_coefficient).  ``.attrs["document"]`` holds the spec §5 document with each
    account's contributions and worst scenarios.
    """
    doc = risk_report_of(book, policy, **options).to_dict()
    keep = ("venue", "account", "equity", "maintenance_margin", "net_portfolio_margin", "standalone_margin",
            "diversification_benefit", "stressed_equity")
    frame = pd.DataFrame([{k: a[k] for k in keep} for a in doc["accounts"]])
    frame.attrs["document"] = doc
    return frame


def contributions(book: BookLike, policy: PolicyLike | None = None, **options: Any) -> pd.DataFrame:
    """Each position's and collateral asset's contribution to its account's net portfolio margin (USD); per
    account they sum to its net portfolio margin."""
    doc = risk_report_of(book, policy, **options).to_dict()
    rows = [{"venue": a["venue"], "account": a["account"], "item": item, "contribution": value}
            for a in doc["accounts"] for item, value in a["contributions"].items()]
    return pd.DataFrame(rows, columns=["venue", "account", "item", "contribution"])


# == optimize =====================================================================================================

BEFORE_AFTER = ("equity", "maintenance_margin", "margin_ratio", "net_portfolio_margin", "stressed_equity",
                "capital_efficiency")


@dataclass(frozen=True)
class Recommendation:
    """The result of `pmopt optimize`: the spec §6 ``document`` and its tables as DataFrames.

    ``allocations``: bucket, asset, amount (asset units), value (USD) — what each bucket and the wallet hold after.
    ``transfers``: from, to, asset, amount, cost (USD), in the order to make them.
    ``before_after``: one row per account and metric (``BEFORE_AFTER``), with ``before``, ``after`` and
    ``change``.  ``book`` is the recommended state, ready for :func:`margin` and :func:`risk`.
    """

    document: dict[str, Any]
    book: LoadedBook

    @property
    def status(self) -> str:
        return str(self.document["status"])

    @property
    def objective_value(self) -> float:
        return float(self.document["objective_value"])

    @property
    def carry_saved_per_year(self) -> float:
        return float(self.document["carry_saved_per_year"])

    @property
    def allocations(self) -> pd.DataFrame:
        return pd.DataFrame(self.document["allocations"], columns=["bucket", "asset", "amount", "value"])

    @property
    def transfers(self) -> pd.DataFrame:
        return pd.DataFrame(self.document["transfers"], columns=["from", "to", "asset", "amount", "cost"])

    @property
    def margin_modes(self) -> pd.DataFrame:
        return pd.DataFrame(self.document["margin_modes"], columns=["venue", "account", "symbol", "before", "after"])

    @property
    def binding_constraints(self) -> pd.DataFrame:
        return pd.DataFrame(self.document["binding_constraints"],
                            columns=["name", "slack", "shadow_price", "unit", "explanation"])

    @property
    def before_after(self) -> pd.DataFrame:
        rows = []
        for b, a in zip(self.document["before"]["accounts"], self.document["after"]["accounts"], strict=True):
            for metric in BEFORE_AFTER:
                before, after = b[metric], a[metric]
                change = None if before is None or after is None else after - before
                rows.append({"venue": b["venue"], "account": b["account"], "metric": metric, "before": before,
                             "after": after, "change": change})
        return pd.DataFrame(rows, columns=["venue", "account", "metric", "before", "after", "change"])

    def write_book(self, path: str | Path) -> None:
        """Write the recommended state as a book file (``pmopt optimize --write-book``)."""
        write_yaml(self.book.book.model_dump(exclude_none=True), path)


def optimize_result(book: BookLike, policy: PolicyLike, trades: str | Path | pd.DataFrame | None = None, *,
                    prices: PricesLike | None = None, time_limit: float = 120.0) -> tuple[LoadedBook, Result]:
    """The book the optimizer saw (after ``trades``) and its re-checked result; Infeasible when the policy
    cannot be met."""
    loaded = load(book)
    if trades is not None:
        loaded = _with_trades(loaded, trades)
    pol, name = _policy(policy)
    scenarios = scenarios_for(loaded, pol, prices, name)
    return loaded, run_optimize(loaded, pol, scenarios, time_limit=time_limit)


def optimize(book: BookLike, policy: PolicyLike, trades: str | Path | pd.DataFrame | None = None, *,
             prices: PricesLike | None = None, time_limit: float = 120.0) -> Recommendation:
    """The collateral mix and margin modes that meet ``policy`` at least cost (`pmopt optimize`).

    ``trades``: a CSV path or a DataFrame with columns venue, account, symbol, qty, price, applied first.
    Raises :class:`Infeasible` (``.document``: the smallest top-up and position reductions) when the policy
    cannot be met.
    """
    loaded, result = optimize_result(book, policy, trades, prices=prices, time_limit=time_limit)
    return Recommendation(result.document, LoadedBook(loaded.file, result.book, loaded.rules))


def _with_trades(loaded: LoadedBook, trades: str | Path | pd.DataFrame) -> LoadedBook:
    if not isinstance(trades, pd.DataFrame):
        return apply_trades(loaded, trades)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trades.csv"
        trades[["venue", "account", "symbol", "qty", "price"]].to_csv(path, index=False)
        return apply_trades(loaded, path)


# == sweep ========================================================================================================

def sweep(book: BookLike, policy: PolicyLike, param: str, values: Sequence[float], *,
          prices: PricesLike | None = None) -> pd.DataFrame:
    """Capital needed as one policy number varies (`pmopt sweep`): one row per value with status, objective
    value, locked and free capital and the top-up an infeasible point needs (USD).

    ``param``: buffer, confidence, liquidation_distance or yield:ASSET.
    """
    loaded = load(book)
    pol, name = _policy(policy)
    rows = run_sweep(loaded, pol, scenarios_for(loaded, pol, prices, name), param, [float(v) for v in values])
    frame = pd.DataFrame(rows, columns=["value", "status", "objective_value", "locked", "free", "top_up"])
    frame.attrs["param"] = param
    return frame


# == validate =====================================================================================================

def validate(path: str | Path, kind: Kind | None = None) -> list[str]:
    """Every problem of one input file (book, rules, policy or manifest; told by its keys unless ``kind``), as
    ``file: key: reason (remedy)`` lines; empty when the file is valid (`pmopt validate`)."""
    return problems(path, kind)
