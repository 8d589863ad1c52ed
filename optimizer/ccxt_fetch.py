"""`pmopt fetch`: save an account's positions, balance, leverage tiers and markets through ccxt.

Needs the optional extra ``pip install 'pmopt[live]'`` (ccxt).  API keys come from the environment only:
``PMOPT_<EXCHANGE>_API_KEY`` and ``PMOPT_<EXCHANGE>_SECRET`` (plus ``PMOPT_<EXCHANGE>_PASSWORD`` for venues with
a passphrase, such as OKX), where ``<EXCHANGE>`` is the ccxt id in upper case (``PMOPT_BINANCEUSDM_API_KEY``).
The files written are the inputs of `pmopt import ccxt` and `pmopt rules import-ccxt`:

- ``positions.json``: ``fetch_positions(symbols)``;
- ``balance.json``: ``fetch_balance()``;
- ``tiers.json``: ``fetch_leverage_tiers(symbols)``, or ``fetch_market_leverage_tiers`` per symbol where the
  exchange only has that, or ``{}`` (with a note) where it has neither;
- ``markets.json``: the markets of those symbols (contract sizes and venue ids).

The symbols are the ones given, else those of the open positions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from risk_models.errors import InputError, PmoptError

FILES = ("positions.json", "balance.json", "tiers.json", "markets.json")


class FetchError(PmoptError):
    """The exchange could not be reached or refused a request (exit code 1); the message names the call."""


class MissingExtra(PmoptError):
    """ccxt is not installed (exit code 1)."""


@dataclass(frozen=True)
class Credentials:
    """API credentials read from the environment (never from files or arguments)."""

    api_key: str
    secret: str
    password: str | None


@dataclass(frozen=True)
class FetchResult:
    """What was written, and notes on what could not be fetched."""

    files: tuple[Path, ...]
    symbols: tuple[str, ...]
    positions: int
    notes: tuple[str, ...]


def env_prefix(exchange: str) -> str:
    """``binanceusdm`` → ``PMOPT_BINANCEUSDM``."""
    return "PMOPT_" + re.sub(r"[^A-Z0-9]+", "_", exchange.upper())


def credentials(exchange: str, environ: Mapping[str, str] | None = None) -> Credentials:
    """Read ``PMOPT_<EXCHANGE>_API_KEY`` / ``_SECRET`` / ``_PASSWORD``; InputError naming a missing variable."""
    environ = os.environ if environ is None else environ
    prefix = env_prefix(exchange)
    missing = [f"{prefix}_{name}" for name in ("API_KEY", "SECRET") if not environ.get(f"{prefix}_{name}")]
    if missing:
        raise InputError("environment", " and ".join(missing), "not set",
                         f"export {missing[0]}=... (read-only API keys suffice); {prefix}_PASSWORD holds a "
                         "passphrase where the venue has one (OKX)")
    return Credentials(environ[f"{prefix}_API_KEY"], environ[f"{prefix}_SECRET"], environ.get(f"{prefix}_PASSWORD"))


def make_exchange(exchange: str, creds: Credentials, *, sandbox: bool = False) -> Any:
    """A ccxt exchange instance with the credentials; MissingExtra without ccxt, InputError for an unknown id."""
    try:
        import ccxt
    except ImportError:
        raise MissingExtra("pmopt fetch needs ccxt: pip install 'pmopt[live]'") from None
    cls = getattr(ccxt, exchange, None)
    if not (isinstance(cls, type) and issubclass(cls, ccxt.Exchange)):
        raise InputError("--exchange", exchange, "not a ccxt exchange id", "e.g. binanceusdm, okx, bybit, bingx")
    config: dict[str, Any] = {"apiKey": creds.api_key, "secret": creds.secret, "enableRateLimit": True}
    if creds.password:
        config["password"] = creds.password
    instance = cls(config)
    if sandbox:
        instance.set_sandbox_mode(True)
    return instance


def fetch_account(exchange: Any, out_dir: Path | str, symbols: Sequence[str] | None = None) -> FetchResult:
    """Call the exchange's fetch methods and write the four files into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = getattr(exchange, "id", type(exchange).__name__)
    notes: list[str] = []
    _call(name, "load_markets", exchange.load_markets)
    wanted = list(symbols) if symbols else None
    positions = _call(name, "fetch_positions", lambda: exchange.fetch_positions(wanted))
    balance = _call(name, "fetch_balance", exchange.fetch_balance)
    held = sorted({p.get("symbol") for p in positions if isinstance(p, Mapping) and p.get("symbol")})
    tier_symbols = wanted or held
    has = getattr(exchange, "has", {}) or {}
    if not tier_symbols:
        tiers: dict[str, Any] = {}
    elif has.get("fetchLeverageTiers"):
        tiers = _call(name, "fetch_leverage_tiers", lambda: exchange.fetch_leverage_tiers(tier_symbols))
    elif has.get("fetchMarketLeverageTiers"):
        tiers = {s: _call(name, f"fetch_market_leverage_tiers({s})",
                          lambda s=s: exchange.fetch_market_leverage_tiers(s)) for s in tier_symbols}
    else:
        tiers = {}
        notes.append(f"{name} publishes no leverage tiers through ccxt: tiers.json is empty (use --rules)")
    markets = getattr(exchange, "markets", None) or {}
    chosen = {s: markets[s] for s in sorted(set(tier_symbols) | set(held)) if s in markets}
    documents = {"positions.json": positions, "balance.json": balance, "tiers.json": tiers, "markets.json": chosen}
    written = []
    for file, data in documents.items():
        path = out_dir / file
        path.write_text(json.dumps(_plain(data), indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return FetchResult(tuple(written), tuple(tier_symbols), len(positions), tuple(notes))


def _call(exchange: str, what: str, call: Callable[[], Any]) -> Any:
    try:
        import ccxt

        errors: tuple[type[BaseException], ...] = (ccxt.BaseError,)
    except ImportError:  # a stand-in exchange object in tests
        errors = ()
    try:
        return call()
    except errors as exc:
        raise FetchError(f"{exchange}: {what} failed: {type(exc).__name__}: {exc}") from None


def _plain(value: Any) -> Any:
    """JSON-ready copy; objects JSON cannot hold become text.  Non-finite floats are kept (written as NaN or
    Infinity) so that the importer names them instead of mistaking them for absent values."""
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
