"""Benchmark: expected-shortfall net portfolio margin for 1,000 positions × 10,000 scenarios.

Times the numpy path (factor revaluation of positions and collateral, tabulated tiered margin, ES per bucket)
against a straightforward pandas implementation of the same numbers (a scenarios × positions DataFrame of PnL
and tiered margin, grouped by bucket) in the same run, checks they agree, and reports peak memory (tracemalloc)
of each.  Writes benchmarks/results/risk_eval.json.

    python benchmarks/risk_eval.py [--positions 1000] [--scenarios 10000] [--accounts 10]
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
import pandas as pd
from bench_common import publish, timed

from risk_models.compiled import CompiledBook, compile_book
from risk_models.loading import LoadedBook, check_book, load_rules
from risk_models.measures import expected_shortfall
from risk_models.revaluation import growth_matrix, revalue
from risk_models.scenarios import ScenarioSet
from risk_models.schema import Book
from risk_models.venue_margin import MarginState, evaluate

RULES = "binance-usdm-2024-10"
ALPHA = 0.99


def synthetic(n_positions: int, n_accounts: int, n_scenarios: int, seed: int = 11
              ) -> tuple[LoadedBook, ScenarioSet]:
    """USDT-margined Binance accounts with BTC collateral on half of them, and correlated daily returns."""
    rng = np.random.default_rng(seed)
    vr = load_rules(RULES)
    symbols = sorted(s for s, c in vr.rules.contracts.items() if c.settle == "USDT" and "_" not in s)
    per = n_positions // n_accounts
    unders = sorted({vr.rules.contracts[s].underlying for s in symbols})
    prices = {u: float(np.exp(rng.uniform(-3, 10))) for u in unders} | {"USDT": 1.0, "BTC": 60_000.0}
    accounts = {}
    for a in range(n_accounts):
        positions = []
        for i in rng.choice(len(symbols), size=per, replace=False):
            c = vr.rules.contracts[symbols[i]]
            notional = float(np.exp(rng.uniform(np.log(1e3), np.log(min(3e5, c.position_limit / 2)))))
            positions.append({"symbol": symbols[i], "qty": float(rng.choice([-1, 1]) * notional / prices[c.underlying]),
                              "entry_price": prices[c.underlying] * float(np.exp(rng.normal(0, 0.05)))})
        collateral = {"USDT": float(rng.uniform(1e6, 5e6))} | ({"BTC": float(rng.uniform(1, 20))} if a % 2 else {})
        accounts[f"acct{a:02d}"] = {"collateral": collateral, "positions": positions}
    book = Book.model_validate({"version": 1, "prices": prices,
                                "venues": {"binance": {"rules": RULES, "accounts": accounts}}})
    errors = check_book("<synthetic>", book, {"binance": vr})
    if errors:
        raise SystemExit(str(errors[0]))
    loaded = LoadedBook("<synthetic>", book, {"binance": vr})
    assets = tuple(a for a in sorted(prices) if a != "USDT")
    factor = rng.normal(0, 0.03, (n_scenarios, 1))
    idio = rng.normal(0, 0.03, (n_scenarios, len(assets)))
    returns = np.expm1(0.7 * factor + 0.7 * idio)
    sc = ScenarioSet(assets, returns, tuple(f"s{i}" for i in range(n_scenarios)), "synthetic")
    return loaded, sc


def numpy_path(cb: CompiledBook, st: MarginState, sc: ScenarioSet) -> np.ndarray:
    rv = revalue(cb, growth_matrix(cb, sc))
    term = st.equity[:, None] - rv.equity + rv.maintenance
    return np.array([expected_shortfall(t, None, ALPHA) for t in term])


def pandas_path(cb: CompiledBook, st: MarginState, sc: ScenarioSet) -> np.ndarray:
    """Every position revalued in every scenario as DataFrame columns; tiers by column-wise maximum."""
    pa, ha = cb.positions, cb.holdings
    rets = pd.DataFrame(sc.returns, columns=list(sc.assets))
    names = [f"p{i}" for i in range(len(pa))]
    und = [cb.assets[i] for i in pa.underlying]
    move = pd.DataFrame({n: 1.0 + rets[u] if u in rets else 1.0 for n, u in zip(names, und, strict=True)})
    mark = move.mul(pa.mark, axis=1)
    pnl = mark.sub(pa.entry, axis=1).mul(pa.qty * pa.contract_size, axis=1)
    notional = mark.mul(np.abs(pa.qty) * pa.contract_size, axis=1)
    mm = pd.DataFrame(-np.inf, index=notional.index, columns=names)
    for t in range(pa.mmrs.shape[1]):
        mm = np.maximum(mm, notional.mul(pa.mmrs[:, t], axis=1).sub(pa.cums[:, t], axis=1))
    bucket_of = pd.Series(pa.bucket, index=names)
    pnl_b = pnl.T.groupby(bucket_of).sum().T
    mm_b = mm.T.groupby(bucket_of).sum().T
    out = []
    for b in range(cb.n_buckets):
        rows = np.nonzero(ha.bucket == b)[0]
        equity = pd.Series(0.0, index=rets.index)
        for h in rows:
            asset = cb.assets[ha.asset[h]]
            growth = 1.0 + rets[asset] if asset in rets else 1.0
            amount = ha.balance[h] + (pnl_b[b] if asset == "USDT" and b in pnl_b else 0.0)
            raw = (amount * cb.prices[ha.asset[h]] * growth).clip(lower=0.0)
            value = sum(r * (raw - lo).clip(lower=0.0, upper=w)
                        for lo, w, r in zip(ha.lows[h], ha.widths[h], ha.ratios[h], strict=True))
            equity = equity + value + (amount * cb.prices[ha.asset[h]] * growth).clip(upper=0.0)
        term = (st.equity[b] - equity + (mm_b[b] if b in mm_b else 0.0)).sort_values(ascending=False)
        k = int(np.ceil((1 - ALPHA) * len(term) - 1e-9))
        out.append(term.iloc[:k].mean() if abs(k - (1 - ALPHA) * len(term)) < 1e-9 else np.nan)
    return np.array(out)


def measure(fn, repeat: int) -> tuple[float, float, object]:
    """Median time (s), peak traced memory of one more call (MiB), and the result."""
    seconds, result = timed(fn, repeat)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--scenarios", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    loaded, sc = synthetic(args.positions, args.accounts, args.scenarios)
    cb = compile_book(loaded)
    st = evaluate(cb)
    t_np, mem_np, es_np = measure(lambda: numpy_path(cb, st, sc), args.repeat)
    t_pd, mem_pd, es_pd = measure(lambda: pandas_path(cb, st, sc), 1)
    agree = bool(np.allclose(es_np, es_pd, rtol=1e-9))
    rows = [("positions × scenarios", f"{len(cb.positions):,} × {sc.n_scenarios:,}"), ("buckets", str(cb.n_buckets)),
            ("ES margin, numpy path", f"{t_np * 1e3:.1f} ms"), ("ES margin, pandas baseline", f"{t_pd * 1e3:.1f} ms"),
            ("ratio pandas / numpy", f"{t_pd / t_np:.1f}×"), ("peak memory numpy path", f"{mem_np:.1f} MiB"),
            ("peak memory pandas baseline", f"{mem_pd:.1f} MiB"), ("results agree (rtol 1e-9)", str(agree))]
    publish("risk_eval", rows, {
        "positions": len(cb.positions), "scenarios": sc.n_scenarios, "numpy_s": t_np, "pandas_s": t_pd,
        "ratio": t_pd / t_np, "numpy_peak_mib": mem_np, "pandas_peak_mib": mem_pd, "agree": agree})
    if not agree:
        raise SystemExit("numpy and pandas results disagree")


if __name__ == "__main__":
    main()
