"""`pmopt validate FILE...`: check input files of every kind; every problem of every file at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .input_check import KINDS, check_file


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(KINDS),
              help="What every FILE is (default: told from each file's top-level keys).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with each file's problems.")
def validate(files: tuple[Path, ...], kind: str | None, as_json: bool) -> None:
    """Check each FILE (a book with its rules, rules, a policy, a batch manifest, a ccxt account map) without
    running it.

    Prints one OK line per valid file; every problem of every file (file, key path, reason, remedy) on stderr.
    Exit code 0 when all are valid, 2 otherwise.

    \b
    Example:
      pmopt validate examples/multi_venue/book.yaml examples/multi_venue/policy.yaml
      pmopt validate my_rules.yaml --kind rules
    """
    checks = [check_file(f, kind) for f in files]  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps({"version": 1, "ok": all(c.ok for c in checks),
                               "files": [c.to_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            if c.ok:
                click.echo(f"OK {c.file} ({c.summary})")
            for p in c.problems:
                click.echo(f"error: {p.render()}", err=True)
    if not all(c.ok for c in checks):
        sys.exit(2)
