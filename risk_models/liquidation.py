"""Liquidation prices (spec §4): the mark at which a bucket's equity equals its maintenance margin.

Moving a position's mark by a ratio r moves its underlying: the underlying's USD price, the marks of the bucket's
other positions on that underlying and the value of collateral (and of requirements) held in that asset all scale
by r; everything else stays.  Every position of one bucket on one underlying therefore shares one root r*, found
once per (bucket, underlying) *group*: g(r) = equity(r) − maintenance(r), brackets and haircut tiers re-evaluated
at r.

g is concave in r for every shape these rules take: PnL and collateral values are affine in r, haircut tiers
are concave slices of an affine amount, bid ≤ ask makes the valuation concave across zero, and maintenance
margin is a maximum of affine pieces (linear: notional ∝ r; inverse: USD margin = max_k(mmr_k·c·p − cum_k·p·r);
Deribit's size-dependent rate adds a convex c/r term).  (Asset-denominated haircut tiers on a coin-margined pool
are the one shape where this is not guaranteed.)  So when the bucket is healthy (g(1) > 0) there is at most
one root below and one above the mark: a coarse grid of ratios in [1e-6, 1e6] brackets them; a bucket that is
already under water is scanned on a finer grid.  Brackets are refined together by regula falsi with the
Anderson–Björck correction to ~1e-14 relative.  No sign change on the grid means no liquidation price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .compiled import CompiledBook, HoldingArrays, PositionArrays
from .unit_margin import UnitMargins
from .venue_margin import MarginState, holding_value, maintenance_settle, settle_notional, unrealized_pnl

GRID_DOWN = 1.0 - np.array([0.003, 0.01, 0.03, 0.07, 0.15, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-6])
"""Ratios scanned below the mark, nearest first (fine grid)."""
GRID_UP = 1.0 + np.array([0.003, 0.01, 0.03, 0.07, 0.15, 0.3, 0.6, 1.0, 3.0, 10.0, 100.0, 1e4, 1e6])
"""Ratios scanned above the mark, nearest first (fine grid)."""
COARSE_DOWN = 1.0 - np.array([0.02, 0.1, 0.3, 0.6, 0.9, 1 - 1e-6])
COARSE_UP = 1.0 + np.array([0.02, 0.1, 0.5, 3.0, 100.0, 1e6])
_MAX_ITER = 200
_REL_WIDTH = 1e-14
_COMPACT_MIN = 64


@dataclass(frozen=True)
class Groups:
    """(bucket, underlying) groups, the position and holding rows each group moves, and their values at r = 1.

    Position rows are the group's positions plus the bucket's positions settled in the group's underlying;
    holding rows are the group's bucket's holdings in that underlying and those receiving the rows' PnL.
    """

    bucket: np.ndarray  # (G,)
    of_position: np.ndarray  # (P,) group whose root gives each position's liquidation price
    pos_index: np.ndarray  # (Rp,) position of each row
    pos_moves_mark: np.ndarray | None  # (Rp,) bool: the row's mark moves (None: every row's does)
    pos_moves_settle: np.ndarray | None  # (Rp,) bool: the row's settle asset moves (None: no row's does)
    hold_index: np.ndarray  # (Rh,)
    hold_moves: np.ndarray  # (Rh,) bool: the holding's asset is the group's underlying
    positions: PositionArrays  # rows pos_index, taken once
    holdings: HoldingArrays  # rows hold_index, taken once
    pos_hold_row: np.ndarray  # (Rp,) holding row receiving each position row's PnL
    pos_to_group: sparse.csr_array  # (G, Rp) sums rows into groups
    pos_to_hold: sparse.csr_array  # (Rh, Rp) routes each row's PnL to its settle holding row
    hold_to_group: sparse.csr_array  # (G, Rh)
    pos_group: np.ndarray  # (Rp,)
    hold_group: np.ndarray  # (Rh,)
    # values at r = 1
    mark0: np.ndarray  # (Rp, 1)
    settle_price0: np.ndarray  # (Rp, 1)
    pnl0: np.ndarray  # (Rp, 1) settle units
    mm0: np.ndarray  # (Rp, 1) USD
    equity0: np.ndarray  # (Rh, 1) asset units
    price0: np.ndarray  # (Rh, 1) USD
    value0: np.ndarray  # (Rh, 1) USD
    surplus0: np.ndarray  # (G, 1) USD: equity − maintenance of the group's bucket
    unit_of_group: np.ndarray | None = None  # (G,) portfolio-margin unit moving with the group, -1 none
    units: UnitMargins | None = None

    def __len__(self) -> int:
        return len(self.bucket)

    def subset(self, keep: np.ndarray) -> Groups:
        """The groups where ``keep`` is true, with their rows only (``of_position`` is left empty)."""
        new_id = np.cumsum(keep) - 1
        prow, hrow = keep[self.pos_group], keep[self.hold_group]
        pi, hi = np.nonzero(prow)[0], np.nonzero(hrow)[0]
        hold_id = np.cumsum(hrow) - 1
        pos_group, hold_group = new_id[self.pos_group[pi]], new_id[self.hold_group[hi]]
        pos_hold_row = hold_id[self.pos_hold_row[pi]]
        n = int(keep.sum())
        opt = lambda a, idx: None if a is None else a[idx]  # noqa: E731
        return Groups(
            bucket=self.bucket[keep], of_position=np.zeros(0, dtype=int), pos_index=self.pos_index[pi],
            pos_moves_mark=opt(self.pos_moves_mark, pi), pos_moves_settle=opt(self.pos_moves_settle, pi),
            hold_index=self.hold_index[hi], hold_moves=self.hold_moves[hi], positions=self.positions.take(pi),
            holdings=self.holdings.take(hi), pos_hold_row=pos_hold_row, pos_to_group=_aggregator(pos_group, n),
            pos_to_hold=_aggregator(pos_hold_row, len(hi)), hold_to_group=_aggregator(hold_group, n),
            pos_group=pos_group, hold_group=hold_group, mark0=self.mark0[pi], settle_price0=self.settle_price0[pi],
            pnl0=self.pnl0[pi], mm0=self.mm0[pi], equity0=self.equity0[hi], price0=self.price0[hi],
            value0=self.value0[hi], surplus0=self.surplus0[keep],
            unit_of_group=None if self.unit_of_group is None else self.unit_of_group[keep], units=self.units,
        )


def _aggregator(target: np.ndarray, n_target: int) -> sparse.csr_array:
    n = len(target)
    return sparse.csr_array((np.ones(n), (target, np.arange(n))), shape=(n_target, n))


def build_groups(cb: CompiledBook, state: MarginState) -> Groups:
    """Index the rows each (bucket, underlying) group moves (vectorized)."""
    pa, ha = cb.positions, cb.holdings
    n_assets = len(cb.assets)
    keys, of_position = np.unique(pa.bucket * n_assets + pa.underlying, return_inverse=True)
    g_bucket, g_und = keys // n_assets, keys % n_assets

    def lookup(bucket: np.ndarray, asset: np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.full(len(bucket), -1)
        k = bucket * n_assets + asset
        i = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
        return np.where(keys[i] == k, i, -1)

    p_all = np.arange(len(pa))
    by_settle = lookup(pa.bucket, pa.settle)
    extra = (by_settle >= 0) & (pa.settle != pa.underlying)
    pos_group = np.concatenate([of_position, by_settle[extra]]).astype(int)
    pos_index = np.concatenate([p_all, p_all[extra]])
    moves_mark = pa.underlying[pos_index] == g_und[pos_group]
    moves_settle = pa.settle[pos_index] == g_und[pos_group]

    n_h = max(len(ha), 1)
    h_group = lookup(ha.bucket, ha.asset)
    own = h_group >= 0
    pair_keys = np.unique(np.concatenate([h_group[own] * n_h + np.nonzero(own)[0],
                                          pos_group * n_h + pa.hold[pos_index]]))
    hold_group, hold_index = pair_keys // n_h, pair_keys % n_h
    pos_hold_row = np.searchsorted(pair_keys, pos_group * n_h + pa.hold[pos_index])
    hold_moves = ha.asset[hold_index] == g_und[hold_group]
    col = lambda a: a[:, None]  # noqa: E731
    return Groups(
        bucket=g_bucket, of_position=of_position, pos_index=pos_index,
        pos_moves_mark=None if moves_mark.all() else moves_mark,
        pos_moves_settle=moves_settle if moves_settle.any() else None, hold_index=hold_index, hold_moves=hold_moves,
        positions=pa.take(pos_index), holdings=ha.take(hold_index),
        pos_hold_row=pos_hold_row, pos_to_group=_aggregator(pos_group, len(keys)),
        pos_to_hold=_aggregator(pos_hold_row, len(hold_index)),
        hold_to_group=_aggregator(hold_group, len(keys)), pos_group=pos_group, hold_group=hold_group,
        mark0=col(pa.mark[pos_index]), settle_price0=col(cb.prices[pa.settle[pos_index]]),
        pnl0=col(state.terms.pnl_settle[pos_index]), mm0=col(state.terms.mm_usd[pos_index]),
        equity0=col(state.holding_equity[hold_index]), price0=col(cb.prices[ha.asset[hold_index]]),
        value0=col(state.holding_value[hold_index]), surplus0=col((state.equity - state.maintenance)[g_bucket]),
        **_units_of_groups(cb, keys, n_assets),
    )


def _units_of_groups(cb: CompiledBook, keys: np.ndarray, n_assets: int) -> dict:
    """The portfolio-margin unit (same bucket and underlying) of each group, if any."""
    units = cb.units
    if not len(units):
        return {}
    unit_keys = units.bucket * n_assets + units.underlying
    lookup = {int(k): i for i, k in enumerate(unit_keys)}
    return {"unit_of_group": np.array([lookup.get(int(k), -1) for k in keys], dtype=int), "units": units}


def surplus(groups: Groups, ratio: np.ndarray) -> np.ndarray:
    """g_j(r) = equity − maintenance (USD) of group j's bucket with its underlying scaled by ``ratio`` (G, K)."""
    r_pos = ratio[groups.pos_group]
    mark = groups.mark0 * (r_pos if groups.pos_moves_mark is None
                           else np.where(groups.pos_moves_mark[:, None], r_pos, 1.0))
    settle_price = groups.settle_price0
    if groups.pos_moves_settle is not None:
        settle_price = settle_price * np.where(groups.pos_moves_settle[:, None], r_pos, 1.0)
    rows = groups.positions
    mm_usd = maintenance_settle(rows, settle_notional(rows, mark)) * settle_price * rows.ask_settle[:, None]
    d_pnl = unrealized_pnl(rows, mark) - groups.pnl0
    equity = groups.equity0 + groups.pos_to_hold @ d_pnl
    price = groups.price0 * np.where(groups.hold_moves[:, None], ratio[groups.hold_group], 1.0)
    d_value = holding_value(groups.holdings, equity, price) - groups.value0
    out = groups.surplus0 + groups.hold_to_group @ d_value - groups.pos_to_group @ (mm_usd - groups.mm0)
    if groups.unit_of_group is not None and np.any(groups.unit_of_group >= 0):
        rows = np.nonzero(groups.unit_of_group >= 0)[0]
        units = groups.units.take(groups.unit_of_group[rows])
        out[rows] -= units.maintenance(ratio[rows]) - units.maintenance(np.ones(len(rows)))[:, None]
    return out


def _first_crossing(g0: np.ndarray, values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group, the first grid cell (from r = 1 outwards) where g changes sign (or hits 0).

    Returns the cell as (a, g(a), b, g(b)) and whether one was found.
    """
    s0 = np.sign(g0)[:, None]
    crossed = (np.sign(values) != s0) | (values == 0)
    found = crossed.any(axis=1)
    k = np.argmax(crossed, axis=1)
    lo_r = np.where(k == 0, 1.0, grid[np.maximum(k - 1, 0)])
    lo_g = np.where(k == 0, g0, values[np.arange(len(k)), np.maximum(k - 1, 0)])
    hi_r = grid[k]
    hi_g = values[np.arange(len(k)), k]
    return lo_r, lo_g, hi_r, hi_g, found & (g0 != 0)


def _refine(groups: Groups, a: np.ndarray, fa: np.ndarray, b: np.ndarray, fb: np.ndarray, active: np.ndarray,
            tol: np.ndarray, max_iter: int = _MAX_ITER) -> np.ndarray:
    """Regula falsi with the Anderson–Björck correction on brackets of shape (G, K), all refined together.

    A bracket is done when |g| <= ``tol`` (USD, per group) or its relative width is below 1e-14.  When most
    groups are done, the rest continue on a compacted subset.  Returns the roots (nan where a bracket is inactive).
    """
    a, fa, b, fb = a.copy(), fa.copy(), b.copy(), fb.copy()
    tol_col = tol[:, None]
    best, f_best = b.copy(), np.abs(fb)
    done = ~active | (f_best <= tol_col)
    for it in range(max_iter):
        if done.all():
            break
        open_rows = ~done.all(axis=1)
        if len(groups) > _COMPACT_MIN and open_rows.sum() < 0.5 * len(groups):
            k = open_rows
            sub = _refine(groups.subset(k), a[k], fa[k], b[k], fb[k], active[k] & ~done[k], tol[k], max_iter - it)
            best[k] = np.where(done[k], best[k], sub)
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            c = b - fb * (b - a) / (fb - fa)
        bad = ~np.isfinite(c) | (c <= np.minimum(a, b)) | (c >= np.maximum(a, b))
        c = np.where(bad, 0.5 * (a + b), c)
        c = np.where(done, b, c)
        fc = np.where(done, fb, surplus(groups, c))
        # fc on b's side: keep a and scale fa down (Anderson–Björck); otherwise the old b becomes a.
        same = np.sign(fc) == np.sign(fb)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = 1.0 - fc / fb
        m = np.where((m > 0) & np.isfinite(m), m, 0.5)
        a, fa = np.where(same, a, b), np.where(same, fa * m, fb)
        b, fb = c, fc
        better = np.abs(fc) < f_best
        best, f_best = np.where(better, c, best), np.where(better, np.abs(fc), f_best)
        tight = np.abs(b - a) <= _REL_WIDTH * np.maximum(np.abs(a), np.abs(b))
        done |= (f_best <= tol_col * np.maximum(best, 1.0)) | tight  # exposure grows with r
    return np.where(active, best, np.nan)


def liquidation_ratios(cb: CompiledBook, state: MarginState, groups: Groups | None = None) -> np.ndarray:
    """Per group, the ratio r* (nearest to 1) at which equity = maintenance; nan where none exists."""
    groups = groups or build_groups(cb, state)
    if len(groups) == 0:
        return np.zeros(0)
    g0 = groups.surplus0[:, 0]
    # g is concave in r (see module doc): with g(1) > 0 there is at most one root on each side, so a coarse
    # grid brackets it; a bucket already under water may hold both roots on one side, so it gets the fine grid.
    a, fa, b, fb, active = _bracket(groups, COARSE_DOWN, COARSE_UP)
    under = g0 <= 0
    if under.any():
        fine = _bracket(groups.subset(under) if not under.all() else groups, GRID_DOWN, GRID_UP)
        for full, part in zip((a, fa, b, fb, active), fine, strict=True):
            full[under] = part
    roots = _refine(groups, a, fa, b, fb, active, _tolerance(state, groups))
    dist = np.where(np.isnan(roots), np.inf, np.abs(roots - 1.0))
    best = roots[np.arange(len(groups)), np.argmin(dist, axis=1)]
    return np.where(g0 == 0, 1.0, best)


def _bracket(groups: Groups, down: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scan the grids below and above the mark: per group and side (G, 2), the first cell where g changes sign
    as (a, g(a), b, g(b)) and whether there is one."""
    grid = np.concatenate([down, up])
    values = surplus(groups, np.broadcast_to(grid, (len(groups), len(grid))).copy())
    g0 = groups.surplus0[:, 0]
    below = _first_crossing(g0, values[:, : len(down)], down)
    above = _first_crossing(g0, values[:, len(down) :], up)
    return tuple(np.stack([d, u], axis=1) for d, u in zip(below, above, strict=True))


def _tolerance(state: MarginState, groups: Groups) -> np.ndarray:
    """|g| (USD) small enough to stop: 1e-13 of the group's gross exposure (so r* is exact to ~1e-13), but
    no less than the rounding noise of g itself (a few ulps of the bucket's equity and margin)."""
    exposure = groups.pos_to_group @ np.abs(state.terms.notional_usd[groups.pos_index])
    exposure += groups.hold_to_group @ (np.abs(groups.value0[:, 0]) * groups.hold_moves)
    noise = 16 * np.finfo(float).eps * (np.abs(state.equity) + state.maintenance)[groups.bucket]
    return np.maximum(1e-13 * exposure + noise, np.finfo(float).tiny)


def liquidation_prices(cb: CompiledBook, state: MarginState) -> np.ndarray:
    """Per position, its liquidation price in the contract's quote unit; nan where none exists."""
    groups = build_groups(cb, state)
    ratios = liquidation_ratios(cb, state, groups)
    return cb.positions.mark * ratios[groups.of_position] if len(groups) else np.zeros(0)


def liquidatable_now(state: MarginState) -> np.ndarray:
    """Per bucket: equity at or below maintenance margin (or negative equity without a requirement)."""
    return (state.equity <= state.maintenance) & ((state.maintenance > 0) | (state.equity < 0))
