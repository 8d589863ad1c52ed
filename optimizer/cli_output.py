"""Options shared by the report commands: ``--output FILE`` (the JSON or the tables go to FILE, not stdout) and
``--quiet`` (no progress on stderr; errors are still printed).  ``pmopt --quiet CMD`` sets the latter globally."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from risk_models.errors import InputError

from .progress import Progress, progress_wanted

QUIET_KEY = "pmopt.quiet"
"""Key in ``click.Context.meta`` (shared by a command and its parent group) set by ``--quiet``."""

F = TypeVar("F", bound=Callable[..., Any])


def set_quiet(ctx: click.Context, quiet: bool) -> None:
    """Record ``--quiet`` for this command and every command it invokes (global or per command)."""
    if quiet:
        ctx.meta[QUIET_KEY] = True


def is_quiet() -> bool:
    """True when ``--quiet`` was given, globally or to the running command."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(QUIET_KEY))


def command_progress() -> Progress:
    """The running command's progress display on stderr: on a terminal only (with ``--json`` too, since stdout
    still gets one clean document), never with ``--quiet``."""
    return Progress(progress_wanted(is_quiet()))


def output_options(f: F) -> F:
    """Add ``--output FILE`` and ``-q/--quiet`` to a command whose result goes to stdout.

    With ``--output``, what the command prints to stdout is written to FILE instead, also when it ends with exit
    code 3 (an infeasible policy prints its remedies first); nothing is written when it fails before printing.
    """

    @click.option("-o", "--output", "output", type=click.Path(path_type=Path, dir_okay=False),
                  help="Write the JSON document or the tables to FILE instead of stdout.")
    @click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress display on stderr (errors still show).")
    @functools.wraps(f)
    def wrapper(*args: Any, output: Path | None, quiet: bool, **kwargs: Any) -> Any:
        set_quiet(click.get_current_context(), quiet)
        if output is None:
            return f(*args, **kwargs)
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                return f(*args, **kwargs)
        finally:
            if buffer.getvalue():
                _write(output, buffer.getvalue())

    return wrapper  # type: ignore[return-value]


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), "", f"cannot write the output file: {exc.strerror or exc}",
                         "check that the folder exists and is writable") from None
