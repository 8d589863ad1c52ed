"""From a solution to the recommended state: the new book, transfers, mode changes, and the spec §6 document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from risk_models.schema import Book

from .problem import ProblemData
from .solve import Solution

DUST = 1e-9
"""Allocations below this share of the desk's capital are solver noise: they stay where they are (wallet)."""
ROUNDOFF = 1e-7
"""Over-allocation of an asset up to this share of the desk's capital is solver round-off, trimmed away."""


@dataclass(frozen=True)
class Recommendation:
    book: Book  # the recommended state, a book like any other
    document: dict[str, Any]  # spec §6
    transfers: list[dict[str, Any]] = field(default_factory=list)


def borrowed(data: ProblemData, sol: Solution) -> np.ndarray:
    """(n_slots,) USD of the new loan taken in each slot (0 where none may be taken or none is).

    Transfers move a slot's net balance (held less borrowed), so the loan is the change in what the slot holds
    that no transfer explains: value − value now − (inflow − outflow).  Below the dust threshold it is zero.
    """
    out = np.zeros(len(data.slots))
    for i in data.loan_slots:
        loan = sol.value[i] - data.slots[i].current * data.scale - (sol.inflow[i] - sol.outflow[i])
        out[i] = loan if loan > DUST * data.scale else 0.0
    return out


def recommended_book(data: ProblemData, book: Book, sol: Solution) -> Book:
    """The book with the solution's collateral, isolated margins and margin modes; the rest in the wallet.

    Unit amounts are value / price; whatever is not allocated stays in the wallet so that every asset's total
    is exactly conserved.  A new loan lowers its pool's balance (negative when it exceeds what is posted there)
    and adds its units to what can be allocated.
    """
    dust = DUST * data.scale
    raw = book.model_dump()
    totals = _unit_totals(data)
    allocated = dict.fromkeys(data.assets, 0.0)
    iso_margin: dict[int, float] = {}
    iso_asset: dict[int, str] = {}
    collateral: dict[tuple[str, str], dict[str, float]] = {}
    loans: dict[tuple[str, str], dict[str, float]] = {}
    for slot, value, loan in zip(data.slots, sol.value, borrowed(data, sol), strict=True):
        asset = data.assets[slot.asset]
        bucket = data.buckets[slot.bucket]
        if loan > 0:
            units = loan / data.prices[slot.asset]
            totals[asset] += units
            loans.setdefault((bucket.venue, bucket.account), {})[asset] = units
        if value <= dust:
            continue
        units = value / data.prices[slot.asset]
        allocated[asset] += units
        if bucket.position is None:
            collateral.setdefault((bucket.venue, bucket.account), {})[asset] = units
        else:
            iso_margin[bucket.position] = units
            iso_asset[bucket.position] = asset
    # Solver round-off (within its feasibility tolerance) can allocate slightly more than is held: trim that excess
    # so that every asset's total is conserved exactly.  Larger excesses are left for the re-check to report.
    for asset, units in allocated.items():
        excess = units - totals[asset]
        if 0 < excess * data.prices[data.assets.index(asset)] <= ROUNDOFF * data.scale:
            shrink = totals[asset] / units
            for pool in collateral.values():
                if asset in pool:
                    pool[asset] *= shrink
            for p, a in iso_asset.items():
                if a == asset:
                    iso_margin[p] *= shrink
            allocated[asset] = totals[asset]
    modes = {p.index: bool(z) for p, z in zip(data.positions, sol.isolated, strict=True)}
    row = 0
    for venue_id, venue in raw["venues"].items():
        for account_id, account in venue["accounts"].items():
            debts = {a: v for a, v in account["collateral"].items() if v < 0}
            pool = dict(collateral.get((venue_id, account_id), {}))
            for asset, owed in debts.items():  # a loan stays; what is posted in the same asset nets against it
                pool[asset] = pool.get(asset, 0.0) + owed
            for asset, units in loans.get((venue_id, account_id), {}).items():  # and so does a new one
                pool[asset] = pool.get(asset, 0.0) - units
            account["collateral"] = pool
            for pos in account["positions"]:
                if modes.get(row):
                    pos["margin_mode"] = "isolated"
                    pos["isolated_margin"] = iso_margin.get(row, 0.0)
                else:
                    pos["margin_mode"] = "cross"
                    pos["isolated_margin"] = None
                row += 1
    raw["wallet"] = {a: totals[a] - allocated[a] for a in data.assets if totals[a] - allocated[a] > 0}
    return Book.model_validate(raw)


def _unit_totals(data: ProblemData) -> dict[str, float]:
    return {a: float(data.holdings[i] * data.scale / data.prices[i]) for i, a in enumerate(data.assets)}


def transfers(data: ProblemData, sol: Solution) -> list[dict[str, Any]]:
    """Moves from the current state: out of buckets to the wallet first, then from the wallet into buckets.

    With new loans, in the order they can be made: withdrawals, deposits of assets not borrowed (the collateral
    that backs a loan goes in first), then the withdrawal of each loan's proceeds from the pool that takes it
    out, then deposits of the borrowed assets.
    """
    bps = data.policy.transfer_cost_bps / 1e4
    dust = DUST * data.scale
    loans = borrowed(data, sol)
    lent = {data.slots[i].asset for i in np.nonzero(loans)[0]}
    outs, ins, loan_outs, loan_ins = [], [], [], []
    for slot, inflow, outflow, loan in zip(data.slots, sol.inflow, sol.outflow, loans, strict=True):
        label, asset, price = data.buckets[slot.bucket].label, data.assets[slot.asset], data.prices[slot.asset]
        if outflow > dust:
            (loan_outs if loan > 0 else outs).append({"from": label, "to": "wallet", "asset": asset,
                                                      "amount": outflow / price, "cost": outflow * bps})
        if inflow > dust:
            (loan_ins if slot.asset in lent else ins).append({"from": "wallet", "to": label, "asset": asset,
                                                              "amount": inflow / price, "cost": inflow * bps})
    return outs + ins + loan_outs + loan_ins


def mode_changes(data: ProblemData, sol: Solution, keys: list[tuple[str, str, str]]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(margin_modes, trades): every change of margin mode, and those that need a close and reopen."""
    bps = data.policy.mode_switch_cost_bps / 1e4
    modes, trades = [], []
    for p, z in zip(data.positions, sol.isolated, strict=True):
        after = "isolated" if z else "cross"
        before = "isolated" if p.isolated_now else "cross"
        if after == before:
            continue
        venue, account, symbol = keys[p.index]
        modes.append({"venue": venue, "account": account, "symbol": symbol, "before": before, "after": after})
        if p.close_reopen:
            trades.append({"venue": venue, "account": account, "symbol": symbol,
                           "action": f"close_reopen_{after}", "cost": p.notional * data.scale * bps})
    return modes, trades


def explain(name: str, kind: str, shadow: float, horizon_days: float, buffer: float | None = None) -> str:
    """The binding constraint in a trader's words: what binds, and what 1,000 USD more or less of its requirement
    costs over the carry horizon and per day (``buffer``: the policy's k, named on buffer constraints)."""
    per_1000 = shadow * 1000
    what = {
        "buffer": f"the {buffer:g}× buffer on" if buffer is not None else "the buffer on",
        "venue_margin": "the venue's maintenance margin on",
        "initial_margin": "the initial margin on",
        "isolated": "the liquidation-distance rule on",
        "concentration": "the concentration limit on",
        "venue_cap": "the venue cap on",
        "reserve": "the wallet reserve of",
        "exclusive": "Multi-Assets mode on",
        "loan_limit": "the loan limit on",
    }.get(kind, "")
    prefixes = ("isolated margin ", "venue margin ", "initial margin ", "multi-assets mode ", "venue cap ",
                "buffer ", "concentration ", "reserve ", "isolated ", "borrowing ")
    target = next((name[len(p):] for p in prefixes if name.startswith(p)), name)
    return (f"{what} {target} binds: each extra 1,000 USD of requirement there costs {per_1000:,.2f} USD over the "
            f"{horizon_days:g}-day carry horizon ({per_1000 / horizon_days:,.4g} USD/day); each 1,000 USD less "
            "saves as much.").strip()
