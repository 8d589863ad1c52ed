"""Terms over positions and accounts rather than pools: isolated buckets, venue caps and the Multi-Assets switch,
each vectorized (one cvxpy constraint per kind, an entry per position, slot or account).  Scaled USD."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
from scipy import sparse

from .decision import Decision, Term
from .problem import ProblemData


def _loan_set(data: ProblemData) -> set[int]:
    """Slots where a new loan may be taken."""
    return set(data.loan_slots.tolist())


def _isolated_terms(data: ProblemData, x: Decision) -> list[Term]:
    """Every isolated bucket as one vectorized term: its margin covers the position's need when it is isolated
    (z = 1) and is empty otherwise; a position whose need is infinite can never be isolated."""
    slot_of_bucket = {s.bucket: i for i, s in enumerate(data.slots) if data.buckets[s.bucket].position is not None}
    js, slots, labels, never = [], [], [], []
    for j, ps in enumerate(data.positions):
        if ps.iso_bucket < 0:
            continue
        if not math.isfinite(ps.iso_need):
            never.append(j)
            continue
        js.append(j)
        slots.append(slot_of_bucket[ps.iso_bucket])
        labels.append(f"isolated margin {data.buckets[ps.iso_bucket].label}")
    out = []
    fixed = js and x.free is None and isinstance(x.isolated, cp.Constant)
    z_fixed = np.asarray(x.isolated.value, dtype=float)[js] if fixed else None
    if z_fixed is not None and np.all((z_fixed == 0) | (z_fixed == 1)) and all(
            isinstance(v, cp.Constant) for v in x.mode.values()):
        # every mode fixed at 0 or 1: an isolated bucket is needed or empty, no big-M
        on = [k for k in range(len(js)) if z_fixed[k] > 0.5]
        off = [k for k in range(len(js)) if z_fixed[k] <= 0.5]
        if on:
            out.append(Term("isolated margin", "isolated",
                            [x.value[[slots[k] for k in on]] >= x.knobs.iso_need[[js[k] for k in on]]],
                            elements=[labels[k] for k in on]))
        if off:
            out.append(Term("isolated buckets left empty", "definition", [x.value[[slots[k] for k in off]] == 0]))
        js = []
    if js:
        # big-M of the on/off link: conservation already keeps value <= holdings; max(·, iso_need) keeps the
        # elastic re-solve (holdings + top-up) able to isolate a position whose need exceeds today's holdings
        cap = np.array([max(data.holdings[data.positions[j].settle], data.positions[j].iso_need) for j in js])
        z = x.isolated[js]
        out.append(Term("isolated margin", "isolated",
                        [x.value[slots] >= cp.multiply(x.knobs.iso_need[js], z), x.value[slots] <= cp.multiply(cap, z)],
                        elements=labels))
    if never:
        out.append(Term("isolated", "isolated", [x.isolated[never] == 0],
                        elements=[f"isolated {data.buckets[data.positions[j].iso_bucket].label}" for j in never]))
    return out


def _cap_terms(data: ProblemData, x: Decision) -> list[Term]:
    out = []
    for venue, share in data.policy.venue_cap.items():
        slots = [i for i, s in enumerate(data.slots) if data.venue_of_bucket[s.bucket] == venue]
        if slots:
            out.append(Term(f"venue cap {venue}", "venue_cap",
                            [cp.sum(x.value[slots]) <= share * data.total_capital]))
    return out


def _exclusive_terms(data: ProblemData, x: Decision) -> list[Term]:
    """Multi-Assets mode: an account either posts non-settle collateral or holds isolated positions.  One
    vectorized term per kind of link, an entry per position or slot named by its account."""
    accounts = list(x.mode)
    if not accounts:
        return []
    row = {acct: k for k, acct in enumerate(accounts)}
    labels = [f"multi-assets mode {venue}/{account}" for venue, account in accounts]
    n_acc = len(accounts)
    mode = cp.hstack([cp.reshape(x.mode[acct], (1,), order="F") for acct in accounts])
    pos, pos_acc = [], []
    settles: dict[int, set[int]] = {k: set() for k in range(n_acc)}
    for i, p in enumerate(data.positions):
        bk = data.buckets[p.cross_bucket]
        k = row.get((bk.venue, bk.account))
        if k is not None:
            pos.append(i)
            pos_acc.append(k)
            settles[k].add(p.settle)
    cross = {row[(bk.venue, bk.account)]: b for b, bk in enumerate(data.buckets)
             if bk.position is None and (bk.venue, bk.account) in row}
    account_of_bucket = {b: k for k, b in cross.items()}
    # big-M: what the desk holds of the asset plus what it may borrow
    loanable = np.bincount(np.array([data.slots[i].asset for i in data.loan_slots], dtype=int),
                           minlength=len(data.assets))
    reach = data.holdings + data.loan_cap * loanable
    loan_set = _loan_set(data)
    foreign = [(i, account_of_bucket[s.bucket]) for i, s in enumerate(data.slots)
               if s.bucket in account_of_bucket and s.asset not in settles[account_of_bucket[s.bucket]]]

    def pick(accs: list[int]) -> sparse.csr_array:
        return sparse.csr_array((np.ones(len(accs)), (np.arange(len(accs)), accs)), shape=(len(accs), n_acc))

    out = []
    if pos:
        out.append(Term("multi-assets mode", "exclusive", [x.isolated[pos] <= pick(pos_acc) @ mode],
                        elements=[labels[k] for k in pos_acc]))
    # a foreign loan already taken: Multi-Assets mode
    locked = [k for k, b in cross.items() if any(asset not in settles[k] for asset, _ in data.buckets[b].debts)]
    if locked:
        out.append(Term("multi-assets mode", "exclusive", [mode[locked] == 0], elements=[labels[k] for k in locked]))
    if foreign:
        slots, accs = [i for i, _ in foreign], [k for _, k in foreign]
        cap = reach[[data.slots[i].asset for i in slots]]
        out.append(Term("multi-assets mode", "exclusive", [x.value[slots] <= cp.multiply(cap, 1 - pick(accs) @ mode)],
                        elements=[labels[k] for k in accs]))
        loans = [(i, k) for i, k in foreign if i in loan_set]
        if loans:  # a new loan of a foreign asset
            accs = [k for _, k in loans]
            out.append(Term("multi-assets mode", "exclusive",
                            [x.borrowed[[i for i, _ in loans]] <= data.loan_cap * (1 - pick(accs) @ mode)],
                            elements=[labels[k] for k in accs]))
    return out
