"""The `pmopt` command line.  Exit codes (spec §6): 0 done, 2 bad input, 3 infeasible, 1 anything else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from risk_models.errors import PmoptError

from .render import print_margin_table


class _Group(click.Group):
    """Turns pmopt's typed errors into a clear message and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            # Overflow in extreme inputs is reported as bad input by explicit finiteness checks, not warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return super().invoke(ctx)
        except PmoptError as exc:
            click.echo(f"error: {exc}".replace("\n", "\nerror: "), err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pmopt")
def main() -> None:
    """pmopt: portfolio-margin optimizer for crypto derivatives desks.

    \b
    Example:
      pmopt margin examples/multi_venue/book.yaml
      pmopt margin examples/multi_venue/book.yaml --json
    """


@main.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of spec §4 instead of a table.")
def margin(book: Path, as_json: bool) -> None:
    """Venue margin and liquidation price of every account and position of BOOK.

    \b
    Example:
      pmopt margin examples/multi_venue/book.yaml --json
    """
    from risk_models.loading import load_book
    from risk_models.margin_report import margin_report

    report = margin_report(load_book(book))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print_margin_table(report)


if __name__ == "__main__":  # pragma: no cover
    main()
