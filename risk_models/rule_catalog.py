"""The built-in rule sets as a catalogue: one summary line per set, and a full description of one set.

Amounts in the descriptions are in the unit the rules file uses: bracket caps in settle-asset units, haircut tier
caps in USD or asset units (``tier_unit``).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rulesets
from .loading import load_rules
from .schema.rules import CollateralRule, Contract, Rules


@dataclass(frozen=True)
class RuleSetSummary:
    """One line of ``pmopt rules list``: a dated built-in set and the undated aliases that resolve to it."""

    name: str
    date: str | None
    venue: str
    contracts: int
    collateral: tuple[str, ...]
    aliases: tuple[str, ...]
    margin_model: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "date": self.date, "venue": self.venue, "contracts": self.contracts,
                "collateral": list(self.collateral), "aliases": list(self.aliases), "margin_model": self.margin_model}


@dataclass(frozen=True)
class ContractRow:
    """One contract of a rule set; rates are fractions, ``position_limit`` in settle units (None = unbounded)."""

    symbol: str
    underlying: str
    settle: str
    kind: str
    contract_size: float
    brackets: int
    first_mmr: float | None
    first_max_leverage: float | None
    position_limit: float | None
    isolated_allowed: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CollateralRow:
    """How the cross pool values one asset: tiers as (cap, ratio) with cap None = unbounded."""

    asset: str
    tier_unit: str
    tiers: tuple[tuple[float | None, float], ...]
    bid_rate: float
    ask_rate: float
    size_discount_k: float
    implicit: bool = False
    """True for a settle asset the file does not list (accepted at 100 %)."""

    def to_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "tier_unit": self.tier_unit,
                "tiers": [{"cap": cap, "ratio": ratio} for cap, ratio in self.tiers], "bid_rate": self.bid_rate,
                "ask_rate": self.ask_rate, "size_discount_k": self.size_discount_k, "implicit": self.implicit}


@dataclass(frozen=True)
class RuleSetDetail:
    """Everything ``pmopt rules show`` prints about one rule set."""

    name: str
    requested: str
    venue: str
    date: str | None
    source: str
    not_covered: str | None
    margin_model: str
    mode_switch: str
    isolated_with_multi_asset: bool
    liquidation_fee_rate: float
    contracts: list[ContractRow] = field(default_factory=list)
    contracts_total: int = 0
    collateral: list[CollateralRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("contracts", "collateral")}
        out["contracts"] = [c.to_dict() for c in self.contracts]
        out["collateral"] = [c.to_dict() for c in self.collateral]
        return out


def margin_model_name(rules: Rules) -> str:
    """``brackets`` for tiered per-position margin, else the margin model's kind (risk_matrix, okx_pm)."""
    return "brackets" if rules.margin_model is None else rules.margin_model.kind


def accepted_collateral(rules: Rules) -> tuple[str, ...]:
    """Assets the cross pool accepts: the listed ones, then settle assets not listed (at 100 %)."""
    return tuple(rules.collateral) + tuple(sorted(rules.settle_assets - set(rules.collateral)))


def list_rule_sets() -> list[RuleSetSummary]:
    """Every dated built-in rule set, sorted by name, with the aliases that resolve to it."""
    alias_of: dict[str, list[str]] = {}
    for alias, dated in rulesets.aliases().items():
        alias_of.setdefault(dated, []).append(alias)
    out = []
    for name in rulesets.builtin_names():
        rules = load_rules(name).rules
        out.append(RuleSetSummary(name, rules.date, rules.venue, len(rules.contracts), accepted_collateral(rules),
                                  tuple(sorted(alias_of.get(name, []))), margin_model_name(rules)))
    return out


def describe(ref: str, symbols: str | None = None, base_dir: Path | None = None) -> RuleSetDetail:
    """The rule set ``ref`` (a built-in name, an alias or a rules file) in full.

    ``symbols`` is a shell-style pattern (``BTC*``) that keeps only the matching contracts; ``contracts_total``
    still counts them all.  An unknown name raises InputError listing the built-in names.
    """
    loaded = load_rules(ref, base_dir)
    rules = loaded.rules
    rows = [_contract_row(sym, c) for sym, c in rules.contracts.items()
            if symbols is None or fnmatch.fnmatchcase(sym.upper(), symbols.upper())]
    collateral = [_collateral_row(a, rules.collateral[a]) for a in rules.collateral]
    collateral += [_collateral_row(a, rules.collateral_rule(a), implicit=True)  # type: ignore[arg-type]
                   for a in sorted(rules.settle_assets - set(rules.collateral))]
    return RuleSetDetail(loaded.name, ref, rules.venue, rules.date, rules.source, rules.not_covered,
                         margin_model_name(rules), rules.mode_switch, rules.isolated_with_multi_asset,
                         rules.liquidation_fee_rate, rows, len(rules.contracts), collateral)


def _contract_row(symbol: str, c: Contract) -> ContractRow:
    first = c.brackets[0] if c.brackets else None
    limit = c.position_limit
    return ContractRow(symbol, c.underlying, c.settle, c.kind, c.contract_size, len(c.brackets),
                       first.mmr if first else None, first.max_leverage if first else None,
                       None if math.isinf(limit) else limit, c.isolated_allowed)


def _collateral_row(asset: str, rule: CollateralRule, implicit: bool = False) -> CollateralRow:
    return CollateralRow(asset, rule.tier_unit, tuple((t.cap, t.ratio) for t in rule.tiers), rule.bid_rate,
                         rule.ask_rate, rule.size_discount_k, implicit)
