"""Benchmark: `pmopt batch` throughput, local process pool vs a Dask LocalCluster of the same size.

K copies of one small synthetic job (8 USDT-margined positions in 2 Binance accounts, any of which may be isolated;
99 % one-day ES over a one-year historical window, buffer 1.5) run through optimizer.batch.run_batch, first on a
local process pool, then on a LocalCluster (one thread per worker process).  Wall times include starting the pool
or the cluster, as a user of `pmopt batch` sees them.  Prints books per minute for each and their ratio, checks
that both give the same statuses and objective values (1e-9 relative), and writes benchmarks/results/batch.json.

    python benchmarks/batch.py [--jobs 24] [--workers 2] [--out benchmarks/results/batch.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from optimizer.batch import Executor, load_manifest, run_batch
from risk_models.yaml_io import write_yaml

RESULTS = Path(__file__).parent / "results"
PRICES = {"BTC": 97600.062, "ETH": 2719.0981, "SOL": 172.71281, "BNB": 649.9624, "XRP": 2.6988494,
          "DOGE": 0.25256956, "LINK": 18.022835, "LTC": 127.71769, "USDT": 0.99985456}


def write_job(folder: Path, copies: int) -> Path:
    """A book, a policy and a manifest of ``copies`` jobs on them; the manifest's path."""
    positions = {
        "main": [("BTCUSDT", 3.0, 94250.0), ("ETHUSDT", -60.0, 2790.5), ("SOLUSDT", 900.0, 181.2),
                 ("XRPUSDT", -40_000.0, 2.75)],
        "alts": [("BNBUSDT", 150.0, 640.0), ("DOGEUSDT", 400_000.0, 0.2711), ("LINKUSDT", -5_000.0, 18.5),
                 ("LTCUSDT", 600.0, 125.4)],
    }
    accounts = {name: {"collateral": {"USDT": 250_000.0},
                       "positions": [{"symbol": s, "qty": q, "entry_price": e, "margin_mode": "cross"}
                                     for s, q, e in rows]} for name, rows in positions.items()}
    write_yaml({"version": 1, "as_of": "2025-02-20T00:00:00Z", "prices": PRICES,
                "venues": {"binance": {"rules": "binance-usdm-2024-10", "accounts": accounts}},
                "wallet": {"USDT": 1_000_000.0, "BTC": 5.0}}, folder / "book.yaml")
    write_yaml({"version": 1, "objective": "carry_cost", "carry_horizon_days": 7,
                "risk_model": {"kind": "historical", "window_days": 365, "confidence": 0.99, "measure": "es"},
                "cross": {"buffer": 1.5}, "isolated": {"liquidation_distance": 0.25},
                "yields": {"USDT": 0.05}, "transfer_cost_bps": 1, "mode_switch_cost_bps": 5}, folder / "policy.yaml")
    jobs = [{"name": f"copy-{i:03d}", "book": "book.yaml", "policy": "policy.yaml"} for i in range(copies)]
    write_yaml({"version": 1, "jobs": jobs}, folder / "manifest.yaml")
    return folder / "manifest.yaml"


def measure(manifest: Path, executor: Executor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    jobs = load_manifest(manifest)
    t0 = time.perf_counter()
    results = run_batch(jobs, executor)
    wall = time.perf_counter() - t0
    figures = {"executor": executor.kind, "workers": executor.workers, "jobs": len(jobs), "wall_s": wall,
               "books_per_minute": 60.0 * len(jobs) / wall,
               "median_job_s": statistics.median(r["seconds"] for r in results),
               "statuses": sorted({r["status"] for r in results})}
    return figures, results


def agree(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x["status"] != y["status"]:
            return False
        if x["objective_value"] is not None and abs(x["objective_value"] - y["objective_value"]) > (
                1e-9 * abs(x["objective_value"])):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24, help="copies of the job (K)")
    ap.add_argument("--workers", type=int, default=2, help="process-pool size and LocalCluster worker count")
    ap.add_argument("--out", type=Path, default=RESULTS / "batch.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_job(Path(tmp), args.jobs)
        local, local_rows = measure(manifest, Executor("process_pool", args.workers))
        dask, dask_rows = measure(manifest, Executor("dask_local", args.workers))
    figures = {"jobs": args.jobs, "workers": args.workers, "local": local, "dask_local": dask,
               "ratio_local_over_dask": local["books_per_minute"] / dask["books_per_minute"],
               "agree": agree(local_rows, dask_rows), "statuses": local["statuses"]}
    for label, f in (("process pool", local), ("Dask LocalCluster", dask)):
        print(f"{label:<18} {f['jobs']} books, {f['workers']} workers: {f['wall_s']:7.2f} s wall, "
              f"{f['books_per_minute']:7.1f} books/min (median job {f['median_job_s']:.2f} s)")
    print(f"local / Dask books per minute: {figures['ratio_local_over_dask']:.2f}×; results agree: "
          f"{figures['agree']}; statuses: {', '.join(figures['statuses'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if not figures["agree"]:
        raise SystemExit("the process pool and the Dask cluster disagree")


if __name__ == "__main__":
    main()
