"""Command-line quality: an example in every help text, --output and --quiet, progress only on a terminal, and
`pmopt demo` on the desk shipped inside the package."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.cli_demo import DESK_FILES, demo_desk
from optimizer.progress import Progress, progress_wanted
from risk_models.yaml_io import read_yaml
from tests.conftest import dump_yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "multi_venue"
BOOK, POLICY = str(EXAMPLE / "book.yaml"), str(EXAMPLE / "policy.yaml")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


COMMANDS = _commands(main)


def _run(*args: str) -> click.testing.Result:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize("path", [(), *(p for p, _ in COMMANDS)], ids=lambda p: " ".join(p) or "pmopt")
def test_every_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = _run(*path, "--help")
    assert result.exit_code == 0
    assert "Example:\n  pmopt " in result.output.replace("    ", "  ")


def test_the_commands_analysts_need_are_there() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"margin", "risk", "optimize", "sweep", "validate", "demo", "rules", "rules list", "rules show"} <= names


@pytest.mark.parametrize("command", ["margin", "risk", "optimize", "sweep", "demo"])
def test_report_commands_take_output_and_quiet(command: str) -> None:
    help_text = _run(command, "--help").output
    assert "--output" in help_text and "--quiet" in help_text


def test_output_writes_what_stdout_would_show(tmp_path: Path) -> None:
    printed = _run("margin", BOOK, "--json")
    out = tmp_path / "margin.json"
    written = _run("--quiet", "margin", BOOK, "--json", "--output", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    assert json.loads(out.read_text()) == json.loads(printed.stdout)
    table = tmp_path / "risk.txt"
    result = _run("risk", BOOK, "-q", "-o", str(table))
    assert result.exit_code == 0 and result.stdout == ""
    assert "Net portfolio margin (USD): historical, es 0.99" in table.read_text()


def test_output_keeps_the_remedies_of_an_infeasible_policy(tmp_path: Path) -> None:
    raw = read_yaml(EXAMPLE / "book.yaml")
    raw["venues"] = {"hyperliquid": raw["venues"]["hyperliquid"]}
    raw["wallet"] = {}
    book = dump_yaml(raw, tmp_path / "book.yaml")
    policy = dump_yaml({"version": 1, "cross": {"buffer": 20}, "isolated": {"liquidation_distance": 0.5},
                        "yields": {"USDC": 0.045}}, tmp_path / "policy.yaml")
    out = tmp_path / "remedies.json"
    result = _run("optimize", str(book), "--policy", str(policy), "--json", "--output", str(out))
    assert result.exit_code == 3
    doc = json.loads(out.read_text())
    assert doc["status"] == "infeasible"
    assert sum(r["value"] for r in doc["top_up"]) == pytest.approx(327702.08, rel=1e-3)


def test_bad_input_writes_no_output_file(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    result = _run("margin", str(tmp_path / "missing.yaml"), "--output", str(out))
    assert result.exit_code == 2 and not out.exists()


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal_and_never_quiet() -> None:
    assert progress_wanted(False, _Stream(True)) is True
    assert progress_wanted(True, _Stream(True)) is False
    assert progress_wanted(False, _Stream(False)) is False
    off = Progress(False)
    with off.stage("nothing shown"), off.bar("points", 3) as advance:
        advance("a point")


def test_no_progress_frames_in_captured_stderr() -> None:
    result = _run("risk", BOOK, "--policy", POLICY)
    assert result.exit_code == 0 and result.stderr == ""


def test_sweep_reports_each_point_as_it_is_solved() -> None:
    from optimizer.api import load, scenarios_for
    from optimizer.sweep import run_sweep
    from risk_models.loading import load_policy

    raw = read_yaml(EXAMPLE / "book.yaml")
    raw["venues"] = {"hyperliquid": raw["venues"]["hyperliquid"]}
    loaded, policy = load(raw), load_policy(POLICY)
    seen: list[float] = []
    rows = run_sweep(loaded, policy, scenarios_for(loaded, policy), "buffer", [1.0, 1.5, 2.0],
                     on_point=lambda row: seen.append(row["value"]))
    assert seen == [1.0, 1.5, 2.0] and [r["value"] for r in rows] == seen


def test_packaged_desk_is_the_example_desk() -> None:
    with demo_desk() as folder:
        for name in DESK_FILES:
            assert (folder / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
def test_packaged_desk_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["optimizer"]
    assert "demo_desk/*.yaml" in patterns


def test_demo_runs_the_three_steps(tmp_path: Path) -> None:
    result = _run("demo", "--json", "--copy-to", str(tmp_path / "desk"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"version", "margin", "risk", "optimize"}
    assert len(doc["margin"]["accounts"]) == 5
    assert doc["risk"]["accounts"][0]["net_portfolio_margin"] == pytest.approx(358732.11, abs=0.01)
    assert doc["optimize"]["status"] == "optimal"
    assert doc["optimize"]["objective_value"] == pytest.approx(791.01, abs=0.05)
    assert sorted(p.name for p in (tmp_path / "desk").iterdir()) == sorted(DESK_FILES)


def test_global_quiet_also_silences_the_batch_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    import optimizer.batch as batch_module

    seen: list[bool] = []

    def fake_run(*_args: object, progress: bool, **_kwargs: object) -> dict:
        seen.append(progress)
        return {"version": 1, "jobs": [], "seconds": 0.0, "executor": {"kind": "process_pool", "workers": 1}}

    monkeypatch.setattr(batch_module, "run_manifest", fake_run)
    manifest = str(ROOT / "examples" / "batch" / "manifest.yaml")
    for args in (["batch", manifest], ["--quiet", "batch", manifest], ["batch", manifest, "--json"]):
        assert _run(*args).exit_code == 0
    assert seen == [True, False, False]
