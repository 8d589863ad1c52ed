"""One optimization end to end: data, solve, recommended book, independent re-check, the spec §6 document."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from risk_models.compiled import compile_book
from risk_models.errors import PmoptError
from risk_models.loading import LoadedBook
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.schema.policy import Policy
from risk_models.venue_margin import evaluate

from .elastic import Reductions, smallest_reductions
from .linear_pools import Cuts
from .problem import ProblemData, build_problem
from .recheck import Checked, RecheckError, evaluate_book, on_venues, recheck
from .recommendation import borrowed, explain, mode_changes, recommended_book, transfers
from .solve import Solution, SolverError
from .working_set import solve_generated

MESSAGE_ROWS = 5
"""Reductions named in the error message (the JSON document and the table list them all)."""


class Infeasible(PmoptError):
    """The policy cannot be met (exit code 3); ``document`` is the spec §6 infeasible document: the smallest top-up,
    and the smallest position reductions (``note`` says why there are none)."""

    exit_code = 3

    def __init__(self, document: dict[str, Any], note: str = "") -> None:
        self.document = document
        self.note = note
        total = sum(t["value"] for t in document["top_up"])
        parts = ", ".join(f"{t['amount']:,.8g} {t['asset']} to {t['bucket']}" for t in document["top_up"])
        text = (f"the policy cannot be met. Either top up {total:,.2f} USD ({parts}), the smallest top-up that makes "
                "it feasible")
        cuts = document["reductions"]
        if cuts:
            cut = sum(r["notional_reduced"] for r in cuts)
            shown = "; ".join(f"{r['venue']}/{r['account']} {r['symbol']} {r['qty_before']:,.8g} → "
                              f"{r['qty_after']:,.8g}" for r in cuts[:MESSAGE_ROWS])
            more = f"; and {len(cuts) - MESSAGE_ROWS} more" if len(cuts) > MESSAGE_ROWS else ""
            text += (f"; or, without a top-up, reduce positions by {cut:,.2f} USD of notional ({shown}{more}), "
                     "verified by re-running the optimizer on the reduced book")
        elif note:
            text += f"; no reduction of positions helps instead: {note}"
        super().__init__(text)


@dataclass(frozen=True)
class Result:
    document: dict[str, Any]
    book: Book
    data: ProblemData
    solution: Solution


def optimize(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, time_limit: float = 120.0,
             reductions: bool = True, on_round: Callable[[str], None] | None = None) -> Result:
    """The recommendation, re-checked; Infeasible with the smallest top-up and, if ``reductions``, the smallest
    verified position reductions when the policy cannot be met.  ``on_round`` hears a line per round of
    constraint generation (progress)."""
    cb = compile_book(loaded)
    state = evaluate(cb)
    data = build_problem(loaded, cb, state, policy, scenarios)
    sol = solve_generated(loaded, data, scenarios, time_limit=time_limit, on_round=on_round)
    if sol.status == "infeasible":
        cuts = Reductions([], "not computed")
        if data.normal is not None:
            cuts = Reductions([], "position reductions are not computed for the delta-normal model (its cone is not "
                                  "in the reduction model): the top-up is the remedy, or use risk_model.method: "
                                  "monte_carlo")
        elif reductions:
            cuts = smallest_reductions(loaded, cb, state, data, scenarios,
                                       lambda book: meets_policy(book, policy, scenarios, time_limit), time_limit)
        raise Infeasible(_infeasible_document(data, sol, cuts), cuts.note)
    book = recommended_book(data, loaded.book, sol)
    after = recheck(loaded, book, policy, scenarios, data.scale)
    before = evaluate_book(loaded, policy, scenarios)
    return Result(_document(data, sol, policy, before, after, loaded), book, data, sol)


def meets_policy(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, time_limit: float = 120.0) -> bool:
    """Whether the optimizer finds a recommendation for ``loaded`` that passes its independent re-check."""
    try:
        optimize(loaded, policy, scenarios, time_limit, reductions=False)
    except (Infeasible, RecheckError, SolverError):
        return False
    return True


def carry(loaded: LoadedBook, book: Book) -> tuple[float, float]:
    """(locked, free) raw USD: positive holdings on venues, and in the wallet."""
    free = sum(max(v, 0.0) * book.prices[a] for a, v in book.wallet.items())
    return on_venues(loaded, book), free


def _carry_cost(loaded: LoadedBook, book: Book, policy: Policy) -> float:
    """Σ yield × value posted on venues (positive balances) + Σ borrow rate × value of new loans (what a pool owes
    beyond its loans in the input book), over the carry horizon, USD."""
    horizon = policy.carry_horizon_days / 365.0
    posted: dict[str, float] = {}
    loans = 0.0
    for venue_id, venue in book.venues.items():
        contracts = loaded.rules[venue_id].rules.contracts
        for account_id, account in venue.accounts.items():
            old = loaded.book.venues[venue_id].accounts[account_id].collateral
            for a, v in account.collateral.items():
                posted[a] = posted.get(a, 0.0) + max(v, 0.0)
                new_loan = min(old.get(a, 0.0), 0.0) - v
                if new_loan > 0:
                    loans += policy.borrow_rates.get(a, 0.0) * new_loan * book.prices[a] * horizon
            for p in account.positions:
                if p.margin_mode == "isolated":
                    settle = contracts[p.symbol].settle
                    posted[settle] = posted.get(settle, 0.0) + (p.isolated_margin or 0.0)
    return loans + sum(policy.yields.get(a, 0.0) * u * book.prices[a] * horizon for a, u in posted.items())


def _accounts(checked: Checked) -> list[dict[str, Any]]:
    cb, st = checked.compiled, checked.state
    out = []
    book = checked.loaded.book
    for b, bucket in enumerate(cb.buckets):
        if bucket.symbol is not None:
            continue
        rows = [p for p, key in enumerate(cb.position_keys) if key[:2] == (bucket.venue, bucket.account)]
        gross = float(np.sum(st.terms.notional_usd[rows])) if rows else 0.0
        account = book.venues[bucket.venue].accounts[bucket.account]
        contracts = checked.loaded.rules[bucket.venue].rules.contracts
        locked = sum(max(v, 0.0) * book.prices[a] for a, v in account.collateral.items())
        locked += sum((p.isolated_margin or 0.0) * book.prices[contracts[p.symbol].settle]
                      for p in account.positions if p.margin_mode == "isolated")
        risk = checked.risks[b]
        mm = float(st.maintenance[b])
        out.append({
            "venue": bucket.venue, "account": bucket.account, "equity": float(st.equity[b]), "maintenance_margin": mm,
            "margin_ratio": float(st.equity[b] / mm) if mm > 0 else None,
            "net_portfolio_margin": risk.net_portfolio_margin, "stressed_equity": risk.stressed_equity,
            "capital_efficiency": gross / locked if locked > 0 else None,
            "liquidation_prices": {cb.position_keys[p][2]: (None if math.isnan(checked.liquidation[p])
                                                            else float(checked.liquidation[p])) for p in rows},
        })
    return out


def _document(data: ProblemData, sol: Solution, policy: Policy, before: Checked, after: Checked,
              loaded: LoadedBook) -> dict[str, Any]:
    book_after = after.loaded.book
    locked_b, free_b = carry(loaded, loaded.book)
    locked_a, free_a = carry(loaded, book_after)
    carry_b, carry_a = _carry_cost(loaded, loaded.book, policy), _carry_cost(loaded, book_after, policy)
    modes, trades = mode_changes(data, sol, after.compiled.position_keys)
    allocations = []  # a negative amount in a cross pool's row is a new loan taken there (spec §1's sign)
    for slot, value, loan in zip(data.slots, sol.value, borrowed(data, sol), strict=True):
        if value > 1e-9 * data.scale or loan > 0:
            net = float(value) - loan
            allocations.append({"bucket": data.buckets[slot.bucket].label, "asset": data.assets[slot.asset],
                                "amount": net / data.prices[slot.asset], "value": net})
    for a, units in book_after.wallet.items():
        allocations.append({"bucket": "wallet", "asset": a, "amount": units, "value": units * book_after.prices[a]})
    horizon = policy.carry_horizon_days
    before_value = carry_b if policy.objective == "carry_cost" else locked_b
    return {
        "version": 1, "status": sol.status, "objective": policy.objective, "objective_value": sol.objective,
        "objective_value_before": before_value,
        "solver": {"name": sol.solver_name, "mip_gap": sol.mip_gap, "seconds": sol.seconds, **solver_detail(sol)},
        "allocations": allocations, "transfers": transfers(data, sol), "trades": trades, "margin_modes": modes,
        "before": {"locked": locked_b, "free": free_b, "accounts": _accounts(before)},
        "after": {"locked": locked_a, "free": free_a, "accounts": _accounts(after)},
        "carry_saved_per_year": (carry_b - carry_a) * 365.0 / horizon,
        "binding_constraints": [
            {"name": b.name, "slack": b.slack * data.scale, "shadow_price": b.shadow_price,
             "unit": "USD of objective per USD of requirement",
             "explanation": explain(b.name, b.kind, b.shadow_price, horizon, policy.cross.buffer)}
            for b in sol.bindings],
    }


def _infeasible_document(data: ProblemData, sol: Solution, cuts: Reductions) -> dict[str, Any]:
    top = sol.top_up if sol.top_up is not None else np.zeros(len(data.assets))
    rows = []
    for a, amount in enumerate(top):
        if amount <= 1e-9 * data.scale:
            continue
        slots = [i for i, s in enumerate(data.slots) if s.asset == a and sol.inflow[i] > 1e-9 * data.scale]
        weights = np.array([sol.inflow[i] for i in slots])
        shares = weights / weights.sum() if slots else np.array([1.0])
        targets = [data.buckets[data.slots[i].bucket].label for i in slots] or ["wallet"]
        for label, share in zip(targets, shares, strict=True):
            value = float(amount * share)
            rows.append({"bucket": label, "asset": data.assets[a], "amount": value / data.prices[a], "value": value})
    return {"status": "infeasible", "top_up": rows, "reductions": [r.to_dict() for r in cuts.rows]}


def solver_detail(sol: Solution) -> dict[str, Any]:
    """Where the solve's seconds went (cvxpy's compile, the solver's own, the full-set checks of constraint
    generation) and how buffer survival was kept: ``cuts`` (aggregated scenario cuts over linear pools), ``rows``
    (per-scenario working sets), ``all`` (every scenario) or ``cone`` (delta-normal), with the rows or cuts kept."""
    kind = ("cuts" if isinstance(sol.working_sets, Cuts) else "rows" if sol.working_sets is not None
            else "cone" if sol.solver_name != "HIGHS" else "all")
    return {"compile_seconds": sol.timing.get("compile", 0.0), "solve_seconds": sol.timing.get("solver", 0.0),
            "separation_seconds": sol.timing.get("separation", 0.0), "rounds": sol.rounds,
            "scenario_constraints": kind, "scenario_constraints_kept": sol.scenario_rows}

