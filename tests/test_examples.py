"""Every example desk runs end to end (margin, risk with its policy, optimize) and gives the headline numbers its
README states.  A new folder under examples/ with a book.yaml is picked up automatically and must be listed here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from optimizer.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DESKS = sorted(p.parent.name for p in EXAMPLES.glob("*/book.yaml"))

EXIT_CODES: dict[str, int] = {}
"""Examples that are deliberately infeasible (exit code 3), as their README says; every other one exits 0."""

Headline = tuple[str, str, Any, str]
"""(command, key path in its JSON document, value, how the README prints it)."""

HEADLINES: dict[str, list[Headline]] = {
    "alt_basket": [
        ("risk", "accounts.0.net_portfolio_margin", 293369.89, ",.2f"),
        ("risk", "accounts.0.standalone_margin", 1005878.13, ",.2f"),
        ("risk", "accounts.0.diversification_benefit", 712508.24, ",.2f"),
        ("optimize", "transfers.0.amount", 2157659.45, ",.2f"),
        ("optimize", "objective_value_before", 2396.91, ",.2f"),
        ("optimize", "objective_value", 543.96, ",.2f"),
        ("optimize", "before.locked", 2499636.40, ",.2f"),
        ("optimize", "after.locked", 342290.76, ",.2f"),
        ("optimize", "carry_saved_per_year", 107867.28, ",.2f"),
        ("optimize", "margin_modes", [], ""),
    ],
    "basis_trade": [
        ("risk", "accounts.0.net_portfolio_margin", 1830298.74, ",.2f"),
        ("optimize", "transfers.0.amount", 3000000.0, ",.0f"),
        ("optimize", "transfers.1.asset", "BTC", ""),
        ("optimize", "transfers.1.amount", 18.65416931, ".8f"),
        ("optimize", "objective_value_before", 2876.29, ",.2f"),
        ("optimize", "objective_value", 482.02, ",.2f"),
        ("optimize", "before.locked", 2999563.68, ",.2f"),
        ("optimize", "after.locked", 1820648.08, ",.2f"),
        ("optimize", "carry_saved_per_year", 149978.18, ",.2f"),
    ],
    "depeg_stress": [
        ("risk", "accounts.0.net_portfolio_margin", 1041224.30, ",.2f"),
        ("risk", "accounts.0.worst_scenarios.0.label", "usdc-depeg-in-a-sell-off", ""),
        ("risk", "accounts.0.worst_scenarios.0.loss", 993651.77, ",.2f"),
        ("optimize", "transfers.0.amount", 1187173.87, ",.2f"),
        ("optimize", "transfers.1.asset", "USDT", ""),
        ("optimize", "transfers.1.amount", 305285.39, ",.2f"),
        ("optimize", "objective_value_before", 1380.80, ",.2f"),
        ("optimize", "objective_value", 798.21, ",.2f"),
        ("optimize", "before.locked", 1599976.93, ",.2f"),
        ("optimize", "after.locked", 718061.16, ",.2f"),
        ("optimize", "carry_saved_per_year", 38160.00, ",.2f"),
    ],
    "multi_venue": [
        ("risk", "accounts.0.net_portfolio_margin", 358732.11, ",.2f"),
        ("optimize", "transfers.0.amount", 1353007.25, ",.2f"),
        ("optimize", "objective_value_before", 2234.93, ",.2f"),
        ("optimize", "objective_value", 791.01, ",.2f"),
        ("optimize", "before.locked", 7918015.42, ",.2f"),
        ("optimize", "after.locked", 6193307.24, ",.2f"),
        ("optimize", "carry_saved_per_year", 85528.73, ",.2f"),
    ],
}


def _pick(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _run(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, [*args, "--json", "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def test_every_example_is_listed() -> None:
    assert DESKS == sorted(HEADLINES)
    assert len(DESKS) >= 4


@pytest.fixture(scope="module", params=DESKS)
def desk(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict]]:
    """Each example's three documents (margin, risk --policy, optimize), each command's exit code checked."""
    name = request.param
    folder = EXAMPLES / name
    book, policy = str(folder / "book.yaml"), str(folder / "policy.yaml")
    docs = {}
    for command, args in (("margin", [book]), ("risk", [book, "--policy", policy]),
                          ("optimize", [book, "--policy", policy])):
        code, doc = _run(command, *args)
        expected = EXIT_CODES.get(name, 0) if command == "optimize" else 0
        assert code == expected, f"{name}: pmopt {command} exited {code}"
        docs[command] = doc
    return name, docs


def test_headline_numbers(desk: tuple[str, dict[str, dict]]) -> None:
    name, docs = desk
    assert docs["optimize"]["status"] in ("optimal", "infeasible")
    for command, path, value, _ in HEADLINES[name]:
        got = _pick(docs[command], path)
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-5, abs=0.006), f"{name}: {command} {path}"
        else:
            assert got == value, f"{name}: {command} {path}"


def test_readme_states_the_numbers(desk: tuple[str, dict[str, dict]]) -> None:
    name, _ = desk
    readme = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
    for _, path, value, fmt in HEADLINES[name]:
        if fmt:
            assert format(value, fmt) in readme, f"{name}: README lacks {path} = {format(value, fmt)}"
    assert f"pmopt optimize examples/{name}/book.yaml --policy examples/{name}/policy.yaml" in readme


def test_depeg_costs_carry_against_the_pegged_view() -> None:
    folder = EXAMPLES / "depeg_stress"
    code, pegged = _run("optimize", str(folder / "book.yaml"), "--policy", str(folder / "policy_pegged.yaml"))
    assert code == 0
    assert pegged["objective_value"] == pytest.approx(708.00, abs=0.006)
    assert [(t["asset"], round(t["amount"], 2)) for t in pegged["transfers"]] == [("USDC", 881779.86)]
    code, risk = _run("risk", str(folder / "book.yaml"), "--policy", str(folder / "policy_pegged.yaml"))
    assert risk["accounts"][0]["net_portfolio_margin"] == pytest.approx(685225.89, abs=0.006)
