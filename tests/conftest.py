"""Shared helpers: write a book (and optional rules) to a temp folder and evaluate it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from risk_models.compiled import CompiledBook, compile_book
from risk_models.loading import LoadedBook, load_book
from risk_models.margin_report import MarginReport, margin_report
from risk_models.venue_margin import MarginState, evaluate


def dump_yaml(data: dict[str, Any], path: Path) -> Path:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def linear(symbol_base: str, brackets: list[dict], settle: str = "USDT", **extra: Any) -> dict[str, Any]:
    """A linear contract definition for a rules dict."""
    return {"underlying": symbol_base, "settle": settle, "kind": "linear", "contract_size": 1,
            "brackets": brackets, **extra}


def rules_dict(contracts: dict[str, dict], collateral: dict[str, dict] | None = None, **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "venue": "test", "source": "test fixture", "contracts": contracts}
    if collateral is not None:
        out["collateral"] = collateral
    out.update(top)
    return out


class Books:
    """Factory writing books and rules into one temp folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def write(self, book: dict[str, Any], rules: dict[str, dict[str, Any]] | None = None) -> Path:
        """Write ``rules`` (file name → rules dict) and the book; return the book path."""
        self.count += 1
        folder = self.root / f"case{self.count}"
        folder.mkdir()
        for name, data in (rules or {}).items():
            dump_yaml(data, folder / name)
        return dump_yaml(book, folder / "book.yaml")

    def load(self, book: dict[str, Any], rules: dict[str, dict[str, Any]] | None = None) -> LoadedBook:
        return load_book(self.write(book, rules))

    def evaluate(self, book: dict[str, Any], rules: dict[str, dict[str, Any]] | None = None
                 ) -> tuple[CompiledBook, MarginState]:
        cb = compile_book(self.load(book, rules))
        return cb, evaluate(cb)

    def report(self, book: dict[str, Any], rules: dict[str, dict[str, Any]] | None = None) -> MarginReport:
        return margin_report(self.load(book, rules))


@pytest.fixture
def books(tmp_path: Path) -> Books:
    return Books(tmp_path)
