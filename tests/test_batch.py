"""`pmopt batch` (spec §7): manifest validation, one job's failure among good ones, the JSON document, Parquet and
CSV rows, reports, a crashed worker, and the same results from the local process pool and a 2-worker Dask
LocalCluster.

The jobs are small one-account books (tests.test_optimizer's helpers) under a `grid` risk model, so that each solves
in well under a second; the batch machinery, not the optimizer, is under test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer import batch as batch_module
from optimizer.batch import BatchJob, Executor, load_manifest, run_batch, run_job
from optimizer.cli import main
from risk_models.errors import InputErrors
from tests.conftest import Books, dump_yaml
from tests.test_optimizer import RULES, book, pos

ROOT = Path(__file__).resolve().parents[1]
SPEC_JOB_KEYS = {"name", "status", "objective_value", "error"}
POLICY = {"version": 1, "risk_model": {"kind": "grid"}, "cross": {"buffer": 1.5}, "yields": {"USDT": 0.05},
          "transfer_cost_bps": 1.0}
DASK_TIMEOUT = 300  # seconds for the whole LocalCluster run (start, 4 jobs, shutdown); it takes about 15


# == the desk of the tests ========================================================================================

def _desk(tmp_path: Path) -> Path:
    """A folder with a manifest of five jobs: two good, one with planned trades, one infeasible, one bad book."""
    books = Books(tmp_path)
    good = books.write(book({"a": ({"USDT": 100_000.0}, [pos("BTCUSDT", 2.0), pos("ETHUSDT", -20.0)])},
                            {"USDT": 500_000.0, "BTC": 2.0}), {"r.yaml": RULES})
    short = books.write(book({"a": ({"USDT": 60_000.0}, [pos("BTCUSDT", -1.0), pos("DOGEUSDT", 300_000.0)])},
                             {"USDT": 200_000.0}), {"r.yaml": RULES})
    tight = books.write(book({"a": ({"USDT": 500.0}, [pos("BTCUSDT", 4.0)])}, {"USDT": 500.0}),
                        {"r.yaml": RULES})
    unknown = books.write(book({"a": ({"USDT": 1_000.0}, [pos("SOLUSDT", 5.0, entry=150.0)])}, {"USDT": 1_000.0}),
                          {"r.yaml": RULES})
    dump_yaml(POLICY, tmp_path / "policy.yaml")
    (tmp_path / "trades.csv").write_text("venue,account,symbol,qty,price\nv,a,BTCUSDT,-1,50000\n")
    rel = {p: str(p.relative_to(tmp_path)) for p in (good, short, tight, unknown)}
    dump_yaml({"version": 1, "jobs": [
        {"name": "good", "book": rel[good], "policy": "policy.yaml"},
        {"name": "unknown-symbol", "book": rel[unknown], "policy": "policy.yaml"},
        {"name": "good-after-trades", "book": rel[good], "policy": "policy.yaml", "trades": "trades.csv"},
        {"name": "tight", "book": rel[tight], "policy": "policy.yaml"},
        {"name": "short", "book": rel[short], "policy": "policy.yaml"},
    ]}, tmp_path / "manifest.yaml")
    return tmp_path / "manifest.yaml"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The desk run once on the local process pool (2 workers), with --json, --output and --reports."""
    folder = tmp_path_factory.mktemp("desk")
    manifest = _desk(folder)
    code, out, err = _run("batch", str(manifest), "--workers", "2", "--json", "--output", str(folder / "rows.parquet"),
                          "--reports", str(folder / "reports"))
    assert code == 0, err
    assert err == ""  # --json: no progress bar
    return {"folder": folder, "manifest": manifest, "document": json.loads(out)}


def _jobs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in document["jobs"]}


# == manifest validation (exit code 2, file and key named) ========================================================

def _manifest(tmp_path: Path, jobs: list[dict[str, Any]], **top: Any) -> Path:
    dump_yaml(POLICY, tmp_path / "policy.yaml")
    dump_yaml({"version": 1, "prices": {"USDT": 1.0}, "venues": {}}, tmp_path / "book.yaml")
    return dump_yaml({"version": 1, "jobs": jobs, **top}, tmp_path / "manifest.yaml")


def test_unknown_key_in_a_job_is_exit_2(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "a", "book": "book.yaml", "policy": "policy.yaml", "trade": "t.csv"}])
    code, _, err = _run("batch", str(path))
    assert code == 2
    assert f"{path}: jobs[0].trade: unknown key" in err


def test_unknown_top_level_key_and_wrong_version_are_exit_2(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "a", "book": "book.yaml", "policy": "policy.yaml"}], workers=4)
    code, _, err = _run("batch", str(path))
    assert code == 2 and f"{path}: workers: unknown key" in err
    path.write_text("version: 2\njobs: [{name: a, book: book.yaml, policy: policy.yaml}]\n")
    code, _, err = _run("batch", str(path))
    assert code == 2 and f"{path}: version:" in err


def test_duplicated_job_name_is_exit_2(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "desk-a", "book": "book.yaml", "policy": "policy.yaml"},
                                {"name": "desk-b", "book": "book.yaml", "policy": "policy.yaml"},
                                {"name": "Desk-A", "book": "book.yaml", "policy": "policy.yaml"}])
    code, _, err = _run("batch", str(path))
    assert code == 2
    assert f"{path}: jobs[2].name: job name 'Desk-A' is already used by jobs[0]" in err


def test_duplicated_yaml_key_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text("version: 1\njobs:\n  - name: a\n    book: book.yaml\n    book: other.yaml\n    policy: p.yaml\n")
    code, _, err = _run("batch", str(path))
    assert code == 2 and f"{path}: book: duplicated key (line 5)" in err


def test_missing_files_are_exit_2_naming_each(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "a", "book": "book.yaml", "policy": "nosuch.yaml"},
                                {"name": "b", "book": "missing/book.yaml", "policy": "policy.yaml",
                                 "trades": "t.csv"}])
    with pytest.raises(InputErrors) as caught:
        load_manifest(path)
    assert [e.key for e in caught.value.errors] == ["jobs[0].policy", "jobs[1].book", "jobs[1].trades"]
    code, _, err = _run("batch", str(path))
    assert code == 2
    assert f"{path}: jobs[0].policy: file not found: nosuch.yaml (looked for {tmp_path / 'nosuch.yaml'})" in err
    assert "jobs[1].book: file not found: missing/book.yaml" in err and "jobs[1].trades" in err


def test_job_name_must_be_a_file_name_and_jobs_non_empty(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "../escape", "book": "book.yaml", "policy": "policy.yaml"}])
    code, _, err = _run("batch", str(path))
    assert code == 2 and "jobs[0].name: job name '../escape' must start with a letter or digit" in err
    path = _manifest(tmp_path, [])
    code, _, err = _run("batch", str(path))
    assert code == 2 and f"{path}: jobs:" in err
    code, _, err = _run("batch", str(tmp_path / "nosuch.yaml"))
    assert code == 2 and "nosuch.yaml: file not found" in err


def test_bad_options_are_exit_2_before_any_job_runs(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"name": "a", "book": "book.yaml", "policy": "policy.yaml"}])
    code, _, err = _run("batch", str(path), "--output", str(tmp_path / "rows.xlsx"))
    assert code == 2 and "unsupported --output file type" in err
    code, _, err = _run("batch", str(path), "--dask-local", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "not both" in err
    code, _, err = _run("batch", str(path), "--dask-local", "2", "--workers", "2")
    assert code == 2 and "--workers" in err
    code, _, err = _run("batch", str(path), "--prices", str(tmp_path / "nosuch.csv"))
    assert code == 2 and "no such price file" in err


# == running: one bad job among good ones, the JSON document, rows and reports ====================================

def test_json_document_is_spec_7_in_manifest_order(pool_run: dict[str, Any]) -> None:
    doc = pool_run["document"]
    assert doc["version"] == 1
    assert [j["name"] for j in doc["jobs"]] == ["good", "unknown-symbol", "good-after-trades", "tight", "short"]
    for j in doc["jobs"]:
        assert SPEC_JOB_KEYS <= set(j)
        assert j["status"] in ("optimal", "infeasible", "error")
        assert (j["error"] is None) == (j["status"] == "optimal")
        assert (j["objective_value"] is None) == (j["status"] != "optimal")
    assert [j["status"] for j in doc["jobs"]] == ["optimal", "error", "optimal", "infeasible", "optimal"]
    assert doc["executor"] == {"kind": "process_pool", "workers": 2}


def test_bad_job_is_reported_and_the_others_succeed(pool_run: dict[str, Any]) -> None:
    jobs = _jobs(pool_run["document"])
    bad = jobs["unknown-symbol"]
    assert bad["exit_code"] == 2  # what `pmopt optimize` would have returned
    assert "unknown symbol 'SOLUSDT'" in bad["error"] and "positions[0].symbol" in bad["error"]
    tight = jobs["tight"]  # 4 BTC (200,000 USD, maintenance 2,000) on 500 USDT of collateral and 500 in the wallet
    assert tight["exit_code"] == 3 and tight["error"].startswith("the policy cannot be met. Either top up")
    assert tight["top_up"] and sum(t["value"] for t in tight["top_up"]) > 0
    assert tight["objective_value"] is None
    good = jobs["good"]
    # carry before = 5 % × 100,000 USDT locked × 7 / 365 days (yields of the policy; BTC has none)
    assert good["objective_value_before"] == pytest.approx(0.05 * 100_000 * 7 / 365, rel=1e-12)
    assert good["locked_before"] == pytest.approx(100_000.0, rel=1e-12)
    assert 0 < good["objective_value"] < good["objective_value_before"]
    assert good["carry_saved_per_year"] > 0


def test_each_job_is_the_optimize_flow(pool_run: dict[str, Any]) -> None:
    """Every job's figures are what `pmopt optimize --json` prints for the same files (equal to 1e-12)."""
    folder, jobs = pool_run["folder"], _jobs(pool_run["document"])
    for job in load_manifest(pool_run["manifest"]):
        args = ["optimize", job.book, "--policy", job.policy, "--json"] + (["--trades", job.trades] if job.trades
                                                                          else [])
        code, out, _ = _run(*args)
        entry = jobs[job.name]
        assert code == entry["exit_code"], job.name
        report = json.loads((folder / "reports" / f"{job.name}.json").read_text())
        if code == 2:
            assert report == {"version": 1, "status": "error", "exit_code": 2, "error": entry["error"]}
            continue
        doc = json.loads(out)
        assert report["status"] == doc["status"]
        if code == 3:
            assert report["top_up"] == doc["top_up"] == entry["top_up"]
            continue
        assert report["objective_value"] == pytest.approx(doc["objective_value"], rel=1e-12)
        assert entry["objective_value"] == pytest.approx(doc["objective_value"], rel=1e-12)
        assert report["allocations"] == doc["allocations"]


def test_parquet_rows_round_trip(pool_run: dict[str, Any]) -> None:
    frame = pd.read_parquet(pool_run["folder"] / "rows.parquet")
    assert list(frame.columns) == ["name", "status", "objective_value", "objective_value_before",
                                   "carry_saved_per_year", "locked_before", "locked_after", "top_up_value",
                                   "seconds", "exit_code", "solver_status", "error"]
    jobs = pool_run["document"]["jobs"]
    assert frame["name"].tolist() == [j["name"] for j in jobs]
    assert frame["status"].tolist() == [j["status"] for j in jobs]
    assert frame["exit_code"].tolist() == [0, 2, 0, 3, 0]
    for row, j in zip(frame.to_dict("records"), jobs, strict=True):
        for key in ("objective_value", "objective_value_before", "carry_saved_per_year", "locked_before",
                    "locked_after", "seconds"):
            if j[key] is None:
                assert pd.isna(row[key]), (j["name"], key)
            else:
                assert row[key] == j[key], (j["name"], key)  # Parquet keeps every bit of a double
        assert pd.isna(row["error"]) if j["error"] is None else row["error"] == j["error"]
    tight = frame.set_index("name").loc["tight"]
    assert tight["top_up_value"] == pytest.approx(sum(t["value"] for t in _jobs(pool_run["document"])["tight"]
                                                      ["top_up"]), rel=1e-12)


def test_csv_rows_and_table(tmp_path: Path) -> None:
    manifest = _desk(tmp_path)
    dump_yaml({"version": 1, "jobs": [{"name": "good", "book": "case1/book.yaml", "policy": "policy.yaml"},
                                      {"name": "unknown-symbol", "book": "case4/book.yaml",
                                       "policy": "policy.yaml"}]}, manifest)
    code, out, err = _run("batch", str(manifest), "--workers", "1", "--output", str(tmp_path / "rows.csv"))
    assert code == 0, err
    assert "good" in out and "optimal" in out and "unknown-symbol (error):" in out
    assert "unknown symbol 'SOLUSDT'" in out  # the message in full below the table
    assert "2/2" in err  # the progress bar, on stderr
    frame = pd.read_csv(tmp_path / "rows.csv")
    assert frame["status"].tolist() == ["optimal", "error"]
    assert frame["objective_value_before"][0] == pytest.approx(0.05 * 100_000 * 7 / 365, rel=1e-12)
    assert pd.isna(frame["objective_value"][1])


# == a worker that dies ===========================================================================================

def crashing_job(name: str, *args: Any) -> dict[str, Any]:
    """A job function whose worker process dies on the job named 'crash' (as under the out-of-memory killer)."""
    if name == "crash":
        os._exit(9)
    return run_job(name, *args)


def test_a_dying_worker_fails_only_its_job(tmp_path: Path) -> None:
    manifest = _desk(tmp_path)
    jobs = [j for j in load_manifest(manifest) if j.name in ("good", "short")]
    crash = BatchJob("crash", jobs[0].book, jobs[0].policy)
    seen: list[str] = []
    results = run_batch([jobs[0], crash, jobs[1]], Executor("process_pool", 2), job=crashing_job,
                        on_done=lambda r: seen.append(r["name"]))
    assert [r["name"] for r in results] == ["good", "crash", "short"]
    assert [r["status"] for r in results] == ["optimal", "error", "optimal"]
    assert "the worker process running this job died" in results[1]["error"]
    assert sorted(seen) == ["crash", "good", "short"]
    assert results[0]["objective_value"] == pytest.approx(run_job("good", jobs[0].book, jobs[0].policy)
                                                          ["objective_value"], rel=1e-12)


# == Dask ==========================================================================================================

def _subprocess(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run in its own session, so that on a timeout the whole process group (cluster workers too) is killed."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(args)} did not finish in {timeout} s")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_dask_local_cluster_gives_the_process_pool_results(pool_run: dict[str, Any]) -> None:
    done = _subprocess([sys.executable, "-m", "optimizer.cli", "batch", str(pool_run["manifest"]), "--dask-local",
                        "2", "--json"], DASK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    dask_doc = json.loads(done.stdout)
    assert dask_doc["executor"] == {"kind": "dask_local", "workers": 2}
    local, remote = pool_run["document"]["jobs"], dask_doc["jobs"]
    assert [j["name"] for j in remote] == [j["name"] for j in local]
    assert [j["status"] for j in remote] == [j["status"] for j in local]
    for a, b in zip(local, remote, strict=True):
        assert a["exit_code"] == b["exit_code"] and a["error"] == b["error"]
        for key in ("objective_value", "objective_value_before", "carry_saved_per_year", "locked_after"):
            if a[key] is None:
                assert b[key] is None
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-9, abs=0), (a["name"], key)
        if a["top_up"] is not None:
            assert sum(t["value"] for t in b["top_up"]) == pytest.approx(sum(t["value"] for t in a["top_up"]),
                                                                         rel=1e-9)


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _manifest(tmp_path, [{"name": "a", "book": "book.yaml", "policy": "policy.yaml"}])
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(batch_module, "CONNECT_TIMEOUT", 2.0)
    code, _, err = _run("batch", str(path), "--scheduler", f"tcp://127.0.0.1:{port}", "--json")
    assert code == 1
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err and "--dask-local N" in err



def test_benchmark_job_runs(tmp_path: Path) -> None:
    """benchmarks/batch.py's synthetic job on the process pool (its Dask half is the test above, on other books)."""
    spec = importlib.util.spec_from_file_location("batch_benchmark", ROOT / "benchmarks" / "batch.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures, rows = bench.measure(bench.write_job(tmp_path, 2), Executor("process_pool", 2))
    assert figures["jobs"] == 2 and figures["statuses"] == ["optimal"]
    assert figures["books_per_minute"] == pytest.approx(60 * 2 / figures["wall_s"], rel=1e-12)
    assert rows[0]["objective_value"] == rows[1]["objective_value"] > 0  # the same job twice, the same answer
    assert bench.agree(rows, rows[::-1])
