"""The `pmopt` command line.  Exit codes (spec §6): 0 done, 2 bad input, 3 infeasible, 1 anything else."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from risk_models.errors import PmoptError

from .cli_ccxt import fetch, import_group, rules_import_ccxt
from .cli_demo import demo
from .cli_output import command_progress, is_quiet, output_options, set_quiet
from .cli_rules import rules_list, rules_show
from .cli_tables import import_tables_command
from .cli_validate import validate
from .render import print_infeasible, print_margin_table, print_recommendation, print_risk_tables, print_sweep

if TYPE_CHECKING:
    from risk_models.loading import LoadedBook
    from risk_models.scenarios import ScenarioSet
    from risk_models.schema.policy import Policy

    from .progress import Progress
    from .run import Result


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
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a defect, not bad input: one clear line (the traceback on request), exit 1
            if os.environ.get("PMOPT_TRACEBACK"):
                raise
            click.echo(f"error: internal error ({type(exc).__name__}: {exc}); this is a defect in pmopt, not in your "
                       "input — set PMOPT_TRACEBACK=1 to see where it happened, and report it", err=True)
            sys.exit(1)


def _buffers(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    """--report-sweep: '1,1.5,2' → [1.0, 1.5, 2.0]; 'none' (or nothing) → []."""
    if value.strip().lower() in ("", "none"):
        return []
    try:
        values = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        values = [-1.0]
    if not all(v >= 0 for v in values):  # NaN too
        raise click.BadParameter(f"{value!r}: give comma-separated non-negative buffers, e.g. 1,1.5,2, or none")
    return values


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pmopt")
@click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr, for any command.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """pmopt: portfolio-margin optimizer for crypto derivatives desks.

    \b
    Example:
      pmopt demo
      pmopt margin examples/multi_venue/book.yaml
      pmopt risk examples/multi_venue/book.yaml --json
      pmopt optimize examples/multi_venue/book.yaml --policy examples/multi_venue/policy.yaml
    """
    set_quiet(ctx, quiet)


@main.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of spec §4 instead of a table.")
@output_options
def margin(book: Path, as_json: bool) -> None:
    """Venue margin and liquidation price of every account and position of BOOK.

    \b
    Example:
      pmopt margin examples/multi_venue/book.yaml --json
    """
    from risk_models.loading import load_book
    from risk_models.margin_report import margin_report

    report = margin_report(load_book(book))
    _emit(report.to_dict(), as_json, lambda: print_margin_table(report))


@main.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file (spec §3): risk_model, stress, buffer.")
@click.option("--model", type=click.Choice(["historical", "filtered_historical", "parametric", "grid"]),
              help="Scenario model (default: the policy's, else historical).")
@click.option("--confidence", type=click.FloatRange(0.5, 1, min_open=True, max_open=True),
              help="Expected-shortfall confidence (default 0.99).")
@click.option("--measure", type=click.Choice(["es", "worst"]), help="Risk measure (default es).")
@click.option("--horizon", type=click.IntRange(1, 30), help="Risk horizon in days (default 1).")
@click.option("--window", type=click.IntRange(30), help="Look-back window in days (default 1095).")
@click.option("--buffer", type=click.FloatRange(0), help="k in R = ρ(L + k·MM) (default: the policy's, else 1).")
@click.option("--prices", type=click.Path(path_type=Path),
              help="Daily USD closes, CSV or Parquet, one column per asset (default: the embedded history).")
@click.option("--offset-cap", type=click.FloatRange(0, 1),
              help="EMIR offset limit: offsets cut margin by at most this share of (standalone − net), e.g. 0.8.")
@click.option("--apc-buffer", type=click.FloatRange(0), help="Anti-procyclicality buffer, e.g. 0.25 (EMIR).")
@click.option("--adv", type=click.Path(path_type=Path),
              help="CSV 'asset,adv_usd' of average daily volumes: adds a liquidity charge k·|q|^1.5/√ADV.")
@click.option("--liquidity-coefficient", type=click.FloatRange(0), default=0.0, show_default=True,
              help="k of the liquidity charge (used with --adv).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of spec §5 instead of tables.")
@output_options
def risk(book: Path, policy: Path | None, model: str | None, confidence: float | None, measure: str | None,
         horizon: int | None, window: int | None, buffer: float | None, prices: Path | None, offset_cap: float | None,
         apc_buffer: float | None, adv: Path | None, liquidity_coefficient: float, as_json: bool) -> None:
    """Net portfolio margin of every account: correlation-aware, collateral repriced in the same scenarios.

    \b
    Example:
      pmopt risk examples/multi_venue/book.yaml
      pmopt risk examples/multi_venue/book.yaml --model filtered_historical --horizon 2 --json
    """
    from risk_models.compiled import compile_book
    from risk_models.delta_normal import normal_model_of
    from risk_models.loading import load_book, load_policy
    from risk_models.market_data import default_prices, load_prices, read_adv
    from risk_models.measures import RiskMeasure
    from risk_models.risk_model import build_scenarios
    from risk_models.risk_report import GuardRails, risk_report
    from risk_models.schema.policy import Policy
    from risk_models.venue_margin import evaluate

    loaded = load_book(book)
    pol = load_policy(policy) if policy else Policy(version=1)
    overrides = {k: v for k, v in {"kind": model, "confidence": confidence, "measure": measure,
                                   "horizon_days": horizon, "window_days": window}.items() if v is not None}
    spec = pol.risk_model.model_copy(update=overrides)
    if spec.kind == "grid":  # scanning risk: the worst move of each risk unit
        spec = spec.model_copy(update={"measure": "worst"})
    k = buffer if buffer is not None else (pol.cross.buffer if policy else 1.0)
    cb = compile_book(loaded)
    state = evaluate(cb)
    progress = command_progress()
    with progress.stage(f"generating {spec.kind} scenarios"):
        history = load_prices(prices) if prices else default_prices()
        scenarios = build_scenarios(spec, cb.assets, history, loaded.book.as_of, pol.stress_scenarios,
                                    str(policy) if policy else "policy")
    rails = GuardRails(offset_cap, apc_buffer, read_adv(adv) if adv else None, liquidity_coefficient)
    normal = normal_model_of(scenarios, spec.method) if spec.kind == "parametric" else None
    with progress.stage("computing net portfolio margins"):
        report = risk_report(loaded.file, cb, state, scenarios, RiskMeasure(spec.measure, spec.confidence), k,
                             tuple(spec.pegged), model_kind=spec.kind, guard_rails=rails, normal=normal)
    _emit(report.to_dict(), as_json, lambda: print_risk_tables(report))


@main.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--policy", type=click.Path(path_type=Path), required=True, help="Policy file (spec §3).")
@click.option("--trades", type=click.Path(path_type=Path),
              help="Planned trades, CSV 'venue,account,symbol,qty,price', applied before optimizing.")
@click.option("--prices", type=click.Path(path_type=Path),
              help="Daily USD closes, CSV or Parquet (default: the embedded history).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of spec §6.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), help="Write the allocations as CSV.")
@click.option("--write-book", type=click.Path(path_type=Path),
              help="Write the recommended state as a book that pmopt margin / risk can re-check.")
@click.option("--time-limit", type=click.FloatRange(1), default=120.0, show_default=True,
              help="Time limit of each solver call, seconds (constraint generation makes several).")
@click.option("--report", "report_html", type=click.Path(path_type=Path, dir_okay=False),
              help="Write an offline HTML report with interactive charts of the recommendation.")
@click.option("--png", "png_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write the report's charts as PNG files into DIR (matplotlib).")
@click.option("--report-sweep", default="1,1.25,1.5,2,3", show_default=True, callback=_buffers,
              help="Buffers k of the report's capital-vs-buffer chart, one optimization each ('none': no sweep).")
@output_options
def optimize(book: Path, policy: Path, trades: Path | None, prices: Path | None, as_json: bool,
             csv_out: Path | None, write_book: Path | None, time_limit: float, report_html: Path | None,
             png_dir: Path | None, report_sweep: list[float]) -> None:
    """Recommend the collateral mix and cross/isolated modes that meet POLICY at least cost.

    Exit code 3 when the policy cannot be met: the smallest top-up, and the smallest position reductions that
    would meet it instead (verified on the reduced book), are reported.

    \b
    Example:
      pmopt optimize examples/multi_venue/book.yaml --policy examples/multi_venue/policy.yaml
      pmopt optimize BOOK --policy POLICY --trades planned.csv --json --write-book after.yaml
      pmopt optimize BOOK --policy POLICY --report report.html --png charts/ --report-sweep 1,1.5,2
    """
    from risk_models.compiled import compile_book
    from risk_models.loading import load_book, load_policy
    from risk_models.market_data import default_prices, load_prices
    from risk_models.risk_model import build_scenarios
    from risk_models.yaml_io import write_yaml

    from .run import Infeasible
    from .run import optimize as run_optimize
    from .trades import apply_trades

    loaded = load_book(book)
    if trades:
        loaded = apply_trades(loaded, trades)
    pol = load_policy(policy)
    cb = compile_book(loaded)
    progress = command_progress()
    with progress.stage(f"generating {pol.risk_model.kind} scenarios"):
        history = load_prices(prices) if prices else default_prices()
        scenarios = build_scenarios(pol.risk_model, cb.assets, history, loaded.book.as_of, pol.stress_scenarios,
                                    str(policy))
    try:
        with progress.stage("solving and re-checking") as detail:
            result = run_optimize(loaded, pol, scenarios, time_limit=time_limit, on_round=detail)
    except Infeasible as exc:  # the remedies on stdout (JSON or tables), the message on stderr, exit code 3
        _emit(exc.document, as_json, partial(print_infeasible, exc.document, exc.note))
        raise
    if write_book:
        write_yaml(result.book.model_dump(exclude_none=True), write_book)
    if csv_out:
        _write_allocations_csv(result.document["allocations"], csv_out)
    if report_html or png_dir:
        _write_report(loaded, pol, scenarios, result, report_html, png_dir, report_sweep, time_limit, progress)
    _emit(result.document, as_json, lambda: print_recommendation(result.document))


@main.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--policy", type=click.Path(path_type=Path), required=True, help="Policy file (spec §3).")
@click.option("--param", required=True,
              help="The policy number to vary: buffer, confidence, liquidation_distance, or yield:ASSET.")
@click.option("--values", required=True, help="Comma-separated values, e.g. 1,1.25,1.5,2.")
@click.option("--prices", type=click.Path(path_type=Path), help="Daily USD closes (default: embedded).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@output_options
def sweep(book: Path, policy: Path, param: str, values: str, prices: Path | None, as_json: bool) -> None:
    """Capital needed as one policy number varies (every point solved and re-checked).

    \b
    Example:
      pmopt sweep examples/multi_venue/book.yaml --policy examples/multi_venue/policy.yaml \\
          --param buffer --values 1,1.25,1.5,2
    """
    from risk_models.compiled import compile_book
    from risk_models.errors import InputError
    from risk_models.loading import load_book, load_policy
    from risk_models.market_data import default_prices, load_prices
    from risk_models.risk_model import build_scenarios

    from .sweep import run_sweep

    try:
        points = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise InputError("--values", values, "must be comma-separated numbers", "e.g. 1,1.25,1.5") from None
    loaded = load_book(book)
    pol = load_policy(policy)
    progress = command_progress()
    cb = compile_book(loaded)
    with progress.stage(f"generating {pol.risk_model.kind} scenarios"):
        history = load_prices(prices) if prices else default_prices()
        scenarios = build_scenarios(pol.risk_model, cb.assets, history, loaded.book.as_of, pol.stress_scenarios,
                                    str(policy))
    with progress.bar(f"sweeping {param}", len(points)) as advance:
        rows = run_sweep(loaded, pol, scenarios, param, points,
                         on_point=lambda row: advance(f"{param} {row['value']:g}: {row['status']}"))
    _emit({"version": 1, "param": param, "rows": rows}, as_json, lambda: print_sweep(param, rows))


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--dask-local", type=click.IntRange(1), metavar="N",
              help="Run on a new local Dask cluster of N single-threaded worker processes.")
@click.option("--scheduler", metavar="ADDR", help="Run on the Dask cluster whose scheduler is ADDR (tcp://HOST:PORT).")
@click.option("--workers", type=click.IntRange(1), help="Size of the local process pool (default: the CPU count).")
@click.option("--prices", type=click.Path(path_type=Path),
              help="Daily USD closes, CSV or Parquet, for every job (default: the embedded history).")
@click.option("--time-limit", type=click.FloatRange(1), default=120.0, show_default=True,
              help="Time limit of each solver call in a job, seconds (constraint generation makes several).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of spec §7 (and no progress bar).")
@click.option("--output", type=click.Path(path_type=Path), help="Write one row per job to a .parquet or .csv file.")
@click.option("--reports", type=click.Path(path_type=Path, file_okay=False),
              help="Write each job's spec §6 document as DIR/<name>.json.")
def batch(manifest: Path, dask_local: int | None, scheduler: str | None, workers: int | None, prices: Path | None,
          time_limit: float, as_json: bool, output: Path | None, reports: Path | None) -> None:
    """Optimize every job of MANIFEST (spec §7) in parallel; a failing job never stops the others.

    Exit code 0 when every job ran, whatever its status; 2 when the manifest is bad.

    \b
    Example:
      pmopt batch examples/batch/manifest.yaml --output results.parquet --reports reports/
      pmopt batch manifest.yaml --dask-local 4 --json
    """
    from .batch import Executor, default_workers, print_batch, run_manifest

    if dask_local and scheduler:
        raise click.UsageError("give either --dask-local N or --scheduler ADDR, not both")
    if workers and (dask_local or scheduler):
        raise click.UsageError("--workers sizes the local process pool; a Dask cluster has its own workers")
    if dask_local:
        executor = Executor("dask_local", dask_local)
    elif scheduler:
        executor = Executor("dask", None, scheduler)
    else:
        executor = Executor("process_pool", workers or default_workers())
    document = run_manifest(manifest, executor, prices=prices, time_limit=time_limit, output=output,
                            reports=reports, progress=not (as_json or is_quiet()))
    _emit(document, as_json, lambda: print_batch(document))


@main.group()
def rules() -> None:
    """The venues' margin rule sets: the built-in ones, and new ones made from venue data.

    \b
    Example:
      pmopt rules list
      pmopt rules show binance-usdm
    """


rules.add_command(rules_list)
rules.add_command(rules_show)
rules.add_command(rules_import_ccxt)
import_group.add_command(import_tables_command)
main.add_command(import_group)
main.add_command(fetch)
main.add_command(validate)
main.add_command(demo)


def _emit(document: dict, as_json: bool, render: Callable[[], None]) -> None:
    """Print ``document`` as JSON (stdout, one document), or the human tables."""
    if as_json:
        click.echo(json.dumps(document, indent=2, allow_nan=False))
    else:
        render()


def _write_report(loaded: LoadedBook, policy: Policy, scenarios: ScenarioSet, result: Result, html: Path | None,
                  png_dir: Path | None, sweep: list[float], time_limit: float, progress: Progress) -> None:
    """``pmopt optimize --report / --png``: the report of a re-checked recommendation."""
    from .report import build_report, write_html, write_pngs

    with progress.stage(f"building the report ({len(sweep)} buffer points)"):
        data = build_report(loaded, policy, scenarios, result, sweep, time_limit)
    if html:
        write_html(data, html)
    if png_dir:
        write_pngs(data, png_dir)


def _write_allocations_csv(rows: list[dict], path: Path) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["bucket", "asset", "amount", "value"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":  # pragma: no cover
    main()
