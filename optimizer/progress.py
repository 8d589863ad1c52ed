"""Progress on stderr while a command works: a spinner naming the stage, or a bar over sweep points.

Shown only on a terminal and never with ``--quiet``: with ``--json`` piped on, or in a log file, stderr stays free
of spinner frames (a terminal shows them even with ``--json``, since stdout still gets one clean document).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def progress_wanted(quiet: bool, stderr: Any = None) -> bool:
    """Whether to show progress: not with ``quiet``, and only when stderr is a terminal."""
    if quiet:
        return False
    stream = sys.stderr if stderr is None else stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Stages and bars of one command on stderr; every method is a no-op when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        """A spinner with ``name`` and the elapsed seconds while the block runs; removed when it ends.  The yielded
        callback shows a detail after the name (say, the rounds of constraint generation)."""
        if not self.enabled:
            yield lambda _text: None
            return
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        with RichProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                          console=_stderr_console(), transient=True) as bar:
            task = bar.add_task(name, total=None)

            def detail(text: str) -> None:
                bar.update(task, description=f"{name}: {text}")

            yield detail

    @contextmanager
    def bar(self, name: str, total: int) -> Iterator[Callable[[str], None]]:
        """A bar of ``total`` steps; the yielded callback advances it by one and shows its text (the last point)."""
        if not self.enabled:
            yield lambda _text: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(TextColumn(f"[bold]{name}[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.description}"), console=_stderr_console(), transient=True) as bar:
            task = bar.add_task("", total=total)

            def advance(text: str) -> None:
                bar.update(task, advance=1, description=text)

            yield advance


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
