"""Benchmark: venue margin (MM, IM, equity) and liquidation prices for 10,000 positions in 100 accounts.

Prints the time of the vectorized evaluation (compile, margin, liquidation prices) and of a per-position Python
loop computing the same numbers (scalar tiers, scalar bisection per position), their ratio, and checks that both
agree.  Writes the figures to benchmarks/results/margin_eval.json.

    python benchmarks/margin_eval.py [--accounts 100] [--positions 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from bench_common import publish, timed

from risk_models.compiled import CompiledBook, compile_book
from risk_models.liquidation import liquidation_prices
from risk_models.loading import LoadedBook, check_book, load_rules
from risk_models.schema import Book
from risk_models.venue_margin import evaluate

RULES = "binance-usdm-2024-10"


def synthetic_book(n_accounts: int, per_account: int, seed: int = 7) -> LoadedBook:
    """A book of USDT-settled Binance positions with random sizes.  Even accounts are in Multi-Assets mode
    (USDT and BTC collateral, cross only); odd accounts hold USDT and isolate 20 % of their positions."""
    rng = np.random.default_rng(seed)
    vr = load_rules(RULES)
    symbols = sorted(s for s, c in vr.rules.contracts.items() if c.settle == "USDT" and "_" not in s)
    unders = sorted({vr.rules.contracts[s].underlying for s in symbols})
    prices = {u: float(np.exp(rng.uniform(-3, 10))) for u in unders}
    prices.update({"USDT": 1.0, "BTC": 60_000.0})
    accounts = {}
    for a in range(n_accounts):
        multi_assets = a % 2 == 0
        chosen = rng.choice(len(symbols), size=min(per_account, len(symbols)), replace=False)
        positions = []
        for i in chosen:
            sym = symbols[i]
            c = vr.rules.contracts[sym]
            mark = prices[c.underlying]
            notional = float(np.exp(rng.uniform(np.log(1e3), np.log(min(2e5, c.position_limit / 2)))))
            qty = float(np.sign(rng.uniform(-1, 1)) * notional / mark)
            iso = not multi_assets and rng.uniform() < 0.2
            pos = {"symbol": sym, "qty": qty, "entry_price": mark * float(np.exp(rng.normal(0, 0.05)))}
            if iso:
                pos.update(margin_mode="isolated", isolated_margin=notional * 0.2)
            positions.append(pos)
        collateral = {"USDT": float(rng.uniform(2e5, 2e6))}
        if multi_assets:
            collateral["BTC"] = float(rng.uniform(0.1, 10))
        accounts[f"acct{a:03d}"] = {"collateral": collateral, "positions": positions}
    book = Book.model_validate({"version": 1, "prices": prices,
                                "venues": {"binance": {"rules": RULES, "accounts": accounts}}})
    rules = {"binance": vr}
    errors = check_book("<synthetic>", book, rules)
    if errors:
        raise SystemExit(f"synthetic book invalid: {errors[0]}")
    return LoadedBook("<synthetic>", book, rules)


def vectorized(cb: CompiledBook) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    st = evaluate(cb)
    return st.equity, st.maintenance, st.terms.im_usd, liquidation_prices(cb, st)


# --- the per-position loop baseline: plain Python floats, one position at a time -------------------------


def _mm(cb: CompiledBook, p: int, mark: float, settle_price: float) -> tuple[float, float, float]:
    pa = cb.positions
    size = abs(pa.qty[p]) * pa.contract_size[p]
    notional = size / mark if pa.inverse[p] else size * mark
    mm = max(float(m) * notional - float(c) for m, c in zip(pa.mmrs[p], pa.cums[p], strict=False))
    mm += float(pa.fee_rate[p]) * notional
    tier = 0
    caps = pa.caps[p]
    while tier < len(caps) - 1 and notional > caps[tier]:
        tier += 1
    lev = pa.leverage[p] if not math.isnan(pa.leverage[p]) else pa.max_leverage[p][tier]
    pnl = pa.qty[p] * pa.contract_size[p] * ((1 / pa.entry[p] - 1 / mark) if pa.inverse[p] else (mark - pa.entry[p]))
    usd = settle_price * pa.ask_settle[p]
    return mm * usd, notional / lev * usd, pnl


def _bucket_surplus(cb: CompiledBook, b: int, und: int, r: float) -> tuple[float, float, float]:
    """Equity, MM, IM of bucket b with asset ``und`` scaled by r (plain loops)."""
    pa, ha = cb.positions, cb.holdings
    ae: dict[int, float] = {}
    for h in np.nonzero(ha.bucket == b)[0]:
        ae[int(h)] = float(ha.balance[h])
    mm_total = im_total = 0.0
    for p in np.nonzero(pa.bucket == b)[0]:
        moves = pa.underlying[p] == und
        mark = pa.mark[p] * (r if moves else 1.0)
        sp = cb.prices[pa.settle[p]] * (r if pa.settle[p] == und else 1.0)
        mm, im, pnl = _mm(cb, p, mark, sp)
        mm_total += mm
        im_total += im
        ae[int(pa.hold[p])] += pnl
    equity = 0.0
    for h, x in ae.items():
        price = cb.prices[ha.asset[h]] * (r if ha.asset[h] == und else 1.0)
        if x <= 0:
            equity += x * price * ha.ask[h] * ha.liability_weight[h]
            continue
        amount = x * ha.bid[h] * (1.0 if ha.asset_unit[h] else price)
        tiers = zip(ha.lows[h], ha.widths[h], ha.ratios[h], strict=True)
        v = sum(float(rt) * min(max(amount - lo, 0.0), w) for lo, w, rt in tiers)
        equity += v * (price if ha.asset_unit[h] else 1.0)
    return equity, mm_total, im_total


def looped(cb: CompiledBook) -> np.ndarray:
    """Liquidation price of every position, found by bisection on its bucket evaluated with Python loops."""
    pa = cb.positions
    out = np.full(len(pa), np.nan)
    grid_down = [1 - d for d in (1e-3, 0.01, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.999999)]
    grid_up = [1 + d for d in (1e-3, 0.01, 0.03, 0.1, 0.2, 0.5, 1, 3, 10, 1e3, 1e6)]
    for p in range(len(pa)):
        b, und = int(pa.bucket[p]), int(pa.underlying[p])

        def g(r: float, b: int = b, und: int = und) -> float:
            equity, mm, _ = _bucket_surplus(cb, b, und, r)
            return equity - mm

        g0 = g(1.0)
        best = math.nan
        for grid in (grid_down, grid_up):
            lo, glo = 1.0, g0
            for r in grid:
                gr = g(r)
                if (gr > 0) != (glo > 0):
                    a, c = lo, r
                    for _ in range(60):
                        m = 0.5 * (a + c)
                        if (g(m) > 0) == (glo > 0):
                            a = m
                        else:
                            c = m
                    root = 0.5 * (a + c)
                    if math.isnan(best) or abs(root - 1) < abs(best - 1):
                        best = root
                    break
                lo, glo = r, gr
        out[p] = pa.mark[p] * best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--positions", type=int, default=100, help="positions per account")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop-sample", type=int, default=300,
                    help="positions timed in the Python loop (its per-position time is scaled up)")
    args = ap.parse_args()

    loaded = synthetic_book(args.accounts, args.positions)
    t_compile, cb = timed(lambda: compile_book(loaded), args.repeat)
    t_margin, _ = timed(lambda: evaluate(cb), args.repeat)
    t_all, (_eq, _mm, _im, liq) = timed(lambda: vectorized(cb), args.repeat)
    n = len(cb.positions)

    sample = min(args.loop_sample, n)
    sub = _subset(cb, sample)
    t_loop, liq_loop = timed(lambda: looped(sub), 1)
    t_loop_full = t_loop * n / sample
    liq_sub = liquidation_prices(sub, evaluate(sub))
    both = ~np.isnan(liq_sub) & ~np.isnan(liq_loop)
    agree = bool(np.array_equal(np.isnan(liq_sub), np.isnan(liq_loop))) and bool(
        np.allclose(liq_sub[both], liq_loop[both], rtol=1e-9))

    rows = [
        ("positions", f"{n:,}"), ("accounts", f"{args.accounts:,}"), ("buckets", f"{cb.n_buckets:,}"),
        ("compile book → arrays", f"{t_compile * 1e3:.1f} ms"),
        ("MM + IM + equity (vectorized)", f"{t_margin * 1e3:.1f} ms"),
        ("MM + equity + liquidation prices (vectorized)", f"{t_all * 1e3:.1f} ms"),
        (f"per-position Python loop ({sample} timed, scaled to {n:,})", f"{t_loop_full:.1f} s"),
        ("ratio loop / vectorized", f"{t_loop_full / t_all:,.0f}×"),
        ("loop and vectorized liquidation prices agree (rtol 1e-9)", str(agree)),
        ("positions without liquidation price", f"{int(np.isnan(liq).sum()):,}"),
    ]
    publish("margin_eval", rows, {
        "positions": n, "accounts": args.accounts, "compile_s": t_compile, "margin_s": t_margin,
        "margin_and_liquidation_s": t_all, "loop_s_scaled": t_loop_full, "ratio": t_loop_full / t_all,
        "agree": agree})
    if not agree:
        raise SystemExit("vectorized and loop liquidation prices disagree")


def _subset(cb: CompiledBook, n_positions: int) -> CompiledBook:
    """The first accounts of ``cb`` holding about ``n_positions`` positions (whole buckets kept)."""
    from dataclasses import replace

    pa, ha = cb.positions, cb.holdings
    last_bucket = int(pa.bucket[min(n_positions, len(pa)) - 1])
    keep_b = np.arange(cb.n_buckets) <= last_bucket
    # keep whole accounts: extend to the isolated buckets of the last kept account
    acct = (cb.buckets[last_bucket].venue, cb.buckets[last_bucket].account)
    for b in range(last_bucket + 1, cb.n_buckets):
        if (cb.buckets[b].venue, cb.buckets[b].account) == acct:
            keep_b[b] = True
    pk = keep_b[pa.bucket]
    hk = keep_b[ha.bucket]
    hold_map = np.cumsum(hk) - 1
    pos = pa.take(np.nonzero(pk)[0])
    pos = replace(pos, hold=hold_map[pos.hold])
    idx = np.nonzero(pk)[0]
    return replace(cb, buckets=[b for b, k in zip(cb.buckets, keep_b, strict=False) if k],
                   bucket_rules=[r for r, k in zip(cb.bucket_rules, keep_b, strict=False) if k], positions=pos,
                   holdings=ha.take(np.nonzero(hk)[0]),
                   position_keys=[cb.position_keys[i] for i in idx],
                   position_paths=[cb.position_paths[i] for i in idx],
                   position_settle_names=[cb.position_settle_names[i] for i in idx],
                   position_modes=[cb.position_modes[i] for i in idx], isolated_margin=cb.isolated_margin[idx],
                   bucket_extra_mm=cb.bucket_extra_mm[keep_b], bucket_extra_im=cb.bucket_extra_im[keep_b],
                   standalone_mm_settle=cb.standalone_mm_settle[idx], standalone_im_settle=cb.standalone_im_settle[idx])


if __name__ == "__main__":
    main()
