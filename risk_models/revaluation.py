"""A compiled book revalued in every scenario of a ScenarioSet: bucket equity and maintenance margin (USD).

Positions are folded into price *factors* first: a linear position's mark moves by x = (1 + r_underlying) /
(1 + r_settle), an inverse one's by x = 1 + r_underlying.  Unrealized PnL is affine in x (linear) or in 1/x
(inverse), so each holding's asset equity in every scenario is one sparse matrix product; the maintenance margin
of all positions of a bucket on one factor is a convex piecewise-linear function of x, tabulated once at its
breakpoints.  The cost is O((holdings + groups) × scenarios), not O(positions × scenarios × tiers).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .compiled import CompiledBook
from .errors import ScratchSpaceError
from .piecewise import PiecewiseLinear
from .scenarios import ScenarioSet
from .tiers import tiered_margin
from .venue_margin import holding_value, maintenance_settle, settle_notional, unrealized_pnl

DEFAULT_PEGGED = ("USDT", "USDC")


@dataclass(frozen=True)
class Factors:
    """The distinct price factors of a book's positions and each position's factor."""

    of_position: np.ndarray  # (P,) factor index
    underlying: np.ndarray  # (F,) asset index
    settle: np.ndarray  # (F,) asset index, -1 for inverse factors (x = 1 + r_underlying)

    def values(self, growth: np.ndarray) -> np.ndarray:
        """(F, S) factor values from asset growth factors ``growth`` (A, S) = 1 + returns."""
        x = growth[self.underlying].copy()
        lin = self.settle >= 0
        x[lin] /= growth[self.settle[lin]]
        return x


def book_factors(cb: CompiledBook) -> Factors:
    pa = cb.positions
    settle = np.where(pa.inverse, -1, pa.settle)
    keys, of_position = np.unique(np.stack([pa.underlying, settle], axis=1), axis=0, return_inverse=True)
    return Factors(of_position.ravel(), keys[:, 0], keys[:, 1])


@dataclass(frozen=True)
class Revaluation:
    """Per-bucket equity and maintenance margin (USD) in each scenario, shapes (B, S); holdings' (H, S)."""

    equity: np.ndarray
    maintenance: np.ndarray
    holding_equity: np.ndarray  # asset units
    holding_price: np.ndarray  # USD
    holding_value: np.ndarray  # USD
    factor_values: np.ndarray  # (F, S)
    factors: Factors


def growth_matrix(cb: CompiledBook, scenarios: ScenarioSet, pegged: tuple[str, ...] = DEFAULT_PEGGED) -> np.ndarray:
    """(A, S) price growth 1 + r of every book asset; pegged assets absent from the set stay at 1."""
    return scenarios.growth_of(cb.assets, pegged)


def revalue(cb: CompiledBook, growth: np.ndarray) -> Revaluation:
    """Bucket equity and maintenance margin in each scenario column of ``growth`` (A, S)."""
    pa, ha = cb.positions, cb.holdings
    factors = book_factors(cb)
    x = factors.values(growth)
    n_f, n_h = len(factors.underlying), len(ha)
    size = pa.qty * pa.contract_size
    lin = ~pa.inverse
    a = np.where(lin, size * pa.mark, 0.0)
    b = np.where(lin, -size * pa.entry, size / pa.entry)
    c = np.where(lin, 0.0, -size / pa.mark)
    shape = (n_h, n_f)
    coef_x = sparse.csr_array((a, (pa.hold, factors.of_position)), shape=shape)
    coef_inv = sparse.csr_array((c, (pa.hold, factors.of_position)), shape=shape)
    base = ha.balance + np.bincount(pa.hold, weights=b, minlength=n_h)
    equity_h = base[:, None] + coef_x @ x + coef_inv @ (1.0 / x)
    price_h = cb.prices[ha.asset][:, None] * growth[ha.asset]
    value_h = holding_value(ha, equity_h, price_h)
    to_bucket = sparse.csr_array((np.ones(n_h), (ha.bucket, np.arange(n_h))), shape=(cb.n_buckets, n_h))
    equity_b = to_bucket @ value_h
    return Revaluation(equity_b, _maintenance(cb, factors, x, growth), equity_h, price_h, value_h, x, factors)


def _maintenance(cb: CompiledBook, factors: Factors, x: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """(B, S) maintenance margin in USD.

    A position whose active tier is the same at the smallest and the largest scenario value of its factor is
    affine over the whole scenario set (the common case for daily moves): its margin is a linear function of the
    asset growth rows and all such positions together cost one (B × A) @ (A × S) product.  The others are
    grouped by (bucket, factor) and evaluated from their tabulated piecewise-linear totals; size-dependent
    (Deribit) rates are evaluated directly.
    """
    pa = cb.positions
    n_b = cb.n_buckets
    # portfolio-margined venues: each risk unit's requirement at its underlying's move (x = 1 + r_underlying)
    out = cb.units.bucket_maintenance(growth, n_b)
    sized = ~np.isnan(pa.size_rate)
    plain = np.nonzero(~sized)[0]
    if plain.size:
        slopes, intercepts = _affine_pieces(pa, plain)
        f = factors.of_position[plain]
        lo, hi = x.min(axis=1)[f], x.max(axis=1)[f]
        k_lo = np.argmax(slopes * lo[:, None] + intercepts, axis=1)
        k_hi = np.argmax(slopes * hi[:, None] + intercepts, axis=1)
        affine = k_lo == k_hi
        rows = np.arange(len(plain))
        a, b = intercepts[rows, k_lo], slopes[rows, k_lo]
        inverse = pa.inverse[plain]
        bucket, und, settle = pa.bucket[plain], pa.underlying[plain], pa.settle[plain]
        # linear: P_S·g_S·ask·(a + b·g_u/g_S) = P_S·ask·(a·g_S + b·g_u); inverse: P_u·ask·(a + b·g_u)
        scale = np.where(inverse, cb.prices[und], cb.prices[settle]) * pa.ask_settle[plain]
        coef = np.zeros((n_b, len(cb.assets)))
        const = np.zeros(n_b)
        lin_a = affine & ~inverse
        inv_a = affine & inverse
        np.add.at(coef, (bucket[lin_a], settle[lin_a]), (scale * a)[lin_a])
        np.add.at(const, bucket[inv_a], (scale * a)[inv_a])
        np.add.at(coef, (bucket[affine], und[affine]), (scale * b)[affine])
        out += const[:, None] + coef @ growth
        kinked = np.nonzero(~affine)[0]
        if kinked.size:
            keys, group = np.unique(np.stack([bucket[kinked], f[kinked]], axis=1), axis=0, return_inverse=True)
            group = group.ravel()
            for g, (bkt, fac) in enumerate(keys):
                members = kinked[group == g]
                fn = PiecewiseLinear.from_max_affine(slopes[members], intercepts[members])
                p0 = plain[members[0]]
                factor_scale = scale[members[0]] * (1.0 if pa.inverse[p0] else growth[pa.settle[p0]])
                out[bkt] += factor_scale * fn(x[fac])
    for p in np.nonzero(sized)[0]:
        row = pa.take(np.array([p]))
        mark = pa.mark[p] * x[factors.of_position[p]][None, :]
        settle_price = cb.prices[pa.settle[p]] * growth[pa.settle[p]][None, :]
        mm = maintenance_settle(row, settle_notional(row, mark))
        out[pa.bucket[p]] += (mm * settle_price * pa.ask_settle[p])[0]
    return out


def _affine_pieces(pa, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position, the affine pieces in its factor x whose maximum is its maintenance margin.

    Linear: MM_settle(x) = max_k((mmr_k + fee) n0 x − cum_k), n0 = notional at x = 1 (mark basis);
    entry basis: fee n0 x + MM at entry.  Inverse: x × MM_coin(x) = max_k(mmr_k c0 − cum_k x) + fee c0,
    c0 = coin notional at x = 1; entry basis: MM_coin(entry) x + fee c0.
    """
    sub = pa.take(rows)
    n0 = settle_notional(sub, sub.mark)
    fee = sub.fee_rate
    mmr, cum = sub.mmrs, sub.cums
    inv = sub.inverse[:, None]
    entry = sub.entry_basis[:, None]
    mm_entry = tiered_margin(settle_notional(sub, sub.entry), mmr, cum, sub.caps)[:, None]
    lin_slope = np.where(entry, (fee * n0)[:, None], (mmr + fee[:, None]) * n0[:, None])
    lin_icpt = np.where(entry, mm_entry, -cum)
    inv_slope = np.where(entry, mm_entry, -cum)
    inv_icpt = np.where(entry, (fee * n0)[:, None], (mmr + fee[:, None]) * n0[:, None])
    slopes = np.where(inv, inv_slope, lin_slope)
    intercepts = np.where(inv, inv_icpt, lin_icpt)
    return np.broadcast_to(slopes, mmr.shape).copy(), np.broadcast_to(intercepts, mmr.shape).copy()


@dataclass(frozen=True)
class PositionScenarios:
    """Each position alone in every scenario, USD: loss = PnL now − PnL in s (at the shocked settle price),
    and its own maintenance margin at the shocked prices (0 for risk-matrix positions, margined per bucket)."""

    loss: np.ndarray  # (P, S)
    maintenance: np.ndarray  # (P, S)


SCRATCH_BYTES = 2 * 2**30
"""A (positions × scenarios) float64 matrix larger than this lives in a memory-mapped scratch file instead of the
process's memory: it is written and read block by block, and the kernel pages it in and out as needed."""


def scenario_matrix(rows: int, columns: int) -> np.ndarray:
    """An uninitialized (rows, columns) float64 matrix: in memory, or above :data:`SCRATCH_BYTES` mapped onto an
    anonymous temporary file, its blocks reserved up front (deleted when the last reference goes; ``TMPDIR``
    chooses its disk, which should be a real disk: on tmpfs the file takes memory again).  Raises
    ScratchSpaceError when the disk cannot hold it."""
    size = rows * columns * 8
    if size <= SCRATCH_BYTES or size == 0:
        return np.empty((rows, columns))
    handle = tempfile.TemporaryFile(prefix="pmopt-scenarios-")
    try:  # reserve the blocks now: a full disk is a clear error here, not a crash (SIGBUS) in the middle of a write
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        handle.close()
        raise ScratchSpaceError(
            f"a {rows:,} × {columns:,} scenario matrix needs {size / 2**30:.1f} GiB of scratch space in "
            f"{tempfile.gettempdir()}: {exc.strerror} (set TMPDIR to a disk with that much free, or use fewer "
            "scenarios or positions)") from None
    return np.memmap(handle, dtype=np.float64, mode="w+", shape=(rows, columns))


POSITION_BLOCK_ELEMENTS = 1 << 18
"""Positions are revalued in blocks of about this many (position, scenario) entries: every temporary stays in
cache (2 MiB), tier loops stop at the block's own largest bracket, and only the two results are full-sized."""


def position_scenarios(cb: CompiledBook, growth: np.ndarray) -> PositionScenarios:
    """Every position alone in every scenario (``growth`` (A, S) = 1 + returns), computed in blocks of positions
    (:data:`POSITION_BLOCK_ELEMENTS`) written into the two (P, S) results (:func:`scenario_matrix`)."""
    pa = cb.positions
    factors = book_factors(cb)
    x_all = factors.values(growth)
    n_p, n_s = len(pa), growth.shape[1]
    loss, mm = scenario_matrix(n_p, n_s), scenario_matrix(n_p, n_s)
    step = max(1, POSITION_BLOCK_ELEMENTS // max(n_s, 1))
    for start in range(0, n_p, step):
        rows = np.arange(start, min(start + step, n_p))
        sub = pa.take(rows)
        mark = sub.mark[:, None] * x_all[factors.of_position[rows]]
        settle_now = cb.prices[sub.settle]
        settle_price = settle_now[:, None] * growth[sub.settle]
        pnl_now = unrealized_pnl(sub, sub.mark) * settle_now
        block = loss[start:start + len(rows)]
        np.multiply(unrealized_pnl(sub, mark), settle_price, out=block)
        np.subtract(pnl_now[:, None], block, out=block)
        block = mm[start:start + len(rows)]
        np.multiply(maintenance_settle(sub, settle_notional(sub, mark)), settle_price, out=block)
        block *= sub.ask_settle[:, None]
    return PositionScenarios(loss, mm)
