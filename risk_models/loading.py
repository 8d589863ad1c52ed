"""Loading a book and its venues' rules, and checking the book against the rules.

Every problem is collected and raised at once as :class:`InputErrors` (exit code 2); nothing is dropped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from . import rulesets
from .errors import InputError, InputErrors
from .schema import Book, Rules
from .schema.policy import Policy
from .yaml_io import read_yaml, validate_model


@dataclass(frozen=True)
class VenueRules:
    """A venue's rules as used by one book: the validated rules and the name they were resolved to."""

    name: str
    rules: Rules


@dataclass(frozen=True)
class LoadedBook:
    """A validated book with the rules of each of its venues (keyed by venue id)."""

    file: str
    book: Book
    rules: dict[str, VenueRules]


def load_rules(ref: str, base_dir: Path | None = None, *, file: str = "", key: str = "") -> VenueRules:
    """Resolve ``ref`` (built-in name, alias or path relative to ``base_dir``) and validate it."""
    looks_like_path = ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref
    builtin = None if looks_like_path else rulesets.resolve_builtin(ref)
    if builtin is not None:
        return _load_builtin(*builtin)
    path = Path(ref) if base_dir is None else base_dir / ref
    if not path.is_file():
        known = ", ".join(sorted(set(rulesets.builtin_names()) | set(rulesets.aliases())))
        raise InputError(file or ref, key, f"unknown rule set {ref!r}: neither built in nor a file",
                         f"use one of: {known}; or a path to a rules file relative to the book")
    return VenueRules(str(ref), _validate_rules(read_yaml(path), str(path)))


@cache
def _load_builtin(name: str, path: Path) -> VenueRules:
    """Built-in rule sets are read once per process (they are immutable)."""
    return VenueRules(name, _validate_rules(read_yaml(path), str(path)))


def _validate_rules(data: dict[str, Any], file: str) -> Rules:
    return validate_model(Rules, data, file)


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file (spec §3)."""
    data = read_yaml(path)
    return validate_model(Policy, data, str(path))


def load_book(path: Path | str) -> LoadedBook:
    """Read, validate and cross-check a book file.  Raises InputErrors listing every problem."""
    path = Path(path)
    file = str(path)
    return with_rules(file, validate_model(Book, read_yaml(path), file), path.parent)


def with_rules(file: str, book: Book, base: Path) -> LoadedBook:
    """A validated book with every venue's rules (named rule sets, or files relative to ``base``), cross-checked.
    Raises InputErrors listing every problem; ``file`` is how messages name the book."""
    errors: list[InputError] = []
    rules: dict[str, VenueRules] = {}
    for venue_id, venue in book.venues.items():
        try:
            rules[venue_id] = load_rules(venue.rules, base, file=file, key=f"venues.{venue_id}.rules")
        except InputError as exc:  # an unknown rule set
            errors.append(exc)
        except InputErrors as exc:  # a rules file with problems
            errors.extend(exc.errors)
    if not errors:
        errors.extend(check_book(file, book, rules))
    if errors:
        raise InputErrors(errors)
    return LoadedBook(file, book, rules)


def check_book(file: str, book: Book, rules: dict[str, VenueRules]) -> list[InputError]:
    """Cross-checks that need the rules: symbols, modes, prices, collateral eligibility, position limits."""
    errors: list[InputError] = []

    def need_price(asset: str, key: str, why: str) -> None:
        if asset not in book.prices:
            errors.append(InputError(file, f"prices.{asset}", f"missing price for asset {asset} ({why} at {key})",
                                     f"add '{asset}: <USD price>' under prices"))

    for asset in book.wallet:
        need_price(asset, f"wallet.{asset}", "held in the wallet")
    for venue_id, venue in book.venues.items():
        vr = rules[venue_id]
        for account_id, account in venue.accounts.items():
            base = f"venues.{venue_id}.accounts.{account_id}"
            for asset in account.collateral:
                key = f"{base}.collateral.{asset}"
                need_price(asset, key, "posted as collateral")
                if vr.rules.collateral_rule(asset) is None:
                    accepted = ", ".join(sorted(set(vr.rules.collateral) | vr.rules.settle_assets))
                    errors.append(InputError(file, key, f"{asset} is not accepted as collateral by {vr.name}",
                                             f"accepted: {accepted}"))
            seen: dict[str, int] = {}
            for i, pos in enumerate(account.positions):
                key = f"{base}.positions[{i}]"
                if pos.symbol in seen:
                    errors.append(InputError(file, f"{key}.symbol",
                                             f"symbol {pos.symbol} already held at positions[{seen[pos.symbol]}]",
                                             "one-way mode: merge the two into one signed qty"))
                seen.setdefault(pos.symbol, i)
                contract = vr.rules.contracts.get(pos.symbol)
                if contract is None:
                    errors.append(InputError(file, f"{key}.symbol", f"unknown symbol {pos.symbol!r} in {vr.name}",
                                             _suggest(pos.symbol, vr.rules)))
                    continue
                model = vr.rules.margin_model
                if model is not None and model.kind == "risk_matrix" and contract.kind != "inverse":
                    errors.append(InputError(file, f"{key}.symbol",
                                             f"{vr.name}'s risk_matrix margin model covers inverse contracts only; "
                                             f"{pos.symbol} is {contract.kind}", "use a bracket rule set"))
                need_price(contract.underlying, f"{key}", f"underlying of {pos.symbol}")
                need_price(contract.settle, f"{key}", f"settle asset of {pos.symbol}")
                if pos.margin_mode == "isolated":
                    if not contract.isolated_allowed:
                        errors.append(InputError(file, f"{key}.margin_mode",
                                                 f"{pos.symbol} cannot be isolated on {vr.name}", "use cross"))
                    if pos.isolated_margin is None:
                        errors.append(InputError(file, f"{key}.isolated_margin",
                                                 "an isolated position needs isolated_margin",
                                                 f"give the isolated wallet balance in {contract.settle}"))
                elif pos.isolated_margin:
                    errors.append(InputError(file, f"{key}.isolated_margin",
                                             f"isolated_margin {pos.isolated_margin:g} on a cross position",
                                             "set margin_mode: isolated, or move the amount to the collateral"))
                limit_error = _position_limit(pos, contract, book.prices)
                if limit_error:
                    errors.append(InputError(file, f"{key}.qty", limit_error, "split or reduce the position"))
            errors.extend(_multi_asset_conflict(file, base, account, vr))
    return errors


def _position_limit(pos: Any, contract: Any, prices: dict[str, float]) -> str | None:
    limit = contract.position_limit
    if limit == float("inf") or contract.underlying not in prices or contract.settle not in prices:
        return None
    mark = pos.mark_price or default_mark(contract, prices)
    notional = abs(pos.qty) * contract.contract_size * (mark if contract.kind == "linear" else 1.0 / mark)
    if notional > limit:
        return (f"notional {notional:,.6g} {contract.settle} exceeds the venue's position limit {limit:,.6g} "
                f"(last bracket cap)")
    return None


def default_mark(contract: Any, prices: dict[str, float]) -> float:
    """Spec §1: linear mark = prices[underlying] / prices[settle]; inverse mark = prices[underlying] (USD)."""
    if contract.kind == "linear":
        return prices[contract.underlying] / prices[contract.settle]
    return prices[contract.underlying]


def _multi_asset_conflict(file: str, base: str, account: Any, vr: VenueRules) -> list[InputError]:
    if vr.rules.isolated_with_multi_asset:
        return []
    settles = {vr.rules.contracts[p.symbol].settle for p in account.positions if p.symbol in vr.rules.contracts}
    foreign = sorted(a for a, bal in account.collateral.items() if a not in settles and bal != 0)
    isolated = [p.symbol for p in account.positions if p.margin_mode == "isolated"]
    if foreign and isolated:
        return [InputError(file, f"{base}.collateral",
                           f"{vr.name} cannot hold isolated positions ({', '.join(isolated)}) while the cross pool "
                           f"holds non-settle collateral ({', '.join(foreign)}) (Multi-Assets mode)",
                           "move those positions to cross or that collateral off the account")]
    return []


def _suggest(symbol: str, rules: Rules) -> str:
    close = difflib.get_close_matches(symbol, list(rules.contracts), n=3)
    return f"did you mean {', '.join(close)}?" if close else f"{len(rules.contracts)} symbols are defined there"
