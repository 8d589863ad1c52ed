"""The benchmark scripts run end to end on tiny sizes and their internal cross-checks hold (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "args", "result"), [
    ("margin_eval.py", ["--accounts", "4", "--positions", "6", "--repeat", "1", "--loop-sample", "12"],
     "margin_eval.json"),
    ("risk_eval.py", ["--positions", "40", "--scenarios", "400", "--accounts", "4", "--repeat", "1"], "risk_eval.json"),
])
def test_benchmark_runs_and_agrees(script: str, args: list[str], result: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads((BENCH / "results" / result).read_text())
    assert figures["agree"] is True


def test_scale_benchmark_runs_and_agrees() -> None:
    args = ["--positions", "25,50", "--scenarios", "300,600", "--base-scenarios", "300", "--base-positions", "25"]
    done = subprocess.run([sys.executable, str(BENCH / "scale.py"), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads((BENCH / "results" / "scale.json").read_text())
    rows = figures["positions"]["rows"] + figures["scenarios"]["rows"]
    assert len(rows) == 4 and all(r["agree"] is True for r in rows)
    assert all(r["pmopt"]["peak_gib"] > 0 for r in rows)
