"""The committed JSON Schemas and format reference (docs/) match the pydantic models that validate the files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_schemas", ROOT / "docs" / "generate_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_schemas_are_up_to_date() -> None:
    stale = _generator().stale_files()
    assert not stale, f"out of date: {[str(p.relative_to(ROOT)) for p in stale]}; run python docs/generate_schemas.py"


def test_schema_files_cover_the_input_formats() -> None:
    names = {p.name for p in (ROOT / "docs" / "schema").glob("*.schema.json")}
    assert {"book.schema.json", "rules.schema.json", "policy.schema.json"} <= names
    book = json.loads((ROOT / "docs" / "schema" / "book.schema.json").read_text())
    assert book["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert book["required"] == ["version", "prices", "venues"]
    assert book["additionalProperties"] is False  # unknown keys are errors
    position = book["$defs"]["Position"]["properties"]
    assert position["entry_price"]["exclusiveMinimum"] == 0
    assert position["margin_mode"]["enum"] == ["cross", "isolated"]
    assert "Signed size" in position["qty"]["description"]


def test_every_field_is_described() -> None:
    gen = _generator()
    missing = []
    for kind in gen.MODELS:
        schema = gen.schema_of(kind)
        for name, obj in {"root": schema, **schema.get("$defs", {})}.items():
            missing += [f"{kind}: {name}.{f}" for f, p in obj.get("properties", {}).items() if not p.get("description")]
    assert not missing, missing


def test_reference_links_every_object_table() -> None:
    text = (ROOT / "docs" / "format-reference.md").read_text()
    for anchor in ("book-position", "rules-bracket", "rules-collateralrule", "policy-riskmodelpolicy",
                   "policy-stressscenario"):
        assert f'<a id="{anchor}"></a>' in text and f"(#{anchor})" in text
