"""Venue margin per account and position (the numbers behind `pmopt margin`, spec §4).  Amounts in USD."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .compiled import CompiledBook, compile_book
from .errors import InputError, InputErrors
from .liquidation import liquidatable_now, liquidation_prices
from .loading import LoadedBook
from .venue_margin import MarginState, evaluate


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class PositionMargin:
    symbol: str
    settle: str
    margin_mode: str
    qty: float
    notional: float
    maintenance_margin: float
    maintenance_margin_settle: float
    unrealized_pnl: float
    isolated_margin: float | None
    liquidation_price: float | None
    liquidatable_now: bool


@dataclass(frozen=True)
class AccountMargin:
    venue: str
    account: str
    rules: str
    equity: float
    maintenance_margin: float
    initial_margin: float
    margin_ratio: float | None
    available: float
    positions: list[PositionMargin]


@dataclass(frozen=True)
class MarginReport:
    accounts: list[AccountMargin]

    def to_dict(self) -> dict:
        """The JSON document of spec §4."""
        return {"version": 1, "accounts": [asdict(a) for a in self.accounts]}


def check_finite(file: str, cb: CompiledBook, st: MarginState) -> None:
    """Finite inputs can still overflow (qty 1e307): name every position whose figures are not finite."""
    t = st.terms
    bad = ~(np.isfinite(t.notional_usd) & np.isfinite(t.pnl_settle) & np.isfinite(t.mm_usd) & np.isfinite(t.im_usd))
    bad |= ~np.isfinite(st.equity[cb.positions.bucket])
    errors = [InputError(file, cb.position_paths[p], "its notional, PnL or margin overflows the float range",
                         "check qty, entry_price, mark_price and the prices for a misplaced exponent")
              for p in np.nonzero(bad)[0]]
    if not errors and not np.all(np.isfinite(st.equity)):
        errors = [InputError(file, "venues", "an account's collateral value overflows the float range",
                             "check collateral balances and prices for a misplaced exponent")]
    if errors:
        raise InputErrors(errors)


def margin_report(loaded: LoadedBook, compiled: CompiledBook | None = None,
                  state: MarginState | None = None) -> MarginReport:
    """Evaluate every account's cross pool and every position (with its liquidation price)."""
    cb = compiled or compile_book(loaded)
    st = state or evaluate(cb)
    check_finite(loaded.file, cb, st)
    liq = liquidation_prices(cb, st)
    now = liquidatable_now(st)
    ratio = st.margin_ratio
    t = st.terms
    per_bucket: dict[int, list[PositionMargin]] = {}
    cross_of: dict[tuple[str, str], int] = {}
    for b, bid in enumerate(cb.buckets):
        if bid.symbol is None:
            cross_of[(bid.venue, bid.account)] = b
    for p, (venue, account, symbol) in enumerate(cb.position_keys):
        b = int(cb.positions.bucket[p])
        mm_settle = float(t.mm_settle[p])
        mm_usd = float(t.mm_usd[p])
        if not np.isnan(cb.standalone_mm_settle[p]):  # risk-matrix venue: the position's margin alone
            mm_settle = float(cb.standalone_mm_settle[p])
            mm_usd = mm_settle * float(cb.prices[cb.positions.settle[p]] * cb.positions.ask_settle[p])
        pm = PositionMargin(
            symbol=symbol, settle=cb.position_settle_names[p], margin_mode=cb.position_modes[p],
            qty=float(cb.positions.qty[p]), notional=float(t.notional_usd[p]),
            maintenance_margin=mm_usd, maintenance_margin_settle=mm_settle,
            unrealized_pnl=float(t.pnl_settle[p] * cb.prices[cb.positions.settle[p]]),
            isolated_margin=_opt(cb.isolated_margin[p]), liquidation_price=_opt(liq[p]),
            liquidatable_now=bool(now[b]),
        )
        per_bucket.setdefault(cross_of[(venue, account)], []).append(pm)
    accounts = []
    for (venue, account), b in cross_of.items():
        accounts.append(AccountMargin(
            venue=venue, account=account, rules=cb.bucket_rules[b], equity=float(st.equity[b]),
            maintenance_margin=float(st.maintenance[b]), initial_margin=float(st.initial[b]),
            margin_ratio=_opt(ratio[b]), available=float(st.available[b]), positions=per_bucket.get(b, []),
        ))
    return MarginReport(accounts)
