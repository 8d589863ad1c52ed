"""A rules file (spec §2) from any venue's saved ``fetch_leverage_tiers()`` output.

:func:`rules_from_tiers_file` reads the JSON that ccxt's ``fetch_leverage_tiers()`` (or a dict of
``fetch_market_leverage_tiers()`` results) returns, ``{symbol: [{tier, currency, minNotional, maxNotional,
maintenanceMarginRate, maxLeverage, info}, ...]}``, applies what :mod:`risk_models.ccxt_venues` knows about the
venue, and returns the rules dict plus notes on every choice it made:

- contract ids: the market's ``id`` when a markets file is given, else the venue id in the tier's ``info``,
  else the venue's id convention;
- contract sizes: from the markets file (required for inverse contracts and for tiers sized in contracts);
- tiers sized in contracts (OKX, MEXC): caps are converted to settle-asset notional at reference prices
  (``caps × contractSize × price``), and the rule set says so in ``not_covered``;
- tiers without ``maxLeverage`` (BingX): ``max_leverage`` given by the caller, else the market's
  ``limits.leverage.max``;
- venues that liquidate at maintenance margin + closing fee (BingX, MEXC, WEEX): ``liquidation_fee_rate`` must
  be given (0 is accepted, explicitly);
- the venue's own maintenance amounts (``cum``, ``maintAmount``, ``mmDeduction`` in ``info``) are compared
  with the cum construction of spec §2, and any difference is reported.

Errors are :class:`~risk_models.errors.InputError` naming the file, the symbol (and tier) and the remedy.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ccxt_tiers import CcxtSymbol, parse_ccxt_symbol, rules_from_ccxt_tiers
from .ccxt_venues import VenueProfile, candidate_ids, dig, profile_for
from .errors import InputError, InputErrors

_CUM_KEYS = ("cum", "maintAmount", "mmDeduction")
"""Keys under which venues report their maintenance amount per tier (Binance, BingX, Bybit)."""


@dataclass(frozen=True)
class ImportedRules:
    """A rules dict (spec §2) and the notes that explain how it was made."""

    rules: dict[str, Any]
    notes: tuple[str, ...]


def read_json(path: Path | str, what: str) -> Any:
    """Parse a JSON file; a missing file, bad JSON or a duplicated key is an InputError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "", f"{what} file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "", f"cannot read the {what} file: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise InputError(str(path), exc.key, "duplicated key", "keep one entry per key") from None
    except json.JSONDecodeError as exc:
        raise InputError(str(path), "", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                         f"save the {what} as ccxt returns it, e.g. json.dump(result, fh)") from None


class _Problem(ValueError):
    """One symbol's tiers cannot be used: the reason and the remedy."""

    def __init__(self, reason: str, remedy: str) -> None:
        self.reason = reason
        self.remedy = remedy
        super().__init__(reason)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_markets(path: Path | str) -> dict[str, Mapping[str, Any]]:
    """ccxt markets, saved as ``exchange.markets`` (dict by symbol) or ``fetch_markets()`` (list)."""
    data = read_json(path, "markets")
    rows = data.values() if isinstance(data, Mapping) else data if isinstance(data, list) else None
    if rows is None:
        raise InputError(str(path), "", "expected ccxt markets: a mapping by symbol or a list of markets",
                         "save exchange.markets or exchange.fetch_markets()")
    markets: dict[str, Mapping[str, Any]] = {}
    for market in rows:
        if isinstance(market, Mapping) and isinstance(market.get("symbol"), str):
            markets[market["symbol"]] = market
    return markets


def rules_from_tiers_file(
    path: Path | str,
    *,
    venue: str,
    exchange: str | None = None,
    source: str | None = None,
    date: str | None = None,
    liquidation_fee_rate: float | None = None,
    max_leverage: float | None = None,
    markets: Mapping[str, Mapping[str, Any]] | None = None,
    prices: Mapping[str, float] | None = None,
    price_note: str = "",
) -> ImportedRules:
    """Rules for ``venue`` from the tiers JSON at ``path`` (see the module docstring).

    ``exchange`` is the ccxt id whose conventions apply (default: ``venue`` when it is one); ``prices`` are
    USD prices per asset, needed only for tiers sized in contracts (``price_note`` says where they come from).
    """
    file = str(path)
    profile = profile_for(exchange, venue)
    tiers = read_json(path, "leverage tiers")
    if not isinstance(tiers, Mapping) or not tiers:
        raise InputError(file, "", "expected ccxt leverage tiers: a non-empty mapping {symbol: [tier, ...]}",
                         "save the result of exchange.fetch_leverage_tiers()")
    notes: list[str] = []
    if profile.closing_fee and liquidation_fee_rate is None:
        raise InputError(file, "", f"{profile.exchange} liquidates at maintenance margin + the closing fee "
                         "(reference §2)", "pass --liquidation-fee-rate with the taker fee rate (e.g. 0.0005), "
                         "or 0 to leave the fee out on purpose")
    fee = liquidation_fee_rate or 0.0
    if not (0 <= fee < 1):
        raise InputError(file, "liquidation_fee_rate", f"{fee!r} is not a rate in [0, 1)", "e.g. 0.0005")
    markets = markets or {}
    errors: list[InputError] = []
    converted: dict[str, list[dict[str, Any]]] = {}
    sizes: dict[str, float] = {}
    ids: dict[str, str] = {}
    filled_leverage: list[str] = []
    for symbol, symbol_tiers in tiers.items():
        try:
            parsed = parse_ccxt_symbol(symbol)
        except ValueError as exc:
            errors.append(InputError(file, symbol, str(exc).removeprefix(f"{symbol}: "),
                                     "only perpetual and dated futures contracts have margin tiers here"))
            continue
        if not isinstance(symbol_tiers, list) or not symbol_tiers:
            errors.append(InputError(file, symbol, "expected a non-empty list of tiers"))
            continue
        market = markets.get(symbol)
        size = _number_or_none(market, "contractSize")
        if size is not None:
            sizes[symbol] = size
        ids[symbol] = _contract_id(profile, parsed, market, symbol_tiers)
        rows = [dict(t) if isinstance(t, Mapping) else t for t in symbol_tiers]
        try:
            rows = _with_leverage(symbol, rows, max_leverage, market, filled_leverage)
            if profile.tier_unit == "contracts":
                rows = _contracts_to_notional(symbol, parsed, rows, size, prices, notes)
        except _Problem as exc:
            errors.append(InputError(file, symbol, exc.reason, exc.remedy))
            continue
        converted[symbol] = rows
    if errors:
        raise InputErrors(errors)
    not_covered = _not_covered(profile, fee, price_note)
    try:
        rules = rules_from_ccxt_tiers(converted, venue=venue, source=source or _default_source(profile, path),
                                      date=date, liquidation_fee_rate=fee, not_covered=not_covered,
                                      contract_sizes=sizes, contract_ids=ids)
    except ValueError as exc:
        symbol, _, reason = str(exc).partition(": ")
        remedy = "give --markets (the exchange's markets JSON) for contract sizes" if "contract size" in reason else ""
        raise InputError(file, symbol, reason or str(exc), remedy) from None
    if filled_leverage:
        notes.append(f"max_leverage filled for tiers without maxLeverage: {', '.join(filled_leverage)}")
    if profile.tier_unit == "contracts":
        notes.append(f"{profile.exchange} sizes its tiers in contracts: caps converted to settle-asset notional at "
                     f"the reference prices{f' ({price_note})' if price_note else ''}")
    notes.extend(_cum_check(tiers, rules, ids))
    if profile.closing_fee:
        notes.append(f"liquidation_fee_rate {fee:g} added to every maintenance requirement ({profile.exchange} "
                     "liquidates at maintenance margin + closing fee)")
    return ImportedRules(rules, tuple(notes))


def _contract_id(profile: VenueProfile, parsed: CcxtSymbol, market: Mapping[str, Any] | None,
                 tiers: Sequence[Any]) -> str:
    if market is not None and isinstance(market.get("id"), str) and market["id"]:
        return market["id"]
    info = tiers[0].get("info") if isinstance(tiers[0], Mapping) else None
    for cid, _ in candidate_ids(profile, parsed, info if isinstance(info, Mapping) else {}):
        return cid
    return parsed.contract_id


def _with_leverage(symbol: str, rows: list[Any], max_leverage: float | None, market: Mapping[str, Any] | None,
                   filled: list[str]) -> list[Any]:
    """Fill a missing ``maxLeverage`` from the caller's value, else the market's ``limits.leverage.max``."""
    if not any(isinstance(r, dict) and r.get("maxLeverage") is None for r in rows):
        return rows
    fallback = max_leverage if max_leverage is not None else _number_or_none(dig(market, "limits.leverage"), "max")
    if fallback is None or fallback <= 0:
        raise _Problem("tiers without maxLeverage (the venue does not publish one per tier)",
                       "pass --max-leverage N (the venue's maximum leverage for the symbol)")
    for row in rows:
        if isinstance(row, dict) and row.get("maxLeverage") is None:
            row["maxLeverage"] = float(fallback)
    filled.append(f"{symbol} ({fallback:g})")
    return rows


def _contracts_to_notional(symbol: str, parsed: CcxtSymbol, rows: list[Any], size: float | None,
                           prices: Mapping[str, float] | None, notes: list[str]) -> list[Any]:
    """Caps in contracts → settle-asset notional: linear ``n × size × P_base/P_settle``, inverse ``n × size / P``.

    Venues that count whole contracts may start a tier one contract above the previous cap (OKX: 0–2000,
    2001–…); such a floor is moved down to the previous cap (a note says so), any other gap stays an error.
    """
    if size is None:
        raise _Problem("tiers are sized in contracts and the contract size is unknown",
                       "pass --markets (the exchange's markets JSON, as pmopt fetch writes it)")
    prices = prices or {}
    missing = [a for a in (parsed.base, parsed.settle) if a not in prices and not (a == parsed.settle == "USD")]
    if parsed.kind == "inverse":
        missing = [a for a in missing if a == parsed.base]
    if missing:
        raise _Problem(f"tiers are sized in contracts; converting them to notional needs the USD price of "
                       f"{', '.join(missing)}", "pass --prices (a CSV of daily USD closes)")
    if parsed.kind == "linear":
        per_contract = size * prices[parsed.base] / prices[parsed.settle]
    else:
        per_contract = size / prices[parsed.base]
    out = []
    ordered = sorted((r for r in rows if isinstance(r, dict)), key=lambda r: _float(r.get("minNotional")))
    for previous, row in itertools.pairwise(ordered):
        gap = _float(row.get("minNotional")) - _float(previous.get("maxNotional"))
        if 0 < gap <= 1:
            notes.append(f"tier {row.get('tier')} of {symbol} starts {gap:g} contract above tier "
                         f"{previous.get('tier')}'s cap: taken as contiguous")
            row["minNotional"] = previous["maxNotional"]
    for row in rows:
        if isinstance(row, dict):
            row = dict(row)
            for key in ("minNotional", "maxNotional"):
                value = row.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    row[key] = value * per_contract
        out.append(row)
    return out


def _cum_check(tiers: Mapping[str, Any], rules: Mapping[str, Any], ids: Mapping[str, str]) -> list[str]:
    """Venue maintenance amounts that differ from the cum construction (spec §2), as notes."""
    differ = []
    for symbol, symbol_tiers in tiers.items():
        contract = rules["contracts"].get(ids.get(symbol, ""))
        if contract is None or not isinstance(symbol_tiers, list):
            continue
        venue_cums = []
        for tier in sorted((t for t in symbol_tiers if isinstance(t, Mapping)),
                           key=lambda t: t.get("minNotional") or 0):
            info = tier.get("info") if isinstance(tier.get("info"), Mapping) else {}
            value = next((info[k] for k in _CUM_KEYS if info.get(k) not in (None, "")), None)
            try:
                venue_cums.append(float(value) if value is not None else None)
            except (TypeError, ValueError):
                venue_cums.append(None)
        if not venue_cums or any(c is None for c in venue_cums):
            continue
        cum = 0.0
        caps = [b["cap"] for b in contract["brackets"]]
        mmrs = [b["mmr"] for b in contract["brackets"]]
        for n, venue_cum in enumerate(venue_cums):
            if n:
                cum += caps[n - 1] * (mmrs[n] - mmrs[n - 1])
            if abs(cum - venue_cum) > 1e-6 * max(1.0, abs(cum)):
                differ.append(f"{symbol} tier {n + 1}: venue {venue_cum:g}, construction {cum:g}")
                break
    if not differ:
        return []
    return ["the venue's maintenance amounts differ from the cum construction (pmopt uses the construction, spec §2): "
            + "; ".join(differ)]


def _float(value: Any) -> float:
    """A tier bound for ordering (non-numbers sort first; the converter reports them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return -math.inf
    return float(value)


def _number_or_none(data: Any, key: str) -> float | None:
    value = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _default_source(profile: VenueProfile, path: Path | str) -> str:
    return (f"ccxt fetch_leverage_tiers() output for {profile.exchange}, saved as {Path(path).name}; imported by "
            "pmopt rules import-ccxt (give --source with the fetch date for the record)")


def _not_covered(profile: VenueProfile, fee: float, price_note: str) -> str:
    parts = ["Made from the venue's leverage tiers only: collateral is every settle asset at 100 %; no haircuts,"
             " multi-asset buffers, portfolio-margin models or per-user tier adjustments."]
    if profile.tier_unit == "contracts":
        parts.append(f"{profile.exchange} sizes its tiers in contracts: the caps here are notional at reference "
                     f"prices{f' ({price_note})' if price_note else ''} and drift as prices move.")
    if profile.closing_fee and fee == 0:
        parts.append(f"{profile.exchange} liquidates at maintenance margin + closing fee; the fee was set to 0.")
    return " ".join(parts)
