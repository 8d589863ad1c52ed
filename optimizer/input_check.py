"""Checking input files without running anything: a book (with its rules), a rules file, a policy, a batch
manifest or a ccxt account map, told apart by their top-level keys.  Every problem is collected, none raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from risk_models.errors import InputError, InputErrors
from risk_models.loading import load_book, load_policy
from risk_models.schema import Rules
from risk_models.yaml_io import read_yaml, validate_model

Kind = Literal["book", "rules", "policy", "manifest", "import-map"]
KINDS: tuple[Kind, ...] = ("book", "rules", "policy", "manifest", "import-map")

_MARKERS: dict[Kind, frozenset[str]] = {
    "book": frozenset({"venues", "prices", "wallet", "as_of"}),
    "rules": frozenset({"contracts", "collateral", "venue", "source", "margin_model", "liquidation_fee_rate"}),
    "manifest": frozenset({"jobs"}),
    "import-map": frozenset({"accounts"}),
    "policy": frozenset({"objective", "carry_horizon_days", "risk_model", "stress_scenarios", "cross", "isolated",
                         "concentration", "venue_cap", "reserve", "yields", "borrow_rates", "transfer_cost_bps",
                         "mode_switch_cost_bps"}),
}


@dataclass(frozen=True)
class FileCheck:
    """The outcome for one file: its kind (None when it could not be told), a one-line summary, the problems."""

    file: str
    kind: Kind | None
    problems: list[InputError] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "ok": self.ok, "summary": self.summary,
                "problems": [{"key": p.key, "reason": p.reason, "remedy": p.remedy} for p in self.problems]}


def detect_kind(data: dict[str, Any]) -> Kind | None:
    """The kind whose characteristic top-level keys the mapping has most of; None when no key is characteristic."""
    keys = set(data)
    if "accounts" in keys and "venues" not in keys:  # a ccxt account map (its ``prices`` is a file path)
        return "import-map"
    scores = {kind: len(keys & markers) for kind, markers in _MARKERS.items()}
    best = max(scores.values())
    if best == 0:
        return None
    winners = [k for k, s in scores.items() if s == best]
    return winners[0] if len(winners) == 1 else None


def check_file(path: Path | str, kind: Kind | None = None) -> FileCheck:
    """Validate one file as ``kind`` (detected from its keys when None): every problem at once."""
    file = str(path)
    try:
        data = read_yaml(path)
    except InputError as exc:
        return FileCheck(file, kind, [exc])
    if kind is None:
        kind = detect_kind(data)
        if kind is None:
            return FileCheck(file, None, [InputError(
                file, "", "cannot tell whether this is a book, rules, policy, manifest or import-map file from its "
                          f"top-level keys ({', '.join(map(str, data)) or 'none'})", f"give --kind {'|'.join(KINDS)}")])
    try:
        summary = _CHECKS[kind](Path(path), data)
    except InputErrors as exc:
        return FileCheck(file, kind, list(exc.errors))
    except InputError as exc:
        return FileCheck(file, kind, [exc])
    return FileCheck(file, kind, [], summary)


def problems(path: Path | str, kind: Kind | None = None) -> list[str]:
    """Each problem of one file as ``file: key: reason (remedy)``; empty when the file is valid."""
    return [p.render() for p in check_file(path, kind).problems]


def _book(path: Path, _data: dict[str, Any]) -> str:
    loaded = load_book(path)
    venues = loaded.book.venues
    accounts = sum(len(v.accounts) for v in venues.values())
    positions = sum(len(a.positions) for v in venues.values() for a in v.accounts.values())
    rules = ", ".join(sorted({r.name for r in loaded.rules.values()}))
    return f"book: {positions} positions in {accounts} accounts on {len(venues)} venues (rules {rules})"


def _rules(path: Path, data: dict[str, Any]) -> str:
    rules = validate_model(Rules, data, str(path))
    return f"rules: {rules.venue}, {len(rules.contracts)} contracts, dated {rules.date or 'not given'}"


def _policy(path: Path, _data: dict[str, Any]) -> str:
    policy = load_policy(path)
    model = policy.risk_model
    return (f"policy: {policy.objective}, {model.kind} {model.measure} {model.confidence:g}, "
            f"buffer {policy.cross.buffer:g}, {len(policy.stress_scenarios)} stress scenarios")


def _manifest(path: Path, _data: dict[str, Any]) -> str:
    from .batch import load_manifest

    jobs = load_manifest(path)
    return f"manifest: {len(jobs)} jobs"


def _import_map(path: Path, data: dict[str, Any]) -> str:
    from risk_models.schema.imports import ImportMap

    mapping = validate_model(ImportMap, data, str(path))
    return f"import map: {len(mapping.accounts)} accounts"


_CHECKS = {"book": _book, "rules": _rules, "policy": _policy, "manifest": _manifest, "import-map": _import_map}
