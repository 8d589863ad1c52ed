"""Benchmark: how the optimizer scales with positions and with scenarios, beside the direct dense formulation.

Every point runs in a fresh process (so that its peak resident memory is its own) on the synthetic desks of
benchmarks/optimize.py: end-to-end seconds (problem data, solves and constraint generation) and peak memory of
pmopt's path, and of the direct dense formulation (one Rockafellar–Uryasev row per scenario over all N positions)
while its S × N matrix fits in --direct-gib and its time, extrapolated from the smaller points, fits in
--direct-budget seconds (with no smaller point to extrapolate from, while S × N <= --direct-max-cells) — beyond,
the reason is recorded.  Growth exponents are fitted by least squares on
log(seconds) against log(size).  Prints a table and writes benchmarks/results/scale.json.

    python benchmarks/scale.py                                     # positions 50 → 5,000; scenarios 500 → 50,000
    python benchmarks/scale.py --positions 50,500 --scenarios 500,5000 --relax
    python benchmarks/scale.py --relax --positions 5000 --base-scenarios 20000 --scenarios ''   # one big point
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _point(n: int, s: int, method: str, relax: bool, time_limit: float, queue: mp.Queue) -> None:
    """One measurement in this (fresh) process; puts a dict on ``queue``."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from optimize import synthetic

    from optimizer.linear_pools import Cuts
    from optimizer.problem import build_problem
    from optimizer.solve import SolverError, solve
    from optimizer.working_set import solve_generated
    from risk_models.compiled import compile_book
    from risk_models.venue_margin import evaluate

    loaded, sc, policy = synthetic(n, s)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        cb = compile_book(loaded)
        data = build_problem(loaded, cb, evaluate(cb), policy, sc)
        if method == "pmopt":
            sol = solve_generated(loaded, data, sc, time_limit=time_limit, relax=relax)
        else:
            sol = solve(replace(data, aggregate=False), time_limit=time_limit, relax=relax)
        out = {"seconds": time.perf_counter() - t0, "objective": sol.objective, "status": sol.status,
               "compile_s": sol.timing.get("compile", 0.0), "solver_s": sol.timing.get("solver", 0.0),
               "rounds": sol.rounds, "rows": sol.scenario_rows, "positions": len(cb.positions),
               "working_set": "cuts" if isinstance(sol.working_sets, Cuts) else "rows" if sol.working_sets else None,
               "capital": data.scale}
    except SolverError as exc:
        out = {"seconds": time.perf_counter() - t0, "objective": None, "status": f"failed: {exc}"}
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["baseline_gib"] = before / 2**20
    queue.put(out)


def measure(n: int, s: int, method: str, relax: bool, time_limit: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_point, args=(n, s, method, relax, time_limit, queue))
    proc.start()
    try:
        return queue.get(timeout=time_limit * 3 + 600)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def exponent(sizes: list[float], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size)."""
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def sweep(axis: str, points: list[tuple[int, int]], args: argparse.Namespace) -> dict:
    rows, direct_times = [], []
    for n, s in points:
        row = {"positions": n, "scenarios": s, "pmopt": measure(n, s, "pmopt", args.relax, args.time_limit)}
        dense_gib = n * s * 8 / 2**30
        guess = None
        if len(direct_times) >= 2:
            k = exponent([a for a, _ in direct_times], [b for _, b in direct_times]) or 1.0
            last_size, last_t = direct_times[-1]
            guess = last_t * ((n * s) / last_size) ** k
        if dense_gib > args.direct_gib:
            row["direct"] = {"skipped": f"S × N matrix {dense_gib:.1f} GiB > {args.direct_gib} GiB"}
        elif n * s > args.direct_max_cells:
            row["direct"] = {"skipped": f"S × N = {n * s:,} rows × positions > --direct-max-cells "
                                        f"{args.direct_max_cells:,.0f} (hours of HiGHS on one RU row per scenario)"}
        elif guess is not None and guess > args.direct_budget:
            row["direct"] = {"skipped": f"extrapolated {guess:,.0f} s > budget {args.direct_budget:,.0f} s"}
        else:
            row["direct"] = measure(n, s, "direct", args.relax, args.time_limit)
            if row["direct"].get("objective") is not None:
                direct_times.append((n * s, row["direct"]["seconds"]))
        p, d = row["pmopt"], row["direct"]
        if d.get("objective") is not None and p.get("objective") is not None:
            row["ratio"] = d["seconds"] / p["seconds"]
            # within the relative gap, or the 1e-9 × capital tie-break (below the solvers' tolerances)
            row["agree"] = bool(abs(p["objective"] - d["objective"])
                                <= 1e-6 * max(abs(d["objective"]), 1e-9) + 1e-9 * p["capital"])
        rows.append(row)
        _print(row)
    size = [r[axis] for r in rows if r["pmopt"].get("objective") is not None]
    secs = [r["pmopt"]["seconds"] for r in rows if r["pmopt"].get("objective") is not None]
    return {"axis": axis, "rows": rows, "exponent": exponent(size, secs)}


def _print(row: dict) -> None:
    p, d = row["pmopt"], row["direct"]
    direct = (f"direct {d['seconds']:8.2f} s {d['peak_gib']:5.2f} GiB" if "seconds" in d
              else f"direct {d['skipped']}")
    extra = f", ratio {row['ratio']:6.1f}×, agree {row['agree']}" if "ratio" in row else ""
    print(f"{row['positions']:>6} × {row['scenarios']:>6}: pmopt {p['seconds']:8.2f} s {p['peak_gib']:5.2f} GiB "
          f"({p.get('rounds')} rounds, {p.get('rows')} {p.get('working_set') or 'rows'}, {p['status']}); "
          f"{direct}{extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", default="50,200,500,2000,5000", help="positions axis (at --base-scenarios)")
    ap.add_argument("--scenarios", default="500,2000,5000,20000,50000", help="scenarios axis (at --base-positions)")
    ap.add_argument("--base-scenarios", type=int, default=2500)
    ap.add_argument("--base-positions", type=int, default=100)
    ap.add_argument("--relax", action="store_true", help="the continuous relaxation (modes in [0, 1])")
    ap.add_argument("--direct-gib", type=float, default=4.0)
    ap.add_argument("--direct-budget", type=float, default=900.0, help="seconds a direct point may be expected to take")
    ap.add_argument("--direct-max-cells", type=float, default=2.5e7,
                    help="largest S × N the direct formulation is run at when no smaller direct point predicts it")
    ap.add_argument("--time-limit", type=float, default=1800.0)
    ap.add_argument("--output", help="JSON file (default benchmarks/results/scale.json, scale_relax.json)")
    args = ap.parse_args()
    out = {"relax": args.relax}
    positions = [int(v) for v in args.positions.split(",") if v]
    scenarios = [int(v) for v in args.scenarios.split(",") if v]
    print(f"positions axis at {args.base_scenarios} scenarios{' (relaxation)' if args.relax else ''}:")
    out["positions"] = sweep("positions", [(n, args.base_scenarios) for n in positions], args)
    print(f"  growth exponent in positions: {out['positions']['exponent']}")
    print(f"scenarios axis at {args.base_positions} positions{' (relaxation)' if args.relax else ''}:")
    out["scenarios"] = sweep("scenarios", [(args.base_positions, s) for s in scenarios], args)
    print(f"  growth exponent in scenarios: {out['scenarios']['exponent']}")
    RESULTS.mkdir(exist_ok=True)
    target = Path(args.output) if args.output else RESULTS / f"scale{'_relax' if args.relax else ''}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2))
    print(f"wrote {target}")
    bad = [r for axis in ("positions", "scenarios") for r in out[axis]["rows"] if r.get("agree") is False]
    if bad:
        raise SystemExit(f"pmopt's path and the direct formulation disagree at {len(bad)} point(s)")


if __name__ == "__main__":
    main()
