"""The independent re-check: the recommended book re-evaluated by risk_models' exact numpy path.

Nothing is printed unless every requirement holds here: venue margin now (and initial margin if asked), the
buffer survival of every cross pool with exact tiers at shocked prices, every isolated position's liquidation
distance from its exact liquidation price, conservation of every asset, eligibility and Multi-Assets mode (the
book loader's own checks), concentration, venue caps and reserves, and no negative balance beyond the loans the
desk already has unless the policy's ``borrow_rates`` names the asset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk_models.compiled import CompiledBook, compile_book
from risk_models.delta_normal import normal_model_of, normal_requirement
from risk_models.errors import PmoptError
from risk_models.liquidation import liquidation_prices
from risk_models.loading import LoadedBook, check_book
from risk_models.measures import RiskMeasure
from risk_models.portfolio_margin import BucketRisk, portfolio_margin
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.schema.policy import Policy
from risk_models.venue_margin import MarginState, evaluate

TOLERANCE = 1e-6
"""Violations smaller than this share of the desk's capital are solver round-off, not violations."""


class RecheckError(PmoptError):
    """The recommendation failed the independent re-check (exit code 1): it is never printed."""


@dataclass(frozen=True)
class Checked:
    loaded: LoadedBook
    compiled: CompiledBook
    state: MarginState
    risks: list[BucketRisk]
    liquidation: np.ndarray


def evaluate_book(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet) -> Checked:
    cb = compile_book(loaded)
    st = evaluate(cb)
    normal = normal_model_of(scenarios, policy.risk_model.method)
    if normal is None:
        measure = RiskMeasure(policy.risk_model.measure, policy.risk_model.confidence)
        risks = portfolio_margin(cb, st, scenarios, measure, policy.cross.buffer, tuple(policy.risk_model.pegged),
                                 attribution=False)
    else:
        need, stressed = normal_requirement(cb, st, normal, policy.cross.buffer)
        risks = [BucketRisk(b, float(need[b]), float(stressed[b])) for b in range(cb.n_buckets)]
    return Checked(loaded, cb, st, risks, liquidation_prices(cb, st))


def recheck(before: LoadedBook, book: Book, policy: Policy, scenarios: ScenarioSet, scale: float) -> Checked:
    """Re-evaluate the recommended ``book``; raise RecheckError listing every violated requirement."""
    problems: list[str] = []
    errors = check_book("<recommendation>", book, before.rules)
    problems += [str(e) for e in errors]
    if problems:
        raise RecheckError("the recommendation failed the re-check:\n  " + "\n  ".join(problems))
    loaded = LoadedBook("<recommendation>", book, before.rules)
    checked = evaluate_book(loaded, policy, scenarios)
    cb, st = checked.compiled, checked.state
    tol = TOLERANCE * scale
    for b, bucket in enumerate(cb.buckets):
        if st.equity[b] < st.maintenance[b] - tol:
            problems.append(f"{bucket.label}: equity {st.equity[b]:,.2f} below maintenance {st.maintenance[b]:,.2f}")
        if bucket.symbol is None:
            r = checked.risks[b].net_portfolio_margin
            if st.equity[b] < r - tol:
                problems.append(f"{bucket.label}: equity {st.equity[b]:,.2f} below the buffered net portfolio "
                                f"margin {r:,.2f}")
            if policy.cross.require_initial_margin and st.equity[b] < st.initial[b] - tol:
                problems.append(f"{bucket.label}: equity {st.equity[b]:,.2f} below initial margin {st.initial[b]:,.2f}")
    d = policy.isolated.liquidation_distance
    pa = cb.positions
    for p, mode in enumerate(cb.position_modes):
        if mode != "isolated" or d <= 0:
            continue
        liq = checked.liquidation[p]
        side = 1.0 if pa.qty[p] > 0 else -1.0
        distance = side * (pa.mark[p] - liq) / pa.mark[p] if np.isfinite(liq) else np.inf
        # a shortfall of ε in distance is ≈ ε × notional of isolated margin: round-off below tol is no violation
        slack = 1e-9 + tol / max(float(st.terms.notional_usd[p]), 1e-300)
        if distance < d - slack:
            problems.append(f"{cb.position_paths[p]}: isolated liquidation price {liq:,.6g} is {distance:.4%} from "
                            f"the mark, the policy asks {d:.2%}")
    problems += _conservation(before, book)
    problems += _loans(before.book, book, policy, tol)
    problems += _limits(book, policy, before, tol)
    if problems:
        raise RecheckError("the recommendation failed the re-check:\n  " + "\n  ".join(problems))
    return checked


def unit_totals(loaded: LoadedBook, book: Book) -> dict[str, float]:
    """Every asset's total units (wallet, cross collateral, isolated margins)."""
    out: dict[str, float] = {}
    for a, v in book.wallet.items():
        out[a] = out.get(a, 0.0) + v
    for venue_id, venue in book.venues.items():
        contracts = loaded.rules[venue_id].rules.contracts
        for account in venue.accounts.values():
            for a, v in account.collateral.items():
                out[a] = out.get(a, 0.0) + v
            for p in account.positions:
                if p.margin_mode == "isolated":
                    settle = contracts[p.symbol].settle
                    out[settle] = out.get(settle, 0.0) + (p.isolated_margin or 0.0)
    return out


def gross_capital(loaded: LoadedBook, book: Book) -> float:
    """All positive holdings at raw USD value (wallet, cross collateral, isolated margins): the venue caps' base."""
    prices = book.prices
    total = sum(max(v, 0.0) * prices[a] for a, v in book.wallet.items())
    return total + on_venues(loaded, book)


def on_venues(loaded: LoadedBook, book: Book, venue: str | None = None) -> float:
    """Positive collateral and isolated margins at raw USD value, on one venue or all."""
    prices = book.prices
    total = 0.0
    for venue_id, v in book.venues.items():
        if venue is not None and venue_id != venue:
            continue
        contracts = loaded.rules[venue_id].rules.contracts
        for account in v.accounts.values():
            total += sum(max(x, 0.0) * prices[a] for a, x in account.collateral.items())
            total += sum((p.isolated_margin or 0.0) * prices[contracts[p.symbol].settle]
                         for p in account.positions if p.margin_mode == "isolated")
    return total


def _conservation(before: LoadedBook, after: Book) -> list[str]:
    """Every asset's total units are unchanged (nothing appears or vanishes)."""
    old, new = unit_totals(before, before.book), unit_totals(before, after)
    problems = []
    for asset in sorted(set(old) | set(new)):
        a, b = old.get(asset, 0.0), new.get(asset, 0.0)
        if abs(a - b) > 1e-9 * max(abs(a), abs(b), 1e-12):
            problems.append(f"{asset}: total {b:,.10g} units after, {a:,.10g} before (conservation)")
    return problems


def _loans(before: Book, after: Book, policy: Policy, tol: float) -> list[str]:
    """Wallet balances stay non-negative; a cross pool owes more of an asset than it did before (a new loan) only
    when ``borrow_rates`` names the asset.  ``tol`` in USD."""
    problems = []
    prices = after.prices
    for asset, units in after.wallet.items():
        if units < -tol / max(prices.get(asset, 1.0), 1e-300):
            problems.append(f"wallet.{asset}: {units:,.10g}, a wallet balance cannot be negative")
    for venue_id, venue in after.venues.items():
        old_venue = before.venues.get(venue_id)
        for account_id, account in venue.accounts.items():
            old_account = old_venue.accounts.get(account_id) if old_venue is not None else None
            old = old_account.collateral if old_account is not None else {}
            for asset, units in account.collateral.items():
                owed = min(old.get(asset, 0.0), 0.0)
                if asset not in policy.borrow_rates and units < owed - tol / max(prices.get(asset, 1.0), 1e-300):
                    problems.append(f"venues.{venue_id}.accounts.{account_id}.collateral.{asset}: {units:,.10g}, a "
                                    f"new loan of {owed - units:,.10g}, but borrow_rates does not name {asset}")
    return problems


def _limits(book: Book, policy: Policy, loaded: LoadedBook, tol: float) -> list[str]:
    """Reserves, concentration per cross pool and venue caps, on raw USD values."""
    problems = []
    prices = book.prices
    for asset, units in policy.reserve.items():
        if book.wallet.get(asset, 0.0) < units - tol / max(prices.get(asset, 1.0), 1e-300):
            problems.append(f"wallet.{asset}: {book.wallet.get(asset, 0.0):,.8g} below the reserve {units:,.8g}")
    capital = gross_capital(loaded, book)
    for venue_id, venue in book.venues.items():
        on_venue = 0.0
        contracts = loaded.rules[venue_id].rules.contracts
        for account_id, account in venue.accounts.items():
            pool = {a: max(v, 0.0) * prices[a] for a, v in account.collateral.items()}
            pool_total = sum(pool.values())
            on_venue += pool_total + sum((p.isolated_margin or 0.0) * prices[contracts[p.symbol].settle]
                                         for p in account.positions if p.margin_mode == "isolated")
            settles = {contracts[p.symbol].settle for p in account.positions}
            for asset, limit in policy.concentration.items():
                if asset not in settles and pool.get(asset, 0.0) > limit * pool_total + tol:
                    problems.append(f"venues.{venue_id}.accounts.{account_id}: {asset} is "
                                    f"{pool[asset] / pool_total:.2%} of the pool, limit {limit:.2%}")
        cap = policy.venue_cap.get(venue_id)
        if cap is not None and on_venue > cap * capital + tol:
            problems.append(f"venues.{venue_id}: {on_venue / capital:.2%} of capital, cap {cap:.2%}")
    return problems
