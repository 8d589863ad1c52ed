"""`pmopt batch` (spec §7): the jobs of a manifest, each the `pmopt optimize` flow, run in a local process pool or
on Dask workers.  A failing job (bad input, infeasible policy, solver failure, a crashed worker) is reported with its
message and never stops or hides the others; results come back in manifest order.

:func:`run_job` is the unit of work: a top-level function of plain paths and numbers returning a plain dict, so it
pickles by reference to a process pool and to Dask workers alike.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from risk_models.errors import InputError, InputErrors, PmoptError
from risk_models.schema.manifest import Manifest
from risk_models.yaml_io import read_yaml, validate_model

STATUSES = ("optimal", "infeasible", "error")
ROW_COLUMNS = ("name", "status", "objective_value", "objective_value_before", "carry_saved_per_year",
               "locked_before", "locked_after", "top_up_value", "seconds", "exit_code", "solver_status", "error")
"""Columns of ``--output`` (one row per job, manifest order)."""
JOB_KEYS = ("name", "status", "objective_value", "error", "exit_code", "solver_status", "objective_value_before",
            "carry_saved_per_year", "locked_before", "locked_after", "top_up", "seconds")
"""Keys of each ``--json`` job entry: spec §7's four, then the documented extensions."""
PRELOAD = ("optimizer.batch", "optimizer.run", "optimizer.trades", "risk_models.risk_model", "risk_models.market_data")
"""Imported once by the process pool's fork server, so that its workers start with them loaded."""
CONNECT_TIMEOUT = 30.0
"""Seconds to reach a Dask scheduler, and again to see its first worker."""


class BatchError(PmoptError):
    """The batch itself could not run (no Dask scheduler, no workers, an unwritable output).  Exit code 1."""

    def __init__(self, reason: str, remedy: str = "") -> None:
        super().__init__(f"{reason} ({remedy})" if remedy else reason)


@dataclass(frozen=True)
class BatchJob:
    """One manifest job with its files resolved to absolute paths (workers may run in another directory)."""

    name: str
    book: str
    policy: str
    trades: str | None = None


@dataclass(frozen=True)
class Executor:
    """Where the jobs run: a local process pool of ``workers``, a local Dask cluster of ``workers`` processes, or
    the Dask cluster at ``address``."""

    kind: Literal["process_pool", "dask_local", "dask"]
    workers: int | None = None
    address: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "workers": self.workers}
        if self.address:
            out["address"] = self.address
        return out


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# == the manifest =================================================================================================

def load_manifest(path: Path | str) -> list[BatchJob]:
    """Read and validate a manifest (spec §7); every problem at once as InputErrors (exit code 2): unknown and
    duplicated keys, duplicated job names (compared case-insensitively: they name report files), missing files."""
    path = Path(path)
    file = str(path)
    data = read_yaml(path)
    manifest = validate_model(Manifest, data, file)
    errors: list[InputError] = []
    seen: dict[str, int] = {}
    jobs = []
    base = path.parent.resolve()
    for i, job in enumerate(manifest.jobs):
        first = seen.setdefault(job.name.casefold(), i)
        if first != i:
            errors.append(InputError(file, f"jobs[{i}].name", f"job name {job.name!r} is already used by jobs[{first}]",
                                     "give every job its own name (names are compared ignoring case)"))
        resolved: dict[str, str | None] = {}
        for field in ("book", "policy", "trades"):
            ref = getattr(job, field)
            if ref is None:
                resolved[field] = None
                continue
            target = base / ref
            if not target.is_file():
                errors.append(InputError(file, f"jobs[{i}].{field}", f"file not found: {ref} (looked for {target})",
                                         "paths are relative to the manifest's folder"))
            resolved[field] = str(target)
        jobs.append(BatchJob(job.name, resolved["book"] or "", resolved["policy"] or "", resolved["trades"]))
    if errors:
        raise InputErrors(errors)
    return jobs


# == one job ======================================================================================================

def run_job(name: str, book: str, policy: str, trades: str | None = None, prices: str | None = None,
            time_limit: float = 120.0) -> dict[str, Any]:
    """One `pmopt optimize` run as a plain dict: the §7 entry (``name``, ``status``, ``objective_value``,
    ``error``), its extensions, and ``document``: the spec §6 document (optimal), the infeasible document with
    the top-up (infeasible), or None (error).  Never raises."""
    t0 = time.perf_counter()
    row: dict[str, Any] = dict.fromkeys(JOB_KEYS)
    row.update(name=name, document=None)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # as the CLI: finiteness is checked
            doc = _optimize(book, policy, trades, prices, time_limit)
        row.update(status="optimal", exit_code=0, solver_status=doc["status"], document=doc,
                   objective_value=doc["objective_value"], objective_value_before=doc["objective_value_before"],
                   carry_saved_per_year=doc["carry_saved_per_year"], locked_before=doc["before"]["locked"],
                   locked_after=doc["after"]["locked"])
    except PmoptError as exc:
        from .run import Infeasible

        row.update(status="error", exit_code=exc.exit_code, error=str(exc))
        if isinstance(exc, Infeasible):
            row.update(status="infeasible", solver_status="infeasible", top_up=exc.document["top_up"],
                       document=exc.document)
    except Exception as exc:  # anything else is this job's failure, never the batch's
        row.update(status="error", exit_code=1, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
    row["seconds"] = time.perf_counter() - t0
    try:
        json.dumps(row, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return failed_row(name, f"the result cannot be written as JSON ({exc})", row["seconds"])
    return row


def _optimize(book: str, policy: str, trades: str | None, prices: str | None, time_limit: float) -> dict[str, Any]:
    """The flow of `pmopt optimize BOOK --policy POLICY [--trades CSV] [--prices FILE]`: the spec §6 document."""
    from risk_models.compiled import compile_book
    from risk_models.loading import load_book, load_policy
    from risk_models.risk_model import build_scenarios

    from .run import optimize
    from .trades import apply_trades

    loaded = load_book(book)
    if trades:
        loaded = apply_trades(loaded, trades)
    pol = load_policy(policy)
    cb = compile_book(loaded)
    scenarios = build_scenarios(pol.risk_model, cb.assets, _history(*_file_key(prices)), loaded.book.as_of,
                                pol.stress_scenarios, policy)
    return optimize(loaded, pol, scenarios, time_limit=time_limit).document


def _file_key(path: str | None) -> tuple[str | None, int, int]:
    if path is None:
        return None, 0, 0
    try:
        st = os.stat(path)
    except OSError:
        return path, 0, 0  # load_prices says what is wrong
    return path, st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4)
def _history(path: str | None, mtime_ns: int, size: int) -> Any:
    """Price history, read once per worker process (and again when the file changes)."""
    from risk_models.market_data import default_prices, load_prices

    return load_prices(path) if path else default_prices()


def failed_row(name: str, message: str, seconds: float | None = None) -> dict[str, Any]:
    """The entry of a job that produced no result of its own (its worker died, it could not be sent)."""
    row: dict[str, Any] = dict.fromkeys(JOB_KEYS)
    row.update(name=name, status="error", exit_code=1, error=message, seconds=seconds, document=None)
    return row


# == running many =================================================================================================

JobFunction = Callable[..., dict[str, Any]]


def run_batch(jobs: Sequence[BatchJob], executor: Executor, *, prices: str | None = None, time_limit: float = 120.0,
              on_done: Callable[[dict[str, Any]], None] | None = None, job: JobFunction = run_job
              ) -> list[dict[str, Any]]:
    """Every job's result (see :func:`run_job`) in manifest order; ``on_done`` sees each as it finishes."""
    calls = [(j.name, j.book, j.policy, j.trades, prices, time_limit) for j in jobs]
    done = on_done or (lambda _row: None)
    if executor.kind == "process_pool":
        results = _run_pool(calls, executor.workers or default_workers(), done, job)
    else:
        with dask_client(executor) as client:
            results = _run_dask(calls, client, done, job)
    return [results[i] for i in range(len(calls))]


def _pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    # forkserver: workers fork from a clean server that has imported pmopt once (no threads of ours are forked)
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(list(PRELOAD))
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)


_LIMITS: list[Any] = []


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker process, as Dask's workers have: no oversubscription, the same sums."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return
    _LIMITS.append(threadpool_limits(limits=1))


def _run_pool(calls: list[tuple], workers: int, done: Callable[[dict], None], job: JobFunction
              ) -> dict[int, dict[str, Any]]:
    """At most ``workers`` jobs in flight, so that when a worker process dies the jobs that may have killed it
    are known: those are retried one by one, each alone in a fresh process, and the rest go on in a fresh pool."""
    results: dict[int, dict[str, Any]] = {}
    queue = deque(range(len(calls)))
    while queue:
        suspects: list[int] = []
        pool = _pool(min(workers, len(queue)))
        try:
            running: dict[Future, int] = {}
            while queue or running:
                while queue and len(running) < workers:
                    i = queue.popleft()
                    running[pool.submit(job, *calls[i])] = i
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                    wait(running)  # the pool is broken: every job in flight ends now
                    finished = set(running)
                for fut in finished:
                    i = running.pop(fut)
                    if isinstance(fut.exception(), BrokenProcessPool):
                        suspects.append(i)
                    else:
                        results[i] = _outcome(fut, calls[i][0])
                        done(results[i])
                if suspects:
                    break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        for i in sorted(suspects):
            with _pool(1) as alone:
                fut = alone.submit(job, *calls[i])
                wait([fut])
            if isinstance(fut.exception(), BrokenProcessPool):
                results[i] = failed_row(calls[i][0], "the worker process running this job died (out of memory, or "
                                                     "killed by a signal), also when retried alone")
            else:
                results[i] = _outcome(fut, calls[i][0])
            done(results[i])
    return results


def _outcome(fut: Future, name: str) -> dict[str, Any]:
    exc = fut.exception()
    return fut.result() if exc is None else failed_row(name, f"{type(exc).__name__}: {exc}")


@contextmanager
def dask_client(executor: Executor) -> Iterator[Any]:
    """A Dask client: of a new LocalCluster of ``workers`` single-threaded processes, or of the cluster at
    ``address``.  Closed (and the local cluster shut down) on the way out, whatever happens."""
    from distributed import Client, LocalCluster

    cluster = client = None
    try:
        if executor.kind == "dask_local":
            try:
                cluster = LocalCluster(n_workers=executor.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            except Exception as exc:
                raise BatchError(f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}",
                                 "run without --dask-local to use a local process pool") from None
            client = Client(cluster)
        else:
            try:
                client = Client(executor.address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:
                raise BatchError(f"cannot reach the Dask scheduler at {executor.address}: {exc}",
                                 "start one (dask scheduler; dask worker ADDRESS) or use --dask-local N") from None
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise BatchError(f"the Dask scheduler at {executor.address} has no workers "
                                 f"after {CONNECT_TIMEOUT:g} s ({type(exc).__name__})",
                                 "start workers with: dask worker ADDRESS") from None
        client.run(_warm_up)  # imports on every worker at once, before the first job's clock starts
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _warm_up() -> None:
    """Import what a job needs (the process pool's fork server does this once for all its workers)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def _run_dask(calls: list[tuple], client: Any, done: Callable[[dict], None], job: JobFunction
              ) -> dict[int, dict[str, Any]]:
    from distributed import as_completed as dask_completed

    token = uuid.uuid4().hex[:12]
    results: dict[int, dict[str, Any]] = {}
    futures = {client.submit(job, *call, key=f"pmopt-batch-{token}-{i}", pure=False): i
               for i, call in enumerate(calls)}
    try:
        for fut in dask_completed(list(futures)):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # KilledWorker (the job took its workers down), a cancelled task …
                results[i] = failed_row(calls[i][0], f"{type(exc).__name__}: {exc}")
            done(results[i])
    finally:
        client.cancel(list(futures))
    return results


# == outputs ======================================================================================================

def batch_document(results: Sequence[dict[str, Any]], executor: Executor, seconds: float) -> dict[str, Any]:
    """The spec §7 document: ``version`` and ``jobs`` in manifest order, each entry with the §7 keys first."""
    return {"version": 1, "jobs": [{k: r.get(k) for k in JOB_KEYS} for r in results],
            "executor": executor.describe(), "seconds": seconds}


def report_document(result: dict[str, Any]) -> dict[str, Any]:
    """What ``--reports`` writes for one job: its spec §6 document, or an error document."""
    if result.get("document") is not None:
        return result["document"]
    doc = {"version": 1, "status": "error", "exit_code": result["exit_code"], "error": result["error"]}
    if result.get("traceback"):
        doc["traceback"] = result["traceback"]
    return doc


def write_report(result: dict[str, Any], folder: Path) -> None:
    """Write the job's report as ``folder/<name>.json``."""
    path = folder / f"{result['name']}.json"
    try:
        path.write_text(json.dumps(report_document(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BatchError(f"cannot write {path}: {exc.strerror}", "check the --reports folder") from None


def check_output_path(path: Path) -> None:
    """Refuse an ``--output`` that cannot be written, before any job runs (exit code 2)."""
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(str(path), "", "unsupported --output file type", "use a .parquet or .csv file name")
    if not path.parent.is_dir():
        raise InputError(str(path), "", f"folder {path.parent} does not exist", "create it first")


def write_rows(results: Sequence[dict[str, Any]], path: Path) -> None:
    """One row per job (:data:`ROW_COLUMNS`) as Parquet or CSV; missing numbers are nulls."""
    import pandas as pd

    rows = [{**{k: r.get(k) for k in ROW_COLUMNS}, "top_up_value": _top_up_value(r)} for r in results]
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    for col in ("name", "status", "solver_status", "error"):
        frame[col] = frame[col].astype("string")
    for col in ("objective_value", "objective_value_before", "carry_saved_per_year", "locked_before", "locked_after",
                "top_up_value", "seconds"):
        frame[col] = frame[col].astype("Float64")
    frame["exit_code"] = frame["exit_code"].astype("Int64")
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    except OSError as exc:
        raise BatchError(f"cannot write {path}: {exc}", "check the --output path") from None


def _top_up_value(result: dict[str, Any]) -> float | None:
    top = result.get("top_up")
    return None if top is None else math.fsum(t["value"] for t in top)


def run_manifest(manifest: Path, executor: Executor, *, prices: Path | None = None, time_limit: float = 120.0,
                 output: Path | None = None, reports: Path | None = None, progress: bool = True
                 ) -> dict[str, Any]:
    """`pmopt batch`: validate everything first (exit code 2), run, write reports as jobs finish and the rows at
    the end; the spec §7 document."""
    jobs = load_manifest(manifest)
    price_file = None
    if prices is not None:
        from risk_models.market_data import load_prices

        load_prices(prices)  # a bad price file is bad input for the whole batch, not one error per job
        price_file = str(Path(prices).resolve())
    if output is not None:
        check_output_path(output)
    if reports is not None:
        try:
            reports.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(reports), "", f"cannot create the reports folder: {exc.strerror}") from None
    t0 = time.perf_counter()
    with _progress(len(jobs), progress) as advance:
        def done(result: dict[str, Any]) -> None:
            if reports is not None:
                write_report(result, reports)
            advance(result)

        results = run_batch(jobs, executor, prices=price_file, time_limit=time_limit, on_done=done)
    if output is not None:
        write_rows(results, output)
    return batch_document(results, executor, time.perf_counter() - t0)


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar on stderr (nothing when ``show`` is false)."""
    if not show:
        yield lambda _result: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]batch[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("", total=total)
        counts = dict.fromkeys(STATUSES, 0)

        def advance(result: dict[str, Any]) -> None:
            counts[result["status"]] += 1
            bar.update(task, advance=1, description=", ".join(f"{n} {s}" for s, n in counts.items() if n))

        yield advance


def print_batch(document: dict[str, Any], console: Any = None) -> None:
    """One row per job, then the message of every job that did not finish optimal."""
    from rich.markup import escape
    from rich.table import Table

    from .render import _console, _num

    console = _console(console)
    jobs = document["jobs"]
    t = Table(title=f"Batch: {len(jobs)} jobs in {document['seconds']:,.1f} s ({document['executor']['kind']})")
    for col in ("job", "status", "objective USD", "before USD", "carry saved / year", "locked before",
                "locked after", "top-up USD", "seconds"):
        t.add_column(col, justify="left" if col in ("job", "status") else "right")
    style = {"optimal": None, "infeasible": "yellow", "error": "red"}
    for j in jobs:
        top = _top_up_value(j)
        t.add_row(j["name"], j["status"], _num(j["objective_value"]), _num(j["objective_value_before"]),
                  _num(j["carry_saved_per_year"]), _num(j["locked_before"]), _num(j["locked_after"]),
                  _num(top), _num(j["seconds"], 1), style=style[j["status"]])
    console.print(t)
    for j in jobs:
        if j["error"]:
            console.print(f"[bold]{j['name']}[/bold] ({j['status']}): {escape(j['error'])}", highlight=False,
                          soft_wrap=True)
