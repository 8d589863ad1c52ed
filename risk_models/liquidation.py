"""Liquidation prices (spec §4): the mark at which a bucket's equity equals its maintenance margin.

Moving a position's mark by a ratio r moves its underlying: the underlying's USD price, the marks of the bucket's
other positions on that underlying and the value of collateral (and of requirements) held in that asset all scale
by r; everything else stays.  Every position of one bucket on one underlying therefore shares one root r*, found
once per (bucket, underlying) *group*: g(r) = equity(r) − maintenance(r), brackets and haircut tiers re-evaluated
at r.  The root nearest r = 1 on either side is bracketed on a fixed grid of ratios and refined by a safeguarded
regula falsi (Illinois) to machine precision; no sign change on the grid (r in [1e-6, 1e6]) means no liquidation
price.  Roots closer together than the grid spacing could be missed; g is piecewise linear for linear contracts
and so rarely turns back within one cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiled import CompiledBook, HoldingArrays, PositionArrays
from .venue_margin import MarginState, holding_value, position_terms, segment_sum

_DOWN = np.array([1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                  0.8, 0.9, 0.95, 0.99, 0.999, 1 - 1e-6])
_UP = np.array([1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5,
                2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1e3, 1e4, 1e6])
GRID_DOWN = 1.0 - _DOWN
"""Ratios scanned below the mark, nearest first."""
GRID_UP = 1.0 + _UP
"""Ratios scanned above the mark, nearest first."""
_MAX_ITER = 200


@dataclass(frozen=True)
class Groups:
    """(bucket, underlying) groups and the position and holding rows each group moves."""

    bucket: np.ndarray  # (G,)
    underlying: np.ndarray  # (G,)
    of_position: np.ndarray  # (P,) group whose root gives each position's liquidation price
    pos_group: np.ndarray  # (Rp,) group of each expanded position row
    pos_index: np.ndarray  # (Rp,) position of each row
    pos_moves_mark: np.ndarray  # (Rp,) bool: the row's mark moves with the group's underlying
    pos_moves_settle: np.ndarray  # (Rp,) bool: the row's settle asset is the group's underlying
    pos_hold_row: np.ndarray  # (Rp,) expanded holding row receiving the row's PnL
    hold_group: np.ndarray  # (Rh,)
    hold_index: np.ndarray  # (Rh,)
    hold_moves: np.ndarray  # (Rh,) bool: the holding's asset is the group's underlying
    positions: PositionArrays  # rows pos_index, taken once
    holdings: HoldingArrays  # rows hold_index, taken once

    def __len__(self) -> int:
        return len(self.bucket)


def build_groups(cb: CompiledBook) -> Groups:
    """Index the rows each (bucket, underlying) group moves (vectorized)."""
    pa, ha = cb.positions, cb.holdings
    n_assets = len(cb.assets)
    keys, of_position = np.unique(pa.bucket * n_assets + pa.underlying, return_inverse=True)
    g_bucket, g_und = keys // n_assets, keys % n_assets

    def lookup(bucket: np.ndarray, asset: np.ndarray) -> np.ndarray:
        k = bucket * n_assets + asset
        i = np.clip(np.searchsorted(keys, k), 0, max(len(keys) - 1, 0))
        return np.where((len(keys) > 0) & (keys[i] == k), i, -1) if len(keys) else np.full(len(k), -1)

    p_all = np.arange(len(pa))
    by_settle = lookup(pa.bucket, pa.settle)
    extra = (by_settle >= 0) & (pa.settle != pa.underlying)
    pos_group = np.concatenate([of_position, by_settle[extra]]).astype(int)
    pos_index = np.concatenate([p_all, p_all[extra]])
    moves_mark = pa.underlying[pos_index] == g_und[pos_group]
    moves_settle = pa.settle[pos_index] == g_und[pos_group]

    h_group = lookup(ha.bucket, ha.asset)
    own = h_group >= 0
    pairs = np.concatenate([
        np.stack([h_group[own], np.nonzero(own)[0]], axis=1),
        np.stack([pos_group, pa.hold[pos_index]], axis=1),
    ]).astype(int)
    pair_keys = np.unique(pairs[:, 0] * max(len(ha), 1) + pairs[:, 1])
    hold_group, hold_index = pair_keys // max(len(ha), 1), pair_keys % max(len(ha), 1)
    pos_hold_row = np.searchsorted(pair_keys, pos_group * max(len(ha), 1) + pa.hold[pos_index])
    return Groups(
        bucket=g_bucket, underlying=g_und, of_position=of_position, pos_group=pos_group, pos_index=pos_index,
        pos_moves_mark=moves_mark, pos_moves_settle=moves_settle, pos_hold_row=pos_hold_row,
        hold_group=hold_group, hold_index=hold_index, hold_moves=ha.asset[hold_index] == g_und[hold_group],
        positions=pa.take(pos_index), holdings=ha.take(hold_index),
    )


def surplus(cb: CompiledBook, state: MarginState, groups: Groups, ratio: np.ndarray) -> np.ndarray:
    """g_j(r) = equity − maintenance (USD) of group j's bucket with its underlying scaled by ``ratio`` (G, K)."""
    pa = cb.positions
    gp, pi = groups.pos_group, groups.pos_index
    r_pos = ratio[gp]
    mark = pa.mark[pi][:, None] * np.where(groups.pos_moves_mark[:, None], r_pos, 1.0)
    settle_price = cb.prices[pa.settle[pi]][:, None] * np.where(groups.pos_moves_settle[:, None], r_pos, 1.0)
    terms = position_terms(groups.positions, mark, settle_price)
    d_pnl = terms.pnl_settle - state.terms.pnl_settle[pi][:, None]
    d_mm = terms.mm_usd - state.terms.mm_usd[pi][:, None]

    hg, hi = groups.hold_group, groups.hold_index
    n_rows = len(hg)
    ae = state.holding_equity[hi][:, None] + segment_sum(d_pnl, groups.pos_hold_row, n_rows)
    price = cb.prices[cb.holdings.asset[hi]][:, None] * np.where(groups.hold_moves[:, None], ratio[hg], 1.0)
    d_value = holding_value(groups.holdings, ae, price) - state.holding_value[hi][:, None]

    base = (state.equity - state.maintenance)[groups.bucket][:, None]
    return base + segment_sum(d_value, hg, len(groups)) - segment_sum(d_mm, gp, len(groups))


def _first_crossing(g0: np.ndarray, values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group, the first grid cell (from r = 1 outwards) where g changes sign (or hits 0)."""
    s0 = np.sign(g0)[:, None]
    crossed = (np.sign(values) != s0) | (values == 0)
    found = crossed.any(axis=1)
    k = np.argmax(crossed, axis=1)
    lo_r = np.where(k == 0, 1.0, grid[np.maximum(k - 1, 0)])
    lo_g = np.where(k == 0, g0, values[np.arange(len(k)), np.maximum(k - 1, 0)])
    hi_r = grid[k]
    hi_g = values[np.arange(len(k)), k]
    return found & (g0 != 0), lo_r, lo_g, hi_r, hi_g


def _refine(cb: CompiledBook, state: MarginState, groups: Groups, a: np.ndarray, fa: np.ndarray,
            b: np.ndarray, fb: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Safeguarded Illinois regula falsi on brackets of shape (G, K), all refined together.

    Returns the roots (nan where a bracket is inactive).  A step that fails to halve the bracket is followed
    by a bisection step, so convergence is never slower than bisection.
    """
    a, fa, b, fb = a.copy(), fa.copy(), b.copy(), fb.copy()
    done = ~active | (fb == 0)
    root = np.where(fb == 0, b, np.nan)
    width = np.abs(b - a)
    for _ in range(_MAX_ITER):
        if done.all():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            c = b - fb * (b - a) / (fb - fa)
        bad = ~np.isfinite(c) | (c <= np.minimum(a, b)) | (c >= np.maximum(a, b))
        c = np.where(bad, 0.5 * (a + b), c)
        c = np.where(done, 1.0, c)
        fc = surplus(cb, state, groups, c)
        hit = (fc == 0) & ~done
        root = np.where(hit, c, root)
        done |= hit
        same = np.sign(fc) == np.sign(fb)
        # fc on b's side: b ← c and halve fa (Illinois); otherwise a ← b, b ← c.
        a_new = np.where(same, a, b)
        fa_new = np.where(same, fa * 0.5, fb)
        a, fa, b, fb = a_new, fa_new, c, fc
        new_width = np.abs(b - a)
        slow = new_width > 0.5 * width
        width = new_width
        tight = new_width <= 4 * np.finfo(float).eps * np.maximum(np.abs(a), np.abs(b))
        pick = np.where(np.abs(fa) < np.abs(fb), a, b)
        root = np.where(tight & ~done, pick, root)
        done |= tight
        if slow.any():
            mid = np.where(slow & ~done, 0.5 * (a + b), np.nan)
            rows = ~np.isnan(mid)
            if rows.any():
                fm = surplus(cb, state, groups, np.where(rows, mid, 1.0))
                same_m = np.sign(fm) == np.sign(fb)
                a = np.where(rows & ~same_m, mid, a)
                fa = np.where(rows & ~same_m, fm, fa)
                b = np.where(rows & same_m, mid, b)
                fb = np.where(rows & same_m, fm, fb)
                hit = rows & (fm == 0)
                root = np.where(hit, mid, root)
                done |= hit
                width = np.abs(b - a)
    return np.where(done & active, np.where(np.isnan(root), b, root), np.nan)


def liquidation_ratios(cb: CompiledBook, state: MarginState, groups: Groups | None = None) -> np.ndarray:
    """Per group, the ratio r* (nearest to 1) at which equity = maintenance; nan where none exists."""
    groups = groups or build_groups(cb)
    if len(groups) == 0:
        return np.zeros(0)
    g0 = (state.equity - state.maintenance)[groups.bucket]
    exact = g0 == 0
    grid = np.concatenate([GRID_DOWN, GRID_UP])
    values = surplus(cb, state, groups, np.broadcast_to(grid, (len(groups), len(grid))).copy())
    n = len(GRID_DOWN)
    down = _first_crossing(g0, values[:, :n], GRID_DOWN)
    up = _first_crossing(g0, values[:, n:], GRID_UP)
    a = np.stack([down[1], up[1]], axis=1)
    fa = np.stack([down[2], up[2]], axis=1)
    b = np.stack([down[3], up[3]], axis=1)
    fb = np.stack([down[4], up[4]], axis=1)
    active = np.stack([down[0], up[0]], axis=1)
    roots = _refine(cb, state, groups, a, fa, b, fb, active)
    dist = np.abs(roots - 1.0)
    dist = np.where(np.isnan(dist), np.inf, dist)
    best = roots[np.arange(len(groups)), np.argmin(dist, axis=1)]
    return np.where(exact, 1.0, best)


def liquidation_prices(cb: CompiledBook, state: MarginState) -> np.ndarray:
    """Per position, its liquidation price in the contract's quote unit; nan where none exists."""
    groups = build_groups(cb)
    ratios = liquidation_ratios(cb, state, groups)
    return cb.positions.mark * ratios[groups.of_position] if len(groups) else np.zeros(0)


def liquidatable_now(state: MarginState) -> np.ndarray:
    """Per bucket: equity at or below maintenance margin (or negative equity without a requirement)."""
    return (state.equity <= state.maintenance) & ((state.maintenance > 0) | (state.equity < 0))
