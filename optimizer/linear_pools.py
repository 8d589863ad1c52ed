"""Cross pools whose equity is affine in the decision, all at once: their coefficients in numpy, their venue margin
and buffer as a few vectorized cvxpy constraints, and the buffer over aggregated scenario cuts.

A pool is *linear* when no collateral carries its positions' PnL inside a haircut (no settle asset with bid/ask
rates or tiers) and every USD-tiered slot stays within its first slice over every scenario it can reach
(:func:`optimizer.formulation.reachable_pieces`).  Then, with z the isolated modes, hv the slots' haircut values,
v their raw values and ℓ their new loans (all scaled USD),

    E_j      = e_j + Σ_i hv_i − Σ_i λ_i ℓ_i − Σ_p u_p z_p                         (equity now)
    T_{j,s}  = c_s · (a_{j,s} + Σ_i (h_{i,s} hv_i + w_{i,s} v_i + b_{i,s} ℓ_i) − Σ_p L_{p,s} z_p)

T the counted buffer term E_now − E_s + k·MM_s of the formulation (:func:`optimizer.formulation.scenario_terms`),
L = data.loss the buffered term of each position alone, and the slot coefficients affine in the slot asset's return
r: plain slots h = −r; first-slice USD-tiered slots h = 1, w = −ρ·bid·(1 + r); loans b = λ·r.

Expected shortfall is kept by Künzi-Bay and Mayer's cutting-plane form of Rockafellar–Uryasev: E_j >= t_j + η_j
with η_j >= Σ_{s∈K} p_s (T_{j,s} − t_j) / (1 − α) for subsets K of scenarios.  Over every K it is the full
constraint; each cut is one row of about as many non-zeros as the pool has positions and slots, whatever the
number of scenarios, so the problem stays small.  A worst case keeps E_j >= t_j >= T_{j,s} over chosen scenarios.
Amounts scaled as in :mod:`optimizer.problem`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy import sparse

from .decision import Decision, Term
from .formulation import reachable_pieces
from .problem import ProblemData


@dataclass
class Cuts:
    """Scenario cuts of the linear pools ``pools``: cut k is pool ``pool[k]``'s rows ``rows[k]`` (scenario
    indices) weighted by their probabilities (expected shortfall) or one scenario alone (worst case)."""

    pools: LinearPools
    pool: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    built: CutRows | None = None  # the matrices of the first cuts, kept across rounds (LinearPools.cut_rows)

    def __len__(self) -> int:
        return len(self.pool)

    def grown(self, pool: list[int], rows: list[np.ndarray]) -> Cuts:
        return Cuts(self.pools, self.pool + pool, self.rows + rows, self.built)


@dataclass(frozen=True)
class CutRows:
    """Cuts as matrices: row k is ``const + Ch @ hv + Cv @ v + Cb @ ℓ − Cz @ z`` (scaled USD), the sum of its
    scenarios' counted terms weighted by p_s / (1 − α) (expected shortfall) or its one scenario's term (worst
    case); ``mass`` the weight of t in the row, Σ p_s / (1 − α); ``owner`` (K, n) picks the pool."""

    const: np.ndarray
    ch: sparse.csr_array
    cv: sparse.csr_array
    cb: sparse.csr_array
    cz: sparse.csr_array
    mass: np.ndarray
    owner: sparse.csr_array


class LinearPools:
    """Every cross pool of ``data``, when all of them are linear (:func:`linear_pools`)."""

    def __init__(self, data: ProblemData) -> None:
        self.data = data
        self.buckets = [b for b, bk in enumerate(data.buckets) if bk.position is None]
        row = {b: j for j, b in enumerate(self.buckets)}
        n, n_slots, n_p = len(self.buckets), len(data.slots), len(data.positions)
        self.labels = [data.buckets[b].label for b in self.buckets]
        r = data.returns
        self.pos_pool = np.array([row[p.cross_bucket] for p in data.positions], dtype=int)
        self.pos_rows = np.array([p.index for p in data.positions], dtype=int)
        upnl = np.array([p.upnl for p in data.positions])
        mm = np.array([p.mm for p in data.positions])
        im = np.array([p.im for p in data.positions])
        cols = np.arange(n_p)
        self.uz = sparse.csr_array((upnl, (self.pos_pool, cols)), shape=(n, n_p))
        self.mz = sparse.csr_array((mm, (self.pos_pool, cols)), shape=(n, n_p))
        self.iz = sparse.csr_array((im, (self.pos_pool, cols)), shape=(n, n_p))
        self.extra_mm = np.array([data.buckets[b].extra_mm for b in self.buckets])
        self.has_positions = np.bincount(self.pos_pool, minlength=n) > 0
        # slots of the pools: how hv, v and new loans enter equity now and the scenario terms
        slot_ids = [i for i, s in enumerate(data.slots) if s.bucket in row]
        self.slot_ids = np.array(slot_ids, dtype=int)
        self.slot_pool = np.array([row[data.slots[i].bucket] for i in slot_ids], dtype=int)
        self.slot_asset = np.array([data.slots[i].asset for i in slot_ids], dtype=int)
        loans = set(data.loan_slots.tolist())
        h0, h1, w0, b1 = (np.zeros(len(slot_ids)) for _ in range(4))
        for k, i in enumerate(slot_ids):
            slot = data.slots[i]
            if slot.usd_tiers:  # first slice only (checked by linear_pools): hv − ρ·bid·(1 + r)·v
                h0[k] = 1.0
                w0[k] = -slot.ratios[0] * slot.bid
            else:  # the haircut value scales with the price: −r·hv
                h1[k] = -1.0
            if i in loans:
                b1[k] = slot.liability_rate
        self.h0, self.h1, self.w0, self.b1 = h0, h1, w0, b1
        self.eh = sparse.csr_array((np.ones(len(slot_ids)), (self.slot_pool, self.slot_ids)), shape=(n, n_slots))
        self.eb = sparse.csr_array((b1, (self.slot_pool, self.slot_ids)), shape=(n, n_slots))
        # constants: debts now and in every scenario, the venues' netted requirement, and every position cross
        e0 = self.uz.sum(axis=1)
        a = np.zeros((n, r.shape[0]))
        for j, b in enumerate(self.buckets):
            bucket = data.buckets[b]
            for asset, debt in bucket.debts:
                e0[j] += debt
                a[j] -= r[:, asset] * debt
            mm_s = bucket.extra_mm_path if bucket.extra_mm_path is not None else np.full(r.shape[0], bucket.extra_mm)
            a[j] += data.buffer * mm_s
        a += self._by_pool(np.ones(n_p)) @ data.loss
        self.e0 = np.asarray(e0, dtype=float).ravel()
        self.a = a
        order = np.argsort(self.slot_pool, kind="stable")
        self.slots_of_pool = np.split(order, np.searchsorted(self.slot_pool[order], np.arange(1, n)))
        order = np.argsort(self.pos_pool, kind="stable")
        self.positions_of_pool = np.split(order, np.searchsorted(self.pos_pool[order], np.arange(1, n)))

    def _by_pool(self, weights: np.ndarray) -> sparse.csr_array:
        """(n, rows of data.loss): each position's weight in its pool's row, at its row of data.loss."""
        return sparse.csr_array((weights, (self.pos_pool, self.pos_rows)),
                                shape=(len(self.buckets), self.data.loss.shape[0]))

    # -- numpy face ------------------------------------------------------------------------------------------------

    def values(self, x: Decision) -> tuple[np.ndarray, np.ndarray]:
        """The counted terms (n, S) and equity now (n,) of every pool at a solved Decision, scaled USD."""
        hv, v, loan, z = _solved(x, self.data)
        equity = self.e0 + self.eh @ hv - self.eb @ loan - self.uz @ z
        hv, v, loan = hv[self.slot_ids], v[self.slot_ids], loan[self.slot_ids]
        # each slot adds α + β·r_s of its asset: summed per (pool, asset) before touching the scenarios
        alpha = hv * self.h0 + v * self.w0
        beta = hv * self.h1 + v * self.w0 + loan * self.b1
        n, n_assets = len(self.buckets), self.data.returns.shape[1]
        by_asset = sparse.csr_array((beta, (self.slot_pool, self.slot_asset)), shape=(n, n_assets))
        terms = self.a - self._by_pool(z) @ self.data.loss
        terms += np.bincount(self.slot_pool, weights=alpha, minlength=n)[:, None]
        terms += (self.data.returns @ by_asset.T).T
        terms *= self.data.cover[None, :]
        return terms, equity

    def cut_rows(self, cuts: Cuts) -> CutRows:
        """The cuts as matrices (:class:`CutRows`); those built in earlier rounds are reused."""
        done = cuts.built.mass.size if cuts.built is not None else 0
        new = self._cut_rows(cuts.pool[done:], cuts.rows[done:])
        if done and cuts.built is not None:
            old = cuts.built
            new = CutRows(np.concatenate([old.const, new.const]),
                          *(sparse.vstack([a, b], format="csr") for a, b in ((old.ch, new.ch), (old.cv, new.cv),
                                                                              (old.cb, new.cb), (old.cz, new.cz))),
                          np.concatenate([old.mass, new.mass]), sparse.vstack([old.owner, new.owner], format="csr"))
        cuts.built = new
        return new

    def _cut_rows(self, pool: list[int], cut_rows: list[np.ndarray]) -> CutRows:
        data = self.data
        n_k, n = len(pool), len(self.buckets)
        p, cover = data.probabilities, data.cover
        const, mass = np.zeros(n_k), np.zeros(n_k)
        slot_rows, slot_cols, hvals, vvals, bvals = [], [], [], [], []
        z_rows, z_cols, z_vals = [], [], []
        by_pool_slots, by_pool_pos = self.slots_of_pool, self.positions_of_pool
        tail = 1.0 / (1.0 - data.alpha) if data.measure == "es" else 1.0
        for k, (j, rows) in enumerate(zip(pool, cut_rows, strict=True)):
            # expected shortfall's rows carry 1 / (1 − α): a row's round-off is then what equity sees
            weight = tail * p[rows] * cover[rows] if data.measure == "es" else cover[rows]
            mass[k] = tail * p[rows].sum()
            const[k] = weight @ self.a[j, rows]
            mine = by_pool_slots[j]
            if mine.size:
                rr = weight @ data.returns[np.ix_(rows, self.slot_asset[mine])]  # (m,)
                wsum = weight.sum()
                slot_rows += [k] * mine.size
                slot_cols += self.slot_ids[mine].tolist()
                hvals += (self.h0[mine] * wsum + self.h1[mine] * rr).tolist()
                vvals += (self.w0[mine] * (wsum + rr)).tolist()
                bvals += (self.b1[mine] * rr).tolist()
            pos = by_pool_pos[j]
            if pos.size:
                z_rows += [k] * pos.size
                z_cols += pos.tolist()
                z_vals += (data.loss[np.ix_(self.pos_rows[pos], rows)] @ weight).tolist()
        n_slots, n_p = len(data.slots), len(data.positions)

        def mat(vals: list[float], rows: list[int], cols: list[int], width: int) -> sparse.csr_array:
            return sparse.csr_array((np.array(vals, dtype=float), (np.array(rows, dtype=int),
                                                                   np.array(cols, dtype=int))), shape=(n_k, width))

        owner = sparse.csr_array((np.ones(n_k), (np.arange(n_k), np.array(pool, dtype=int))), shape=(n_k, n))
        return CutRows(const, mat(hvals, slot_rows, slot_cols, n_slots), mat(vvals, slot_rows, slot_cols, n_slots),
                       mat(bvals, slot_rows, slot_cols, n_slots), mat(z_vals, z_rows, z_cols, n_p), mass, owner)

    # -- cvxpy terms -----------------------------------------------------------------------------------------------

    def terms(self, x: Decision, cuts: Cuts) -> list[Term]:
        """Venue margin, initial margin and the buffer of every pool as vectorized terms (one entry per pool)."""
        data = self.data
        if float(x.knobs.buffer.value) != data.buffer or float(x.knobs.tail.value) != 1.0 / (1.0 - data.alpha):
            raise ValueError("scenario cuts hold the buffer and the tail in their coefficients: sweep without cuts")
        equity = self.e0 + self.eh @ x.haircut_value - self.uz @ x.isolated
        if x.borrowed is not None:
            equity = equity - self.eb @ x.borrowed
        need = self.extra_mm + self.mz.sum(axis=1) - self.mz @ x.isolated
        out = [Term("venue margin", "venue_margin", [equity >= need],
                    elements=[f"venue margin {label}" for label in self.labels])]
        if data.policy.cross.require_initial_margin and self.has_positions.any():
            idx = np.nonzero(self.has_positions)[0]
            im = self.extra_mm + self.iz.sum(axis=1) - self.iz @ x.isolated
            out.append(Term("initial margin", "initial_margin", [equity[idx] >= im[idx]],
                            elements=[f"initial margin {self.labels[j]}" for j in idx]))
        t = cp.Variable(len(self.buckets), name="pool value at risk")
        x.at_risk = t
        labels = [f"buffer {label}" for label in self.labels]
        if data.measure == "worst":
            out.append(Term("buffer", "buffer", [equity >= t], elements=labels))
        else:
            eta = cp.Variable(len(self.buckets), nonneg=True, name="pool excess")  # already over 1 − α
            out.append(Term("buffer", "buffer", [equity >= t + eta], elements=labels))
        if len(cuts):
            rows = self.cut_rows(cuts)
            counted = rows.const + rows.ch @ x.haircut_value + rows.cv @ x.value - rows.cz @ x.isolated
            if x.borrowed is not None:
                counted = counted + rows.cb @ x.borrowed
            if data.measure == "worst":
                cons = [rows.owner @ t >= counted]
            else:
                cons = [rows.owner @ eta >= counted - sparse.diags_array(rows.mass) @ rows.owner @ t]
            out.append(Term("buffer cuts", "definition", cons))
        return out


def linear_pools(data: ProblemData) -> LinearPools | None:
    """The pools as :class:`LinearPools` when every cross pool is linear (module docstring), a scenario measure
    (expected shortfall or worst case, not scanning grids or the delta-normal cone) applies and slots are bounded
    (``data.slot_reach``); None otherwise."""
    if data.units is not None or data.normal is not None or data.slot_reach is None or data.measure not in ("es",
                                                                                                           "worst"):
        return None
    settles: dict[int, set[int]] = {}
    for p in data.positions:
        settles.setdefault(p.cross_bucket, set()).add(p.settle)
    growth = 1.0 + data.returns
    for i, slot in enumerate(data.slots):
        b = slot.bucket
        if data.buckets[b].position is not None:
            continue
        if not slot.plain and slot.asset in settles.get(b, set()):
            return None  # the settle asset carries PnL inside a haircut: a hypograph per scenario
        if slot.usd_tiers:
            top = slot.bid * float(growth[:, slot.asset].max(initial=1.0)) * data.slot_reach[i]
            slopes, intercepts = reachable_pieces(slot, top)
            if len(slopes) != 1 or intercepts[0] != 0.0:
                return None
    return LinearPools(data)


def _solved(x: Decision, data: ProblemData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """hv, v, new loans per slot and isolated modes at a solved Decision (scaled USD; modes in [0, 1])."""
    hv = np.asarray(x.haircut_value.value, dtype=float)
    v = np.asarray(x.value.value, dtype=float)
    loan = np.zeros(len(data.slots)) if x.borrowed is None else np.asarray(x.borrowed.value, dtype=float)
    z = np.asarray(x.isolated.value, dtype=float) if data.positions else np.zeros(0)
    return hv, v, loan, np.broadcast_to(z, (len(data.positions),)).astype(float)


def tail_size(alpha: float, n_scenarios: int) -> int:
    """Scenarios in a (1 − α) tail of equally likely scenarios, at least one."""
    return max(1, math.ceil((1 - alpha) * n_scenarios - 1e-9))
