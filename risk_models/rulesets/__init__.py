"""Built-in rule sets: dated YAML files; an undated name is an alias of the newest dated set."""

from __future__ import annotations

import re
from pathlib import Path

_DIR = Path(__file__).parent
_DATED = re.compile(r"^(?P<base>.+?)-(?P<date>\d{4}(?:-\d{2}){0,2})$")


def builtin_names() -> list[str]:
    """Every dated built-in rule-set name, sorted."""
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


def aliases() -> dict[str, str]:
    """Undated alias → newest dated name (``binance-usdm`` → ``binance-usdm-2024-10``)."""
    newest: dict[str, tuple[str, str]] = {}
    for name in builtin_names():
        m = _DATED.match(name)
        if m is None:
            continue
        base, date = m["base"], m["date"]
        if base not in newest or date > newest[base][0]:
            newest[base] = (date, name)
    return {base: name for base, (_, name) in newest.items()}


def resolve_builtin(name: str) -> tuple[str, Path] | None:
    """The dated name and file of a built-in rule set, or None when ``name`` is not built in."""
    dated = name if name in builtin_names() else aliases().get(name)
    return None if dated is None else (dated, _DIR / f"{dated}.yaml")
