"""The notebook-style walkthrough examples/api_walkthrough.py runs top to bottom on the example desk."""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "api_walkthrough.py"


def test_walkthrough_runs_and_prints_the_recommendation() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        names = runpy.run_path(str(SCRIPT), run_name="__main__")
    text = out.getvalue()
    assert "problems: none" in text
    assert "optimal: carry 2,234.93 -> 791.01 USD over the carry horizon, 85,528.73 USD a year saved" in text
    assert names["rec"].transfers["amount"].iloc[0] == names["rec"].document["transfers"][0]["amount"]
    assert names["sweep"]["status"].tolist() == ["optimal", "optimal"]
    assert names["what_if"].status == "optimal"
    cells = SCRIPT.read_text(encoding="utf-8").count("# %%")
    assert cells >= 10
