"""`pmopt validate`: kinds told apart by their keys, every problem of every file at once, exit codes 0 and 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.input_check import check_file, detect_kind, problems
from tests.conftest import dump_yaml, linear, rules_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "multi_venue"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("keys", "kind"), [
    ({"version": 1, "prices": {}, "venues": {}}, "book"),
    ({"version": 1, "venue": "x", "source": "y", "contracts": {}}, "rules"),
    ({"version": 1, "cross": {"buffer": 1}}, "policy"),
    ({"version": 1}, None),
    ({"version": 1, "jobs": []}, "manifest"),
    ({"version": 1, "prices": "closes.csv", "accounts": []}, "import-map"),
])
def test_kind_from_top_level_keys(keys: dict, kind: str | None) -> None:
    assert detect_kind(keys) == kind


def test_valid_files_print_one_ok_line_each() -> None:
    code, out, err = _run("validate", str(EXAMPLE / "book.yaml"), str(EXAMPLE / "policy.yaml"),
                          str(ROOT / "risk_models" / "rulesets" / "okx-pm-2025-01.yaml"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("OK ") for line in lines)
    assert "book: 15 positions in 5 accounts on 4 venues" in lines[0]
    assert "policy: carry_cost, historical es 0.99, buffer 1.5" in lines[1]
    assert "rules: okx, 4 contracts, dated 2025-01-06" in lines[2]


def test_every_problem_of_every_file_with_key_paths(tmp_path: Path) -> None:
    book = dump_yaml({"version": 1, "prices": {"BTC": 1000.0, "USDT": 1.0},
                      "venues": {"binance": {"rules": "binance-usdm", "accounts": {"main": {
                          "collateral": {"USDT": 100.0, "DOGE": 5.0},
                          "positions": [{"symbol": "BTCUSDX", "qty": 1.0, "entry_price": 100.0}]}}}}},
                     tmp_path / "book.yaml")
    policy = dump_yaml({"version": 1, "cross": {"buffer": -1}, "risk_model": {"kind": "historic"}},
                       tmp_path / "policy.yaml")
    code, out, err = _run("validate", str(book), str(policy), str(EXAMPLE / "policy.yaml"))
    assert code == 2
    assert out.startswith("OK ") and "multi_venue" in out
    errors = err.splitlines()
    assert len(errors) == 5
    base = f"error: {book}: venues.binance.accounts.main"
    assert f"error: {book}: prices.DOGE: missing price for asset DOGE" in errors[0]
    assert errors[1].startswith(f"{base}.collateral.DOGE: DOGE is not accepted as collateral by binance-usdm-2024-10")
    assert errors[2].startswith(f"{base}.positions[0].symbol: unknown symbol 'BTCUSDX'")
    assert f"error: {policy}: risk_model.kind: must be 'historical'" in err
    assert f"error: {policy}: cross.buffer: must be greater than or equal to 0 (got -1)" in err


def test_kind_option_and_undetectable_files(tmp_path: Path) -> None:
    odd = dump_yaml({"version": 1, "foo": 1}, tmp_path / "odd.yaml")
    assert problems(odd) == [f"{odd}: cannot tell whether this is a book, rules, policy, manifest or import-map "
                             "file from its top-level keys (foo, version) "
                             "(give --kind book|rules|policy|manifest|import-map)"]
    assert problems(odd, "policy") == [f"{odd}: foo: unknown key"]
    rules = dump_yaml(rules_dict({"X": linear("X", [{"cap": 10.0, "mmr": 0.02, "max_leverage": 10},
                                                   {"cap": 5.0, "mmr": 0.01, "max_leverage": 20}])}),
                      tmp_path / "rules.yaml")
    check = check_file(rules)
    assert check.kind == "rules" and [p.key for p in check.problems] == ["contracts.X.brackets"]
    code, out, _ = _run("validate", str(rules), str(tmp_path / "missing.yaml"), "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [f["kind"] for f in doc["files"]] == ["rules", None]
    assert doc["files"][1]["problems"] == [{"key": "", "reason": "file not found", "remedy": "check the path"}]


def test_manifest_with_a_missing_job_file(tmp_path: Path) -> None:
    manifest = dump_yaml({"version": 1, "jobs": [{"name": "a", "book": "nope.yaml", "policy": "p.yaml"}]},
                         tmp_path / "manifest.yaml")
    check = check_file(manifest)
    assert check.kind == "manifest"
    assert [p.key for p in check.problems] == ["jobs[0].book", "jobs[0].policy"]


def test_import_map(tmp_path: Path) -> None:
    mapping = dump_yaml({"version": 1, "accounts": [{"venue": "binance", "positions": "p.json"}]},
                        tmp_path / "accounts.yaml")
    check = check_file(mapping)
    assert check.kind == "import-map"
    assert [(p.key, p.reason) for p in check.problems] == [("accounts[0].balance", "required key is missing")]
