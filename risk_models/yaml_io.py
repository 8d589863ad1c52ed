"""Reading YAML input files: duplicate keys are errors, every failure names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from .errors import InputError, InputErrors


def read_yaml(path: Path | str) -> dict[str, Any]:
    """Parse one YAML mapping.  Raises InputError for a missing file, bad syntax or a duplicated key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "", "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not UTF-8 text
        raise InputError(str(path), "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, file: str) -> dict[str, Any]:
    """Parse YAML 1.2 text.  A document in JSON syntax (a subset of YAML 1.2) takes a fast path."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except _DuplicateJsonKey as exc:
            raise InputError(file, exc.key, "duplicated key; a repeated key would silently overwrite the first",
                             "keep one entry per key") from None
        except json.JSONDecodeError:
            data = None  # not JSON after all: flow-style YAML, parsed below
        if isinstance(data, dict):
            return data
    yaml = YAML(typ="safe", pure=True)
    try:
        data = yaml.load(text)
    except DuplicateKeyError as exc:
        key = _duplicate_key(exc)
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise InputError(file, key, f"duplicated key (line {line}); a repeated key would silently overwrite the first",
                         "keep one entry per key") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise InputError(file, "", f"invalid YAML at {where}: {exc.problem or exc.context}") from None
    if not isinstance(data, dict):
        raise InputError(file, "", "the file must hold a YAML mapping (key: value lines) at the top level")
    return data


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJsonKey(key)
        out[key] = value
    return out


def _duplicate_key(exc: DuplicateKeyError) -> str:
    problem = exc.problem or ""
    start = problem.find('"')
    end = problem.find('"', start + 1)
    return problem[start + 1 : end] if 0 <= start < end else "?"


def key_path(loc: tuple[Any, ...]) -> str:
    """``('venues', 'binance', 'accounts', 'main', 'positions', 0, 'qty')`` → ``venues.binance....positions[0].qty``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


M = TypeVar("M", bound=BaseModel)

_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "finite_number": "must be a finite number (NaN and inf are not allowed)",
}


def validation_errors(file: str, exc: ValidationError) -> InputErrors:
    """Turn pydantic's errors into InputErrors naming file and key path."""
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        reason = _REASONS.get(err["type"], err["msg"].removeprefix("Value error, "))
        reason = reason.replace("Input should be", "must be").replace("Dictionary should", "must")
        reason = reason.replace("List should", "must").replace(" after validation", "")
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            shown = repr(err["input"])
            if len(shown) <= 60:
                reason = f"{reason} (got {shown})"
        errors.append(InputError(file, key_path(loc), reason))
    return InputErrors(errors)


def validate_model(model: type[M], data: Any, file: str) -> M:
    """``model.model_validate(data)``, its errors raised as InputErrors naming ``file`` and each key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_errors(file, exc) from None


def write_yaml(data: dict[str, Any], path: Path | str) -> None:
    """Write a mapping as block YAML (used for recommended books)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # keep the spec's key order
    with open(path, "w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
