"""What pmopt knows about each ccxt exchange: contract ids, where the cross wallet is, tier units, fees.

ccxt's unified structures hide most venue differences, but not the ones a margin book depends on:

- the venue's own contract id (the shipped rule sets use ``BTCUSDT``, ``BTC-USDT-SWAP``, ``BTC-PERPETUAL``,
  ``BTC``): a position's raw ``info`` carries it (:attr:`VenueProfile.native_id_keys`), and each venue builds it
  from base, quote, settle and expiry in its own way (:attr:`VenueProfile.contract_id`);
- the cross-pool wallet balance (spec §1 ``collateral``: without unrealized PnL and without isolated margins):
  ccxt's unified ``total`` is the margin balance (with unrealized PnL) on Binance and the equity on OKX, so the
  venue's own field is read from the balance's ``info`` (:attr:`VenueProfile.balance_field`);
- the unit of the leverage tiers: ccxt names them ``minNotional``/``maxNotional``, but OKX (``minSz``/``maxSz``)
  and MEXC (``riskIncrVol``) size them in contracts (:attr:`VenueProfile.tier_unit`);
- venues that liquidate at maintenance margin plus the closing fee (BingX, MEXC, WEEX; reference §2).

An exchange without a profile gets :data:`GENERIC`: every known id key and id convention is tried, and the
unified ``total`` is used as the wallet, which the import reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .ccxt_tiers import CcxtSymbol

ContractId = Callable[[CcxtSymbol], "str | None"]


def _binance(s: CcxtSymbol) -> str:
    """``BTCUSDT``, ``BTCUSDT_241227``; coin-margined ``BTCUSD_PERP``, ``BTCUSD_241227``."""
    root = s.base + s.quote
    if s.expiry:
        return f"{root}_{s.expiry}"
    return f"{root}_PERP" if s.kind == "inverse" else root


def _okx(s: CcxtSymbol) -> str:
    """``BTC-USDT-SWAP``, ``BTC-USD-SWAP``, ``BTC-USDT-241227``."""
    return f"{s.base}-{s.quote}-{s.expiry or 'SWAP'}"


def _bybit(s: CcxtSymbol) -> str | None:
    """``BTCUSDT``, ``BTCUSD`` (inverse), ``BTCPERP`` (USDC perpetual); dated futures: from ``info`` only."""
    if s.expiry:
        return None
    return f"{s.base}PERP" if s.quote == "USDC" and s.settle == "USDC" else s.base + s.quote


def _deribit(s: CcxtSymbol) -> str:
    """``BTC-PERPETUAL`` (inverse), ``BTC_USDC-PERPETUAL`` (linear), ``BTC-27DEC24``."""
    root = s.base if s.kind == "inverse" else f"{s.base}_{s.quote}"
    if not s.expiry:
        return f"{root}-PERPETUAL"
    try:
        day = datetime.strptime(s.expiry, "%y%m%d")
    except ValueError:
        return f"{root}-{s.expiry}"
    return f"{root}-{day.day}{day.strftime('%b').upper()}{day.strftime('%y')}"


def _dash(s: CcxtSymbol) -> str:
    """BingX, dYdX: ``BTC-USDT``, ``BTC-USD``."""
    return f"{s.base}-{s.quote}"


def _underscore(s: CcxtSymbol) -> str:
    """MEXC, Gate: ``BTC_USDT``."""
    return f"{s.base}_{s.quote}"


def _concat(s: CcxtSymbol) -> str:
    """WEEX, Bitget: ``BTCUSDT``."""
    return s.base + s.quote


def _coin(s: CcxtSymbol) -> str:
    """Hyperliquid: the coin, ``BTC``."""
    return s.base


@dataclass(frozen=True)
class BalanceField:
    """Where a venue's balance ``info`` lists its assets and which field is the cross wallet balance.

    ``rows`` is a dotted path from ``info`` to the list of per-asset rows (``""`` = ``info`` itself is the
    list); ``asset`` and ``amount`` are keys of a row.  ``includes_isolated`` says that the amount also holds
    the margins of isolated positions (they are then subtracted).  ``what`` names the field in messages.
    """

    rows: tuple[str, ...]
    asset: str
    amount: str
    includes_isolated: bool
    what: str


@dataclass(frozen=True)
class VenueProfile:
    """One ccxt exchange, as far as a margin book is concerned."""

    exchange: str
    native_id_keys: tuple[str, ...]
    """Dotted paths, inside a position's or a tier's ``info``, to the venue's contract id."""
    contract_id: ContractId | None
    """The venue's contract id built from a ccxt symbol (it returns None when it cannot build one); None for
    :data:`GENERIC`, which tries every convention."""
    balance_field: BalanceField | None
    """The cross wallet in the balance's ``info``; None = ccxt's unified ``total`` (reported as such)."""
    tier_unit: Literal["notional", "contracts"] = "notional"
    closing_fee: bool = False
    """Liquidation at maintenance margin + closing fee: the rules need ``liquidation_fee_rate``."""
    default_rules: str | None = None


_BINANCE_WALLET = BalanceField(("assets", ""), "asset", "crossWalletBalance", False,
                               "the cross wallet balance, without unrealized PnL and isolated wallets")
_OKX_WALLET = BalanceField(("data.0.details",), "ccy", "cashBal", False,
                           "the cash balance, without unrealized PnL; isolated margin equity is reported apart (isoEq)")
_BYBIT_WALLET = BalanceField(("result.list.0.coin",), "coin", "walletBalance", True,
                             "the wallet balance without unrealized PnL, less the isolated margins")
_BINGX_WALLET = BalanceField(("data",), "asset", "balance", True,
                             "the wallet balance without unrealized PnL (equity − unrealizedProfit), less the "
                             "isolated margins")

PROFILES: dict[str, VenueProfile] = {p.exchange: p for p in (
    VenueProfile("binanceusdm", ("symbol",), _binance, _BINANCE_WALLET, default_rules="binance-usdm"),
    VenueProfile("binance", ("symbol",), _binance, _BINANCE_WALLET, default_rules="binance-usdm"),
    VenueProfile("binancecoinm", ("symbol",), _binance, _BINANCE_WALLET),
    VenueProfile("okx", ("instId",), _okx, _OKX_WALLET, tier_unit="contracts", default_rules="okx-pm"),
    VenueProfile("bybit", ("symbol",), _bybit, _BYBIT_WALLET),
    VenueProfile("bingx", ("symbol",), _dash, _BINGX_WALLET, closing_fee=True),
    VenueProfile("mexc", ("symbol",), _underscore, None, tier_unit="contracts", closing_fee=True),
    VenueProfile("weex", ("symbol",), _concat, None, closing_fee=True),
    VenueProfile("bitget", ("symbol",), _concat, None),
    VenueProfile("gate", ("contract",), _underscore, None),
    VenueProfile("deribit", ("instrument_name",), _deribit, None),
    VenueProfile("hyperliquid", ("position.coin", "coin"), _coin, None, default_rules="hyperliquid"),
    VenueProfile("dydx", ("market", "ticker"), _dash, None, default_rules="dydx-v4"),
)}

_GENERIC_IDS: tuple[ContractId, ...] = (_concat, _binance, _okx, _dash, _underscore, _deribit, _coin)


GENERIC = VenueProfile("generic", ("symbol", "instId", "instrument_name", "position.coin", "coin", "market",
                                   "ticker", "contract"), None, None)
"""For an exchange without a profile: every id key, every id convention, the unified ``total`` as wallet."""

_ALIASES = {"binance-usdm": "binanceusdm", "binance-coinm": "binancecoinm", "okex": "okx", "okx-pm": "okx",
            "deribit-pm": "deribit", "deribit-standard": "deribit", "dydx-v4": "dydx"}


def profile_for(*names: str | None) -> VenueProfile:
    """The profile of the first name that is a known exchange (ccxt id, or a built-in rule-set name or venue)."""
    for name in names:
        if not name:
            continue
        key = name.strip().lower()
        key = re.sub(r"-\d{4}(-\d{2}){0,2}$", "", key)  # a dated rule-set name
        key = _ALIASES.get(key, key)
        if key in PROFILES:
            return PROFILES[key]
    return GENERIC


def dig(data: Any, path: str) -> Any:
    """``dig(info, "position.coin")``; integer parts index lists; None when any step is missing."""
    node = data
    for part in path.split(".") if path else ():
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def candidate_ids(profile: VenueProfile, symbol: CcxtSymbol, info: Any) -> Iterator[tuple[str, str]]:
    """Contract ids to try, best first, each with where it came from (``info.symbol``, ``convention``)."""
    seen: set[str] = set()
    for key in profile.native_id_keys:
        value = dig(info, key)
        if isinstance(value, str) and value and value not in seen:
            seen.add(value)
            yield value, f"info.{key}"
    builders = _GENERIC_IDS if profile.contract_id is None else (profile.contract_id,)
    for build in builders:
        cid = build(symbol)
        if cid and cid not in seen:
            seen.add(cid)
            yield cid, f"{profile.exchange} id convention"


def balance_rows(field: BalanceField, info: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(key path, row) of each per-asset row of a balance ``info``; the first path that is a list wins."""
    for path in field.rows:
        rows = dig(info, path)
        if isinstance(rows, list):
            prefix = f"info.{path}" if path else "info"
            for i, row in enumerate(rows):
                if isinstance(row, Mapping):
                    yield f"{prefix}[{i}]", row
            return
