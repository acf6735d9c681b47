"""``dlscaler forecast``: a rolling-origin backtest of the demand forecasters on a trace.

Only typer and the standard library at import time: ``dlscaler --help`` stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str, option: str) -> float:
    """``90s``, ``5m``, ``1h``, ``14d``, ``2w`` or plain seconds -> seconds (> 0)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise typer.BadParameter(
            f"{text!r} is not a duration; use a number with s, m, h, d or w (e.g. 5m, 1h, 14d)",
            param_hint=option,
        )
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def forecast_command(
    trace: Annotated[
        Path, typer.Option("--trace", help="Trace CSV (job_id,submit_s,duration_s,num_gpus,...).")
    ],
    step: Annotated[str, typer.Option("--step", help="Demand series step, e.g. 5m.")] = "5m",
    horizon: Annotated[str, typer.Option("--horizon", help="How far ahead, e.g. 1h.")] = "1h",
    models: Annotated[
        str,
        typer.Option(
            "--models",
            help="Comma-separated models (the baselines always run): naive, "
            "seasonal-naive-daily, seasonal-naive-weekly, naive-quantiles, ets, regression, "
            "structural, auto; or 'all'.",
        ),
    ] = "all",
    warmup: Annotated[
        str, typer.Option("--warmup", help="History before the first forecast origin.")
    ] = "14d",
    refit: Annotated[str, typer.Option("--refit", help="Refit every models this often.")] = "1d",
    stride: Annotated[
        int, typer.Option("--stride", min=1, help="Steps between forecast origins.")
    ] = 1,
    covariates: Annotated[
        bool,
        typer.Option(
            "--covariates/--no-covariates",
            help="Give models the arrivals and running jobs' ages, not only the demand.",
        ),
    ] = True,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write forecast.json and forecast.png here.")
    ] = None,
    plot_model: Annotated[
        str | None,
        typer.Option("--plot-model", help="Model to plot (default: auto if run, else the best)."),
    ] = None,
) -> None:
    """Backtest demand forecasters on a trace: MAE and p90 pinball loss vs the naive baselines."""
    step_s = parse_duration(step, "--step")
    horizon_s = parse_duration(horizon, "--horizon")
    warmup_s = parse_duration(warmup, "--warmup")
    refit_s = parse_duration(refit, "--refit")
    if horizon_s < step_s:
        raise _fail(f"--horizon ({horizon}) must be at least one --step ({step})")
    run_backtest(
        trace,
        step_s=step_s,
        horizon_s=horizon_s,
        models=models,
        warmup_s=warmup_s,
        refit_s=refit_s,
        stride=stride,
        covariates=covariates,
        out=out,
        plot_model=plot_model,
    )


def run_backtest(
    trace_path: Path,
    *,
    step_s: float,
    horizon_s: float,
    models: str,
    warmup_s: float,
    refit_s: float,
    stride: int,
    covariates: bool,
    out: Path | None,
    plot_model: str | None,
) -> dict[str, Any]:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from dlscaler.trace import TraceError, parse_trace
    from predictors.backtest import backtest
    from predictors.base import Series
    from predictors.registry import AUTO, make_model, model_names
    from predictors.report import TABLE_COLUMNS, document, plot_backtest, table_rows
    from predictors.series import demand_series

    names = model_names() if models.strip() == "all" else [m.strip() for m in models.split(",")]
    unknown = [m for m in names if m not in model_names()]
    if unknown or not names:
        raise _fail(
            f"--models: unknown model(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(model_names())} or 'all'"
        )
    try:
        with trace_path.open(newline="") as fh:
            trace = parse_trace(fh, source=str(trace_path))
    except OSError as err:
        raise _fail(f"cannot read trace {trace_path}: {err.strerror}") from None
    except TraceError as err:
        raise _fail(str(err)) from None
    if not trace.jobs:
        raise _fail(f"{trace_path}: the trace has no jobs")
    series = demand_series(trace.jobs, step_s, covariates=covariates)
    if not covariates:
        series = Series(series.values, series.step_s, series.start_s)
    h = series.steps(horizon_s)
    first = series.steps(warmup_s)
    if first > len(series) - h:
        span_d = len(series) * step_s / 86_400.0
        raise _fail(
            f"--warmup {warmup_s / 86_400.0:g}d leaves nothing to forecast in a "
            f"{span_d:.1f}-day trace; use a shorter --warmup"
        )
    # soft_wrap: paths and model notes stay on one line in CI logs and pipes (80 columns).
    console = Console(stderr=True, soft_wrap=True)
    factories = {name: (lambda hh, qs, name=name: make_model(name, hh, qs)) for name in names}
    progress_columns = (
        TextColumn("{task.description:>22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("refits"),
        TimeElapsedColumn(),
    )
    with Progress(*progress_columns, console=console, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total)
            bars.update(tasks[name], completed=done)

        result = backtest(
            factories,
            series,
            h,
            first_origin=first,
            stride=stride,
            refit_every=series.steps(refit_s),
            keep_forecasts=out is not None,
            progress=progress if console.is_terminal else None,
        )
    table = Table(
        title=f"{trace_path.name}: {len(result.origins):,} origins, {h} steps of "
        f"{step_s:g}s ahead, refit every {refit_s / 3600:g}h"
    )
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    # Wide enough for every column even when piped (rich falls back to 80 columns).
    Console(width=max(Console().width, 120)).print(table)
    for name, s in result.scores.items():
        if s.failures:
            console.print(f"[yellow]{name}: {s.failures} failed refit(s)[/]; {s.notes[0]}")
    doc = document(result, trace=str(trace_path), extra={"covariates": covariates})
    if AUTO in result.scores:
        console.print(f"auto chose most often: [bold]{doc['chosen']}[/]")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "forecast.json").write_text(json.dumps(doc, indent=2) + "\n")
        model = plot_model or (AUTO if AUTO in result.forecasts else doc["chosen"])
        if model not in result.forecasts:
            raise _fail(f"--plot-model {model}: not among the backtested models")
        png = plot_backtest(result, series.start_s, model, out / "forecast.png")
        console.print(f"wrote {out / 'forecast.json'}, {png}")
    return doc


def register(app: typer.Typer) -> None:
    app.command("forecast")(forecast_command)
