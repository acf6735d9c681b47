"""``dlscaler simulate`` and ``dlscaler gen-trace``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from simulator.tune import StudyRun

POLICY_HELP = "Comma-separated policies: static-peak, reactive, predictive, oracle."


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load_yaml(path: Path, what: str) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as err:
        raise _fail(f"cannot read {what} file {path}: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _fail(f"{path}: not valid YAML: {err}") from None


def load_inputs(
    trace_path: Path,
    pools_path: Path | None,
    config_path: Path | None,
    skip_invalid: bool,
) -> tuple[Any, Any, Any]:
    """Read and validate the trace, pools and policy config; exit 2 with a clear message."""
    from dlscaler.config import DEFAULT_POOL, ConfigError, parse_policy_config, parse_pools
    from dlscaler.trace import TraceError, parse_trace

    try:
        pools = (
            parse_pools(load_yaml(pools_path, "pools"), source=str(pools_path))
            if pools_path
            else [DEFAULT_POOL]
        )
        config = parse_policy_config(
            load_yaml(config_path, "config") if config_path else None,
            source=str(config_path or "defaults"),
        )
    except ConfigError as err:
        raise _fail(str(err)) from None
    try:
        with trace_path.open(newline="") as fh:
            trace = parse_trace(
                fh,
                source=str(trace_path),
                skip_invalid=skip_invalid,
                max_gpus_per_worker=max(p.gpus_per_node for p in pools),
            )
    except OSError as err:
        raise _fail(f"cannot read trace {trace_path}: {err.strerror}") from None
    except TraceError as err:
        raise _fail(str(err)) from None
    return trace, pools, config


def simulate_command(
    trace: Annotated[
        Path, typer.Option("--trace", help="Trace CSV (job_id,submit_s,duration_s,num_gpus,...).")
    ],
    policy: Annotated[str, typer.Option("--policy", help=POLICY_HELP)] = "reactive",
    pools: Annotated[
        Path | None,
        typer.Option(
            "--pools",
            help=(
                "Pools YAML (NodePool spec fields). Default: one 8-GPU pool, 0..10000 nodes,"
                " 300 s boot, 32.77 USD/h."
            ),
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Policy config YAML (as written by `dlscaler tune`)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write report.json and timeline.png here.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for every random draw (boot delays, failures).")
    ] = 0,
    decision_interval: Annotated[
        float | None,
        typer.Option(
            "--decision-interval",
            help="Seconds between periodic decisions (default: the config's, 60 s).",
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Count and skip malformed trace rows instead of failing."
        ),
    ] = False,
    plot: Annotated[
        bool, typer.Option("--plot/--no-plot", help="Draw timeline.png (with --out).")
    ] = True,
    warm_start: Annotated[
        bool,
        typer.Option(
            "--warm-start/--cold-start",
            help=(
                "Warm: the jobs submitted at the trace's first instant were already running"
                " when it began, on nodes that are ready at once. Cold: they wait one boot."
            ),
        ),
    ] = True,
) -> None:
    """Replay a job trace through scaling policies; print cost, idle GPU-hours and waits."""
    from dlscaler.config import POLICY_NAMES

    policies = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown or not policies:
        raise _fail(
            f"--policy: unknown {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(POLICY_NAMES)}"
        )
    trace_obj, pool_models, base = load_inputs(trace, pools, config, skip_invalid)
    run_and_report(
        trace_obj,
        pool_models,
        base,
        policies,
        out=out,
        seed=seed,
        decision_interval=decision_interval,
        plot=plot,
        warm_start=warm_start,
    )


def run_and_report(
    trace: Any,
    pools: Any,
    base: Any,
    policies: list[str],
    *,
    out: Path | None,
    seed: int,
    decision_interval: float | None,
    plot: bool,
    warm_start: bool = True,
) -> list[dict[str, Any]]:
    import json

    from rich.console import Console
    from rich.table import Table

    from simulator.compare import report_document, run_policies
    from simulator.forecasting import default_forecast_factory
    from simulator.progress import progress_bars
    from simulator.report import TABLE_COLUMNS, build_report, table_rows
    from simulator.runner import SimOptions

    console = Console(stderr=True)
    if trace.skipped_rows:
        console.print(
            f"[yellow]skipped {trace.skipped_rows} malformed row(s)[/]; first: "
            f"{trace.skipped_examples[0]}",
            soft_wrap=True,  # the file and line stay on one line in CI logs and pipes
        )
    options = SimOptions(seed=seed, decision_interval_s=decision_interval, warm_start=warm_start)
    with progress_bars(console, trace) as progress:
        results = run_policies(
            trace,
            pools,
            base,
            policies,
            options=options,
            forecast_factory=default_forecast_factory,
            progress=progress,
        )
    reports = [build_report(r) for r in results]
    table = Table(
        title=f"{trace.source}: {len(trace.jobs)} jobs, {trace.span_s / 86400:.1f} days, "
        f"{trace.gpu_hours:,.0f} GPU-hours demanded"
    )
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in table_rows(reports):
        table.add_row(*row)
    Console(width=max(Console().width, 150)).print(table)
    if pools:
        from simulator.bounds import no_wait_bound

        bound = no_wait_bound(trace, pools)
        console.print(
            f"no-wait repacking bound: {bound.gpu_hours:,.0f} GPU-h, {bound.cost_usd:,.0f} USD "
            "(no policy that starts every job at submit can provision less)",
            soft_wrap=True,
        )
    for r in results:
        if r.unschedulable:
            console.print(
                f"[yellow]{r.policy}: {len(r.unschedulable)} job(s) unschedulable[/], e.g. "
                f"{next(iter(r.unschedulable.items()))}",
                soft_wrap=True,
            )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        doc = report_document(trace, pools, seed, reports)
        (out / "report.json").write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        console.print(f"wrote {out / 'report.json'}", soft_wrap=True)
        if plot:
            from simulator.plot import plot_timeline

            console.print(f"wrote {plot_timeline(results, out / 'timeline.png')}", soft_wrap=True)
    return reports


def gen_trace_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the CSV ('-' for stdout).")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Number of jobs.")] = 10_000,
    days: Annotated[
        float, typer.Option("--days", min=0.01, help="Span of submissions in days.")
    ] = 30.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    gpu_types: Annotated[
        str,
        typer.Option(
            "--gpu-types", help="Comma-separated GPU types to draw from (default: any type)."
        ),
    ] = "",
    median_duration: Annotated[
        float, typer.Option("--median-duration", min=1, help="Median job duration, seconds.")
    ] = 1800.0,
) -> None:
    """Write a synthetic trace: daily/weekly cycles, bursts, heavy-tailed durations and gangs."""
    from simulator.synth import SynthSpec, generate, to_csv

    spec = SynthSpec(
        jobs=jobs,
        days=days,
        seed=seed,
        median_duration_s=median_duration,
        gpu_types=tuple(t for t in gpu_types.split(",") if t),
    )
    text = to_csv(generate(spec))
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {jobs} jobs over {days:g} days to {out}", err=True)


def tune_command(
    trace: Annotated[Path, typer.Option("--trace", help="Trace CSV to tune on.")],
    policy: Annotated[
        str, typer.Option("--policy", help="Policy to tune: reactive or predictive.")
    ] = "predictive",
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Completed trials the study should reach.")
    ] = 40,
    pools: Annotated[
        Path | None, typer.Option("--pools", help="Pools YAML (default: the default pool).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Starting policy config YAML.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for tuned.yaml, pareto.png, pareto.json.")
    ] = Path("tune-out"),
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help=(
                "optuna storage URL (default: sqlite:///OUT/study.db; "
                "postgresql://... to share a study between machines)."
            ),
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="Study name (default: derived from trace and policy)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Parallel trial processes (0: one per core).")
    ] = 0,
    max_wait_p95: Annotated[
        float | None,
        typer.Option(
            "--max-wait-p95",
            help=(
                "Choose the cheapest Pareto point with p95 wait under this many seconds "
                "(default: the knee)."
            ),
        ),
    ] = None,
    max_failures: Annotated[
        int,
        typer.Option(
            "--max-failures",
            min=1,
            help=(
                "Failed trials (a simulation that raised) are replaced by new ones until this"
                " many have failed in one run; then it stops short of --trials."
            ),
        ),
    ] = 10,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Search a policy's parameters (cost vs p95 wait); write the chosen config as YAML."""
    import json
    import os

    import yaml
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from dlscaler.config import policy_config_to_dict
    from simulator.tune import TuneError, run_study

    if policy not in ("reactive", "predictive"):
        raise _fail(f"--policy: can tune reactive or predictive, not {policy!r}")
    trace_obj, pool_models, base = load_inputs(trace, pools, config, skip_invalid=False)
    base = replace(base, policy=policy)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"{trace.stem}-{policy}"
    # soft_wrap: paths and errors stay on one line in CI logs and pipes (80 columns there).
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(
        f"study {name!r} in {storage_url}: up to {trials} trials, "
        f"{workers or os.cpu_count()} worker(s)",
        markup=False,
    )

    def progress(completed: int, total: int, failed: int) -> None:
        console.print(
            f"  {completed}/{total} trials completed" + (f", {failed} failed" if failed else "")
        )

    try:
        run = run_study(
            trace_obj,
            pool_models,
            base,
            trials=trials,
            storage=storage_url,
            study_name=name,
            workers=workers or (os.cpu_count() or 1),
            seed=seed,
            max_wait_p95_s=max_wait_p95,
            max_failures=max_failures,
            on_progress=progress,
            on_note=lambda line: console.print(f"  {line}", markup=False),
        )
    except TuneError as err:
        raise _fail(str(err), code=1) from None
    for line in failure_report(run, trials=trials, max_failures=max_failures):
        console.print(f"[yellow]{escape(line)}[/]")
    if run.chosen is None:
        raise _fail(f"no trial of study {name!r} has completed: nothing to choose from", code=1)
    front, chosen = run.front, run.chosen
    table = Table(title=f"Pareto front: cost vs p95 wait ({len(front)} points)")
    for col in ("trial", "cost USD", "wait p95", "idle timeout", "chosen"):
        table.add_column(col, justify="right")
    for r in front:
        table.add_row(
            str(r.number) + (f" ({r.start_point})" if r.start_point else ""),
            f"{r.cost_usd:,.0f}",
            f"{r.wait_p95_s:,.0f}s",
            f"{r.config.idle_timeout_s:.0f}s",
            "*" if r.number == chosen.number else "",
        )
    Console(width=max(Console().width, 100)).print(table)
    doc = {"policyConfig": policy_config_to_dict(chosen.config)}
    (out / "tuned.yaml").write_text(
        f"# dlscaler tune: trial {chosen.number} of study {name} on {trace}\n"
        f"# cost {chosen.cost_usd:,.0f} USD, p95 wait {chosen.wait_p95_s:,.0f} s. "
        "Use with `dlscaler simulate --config` or `helm install -f`.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    (out / "pareto.json").write_text(
        json.dumps(
            [
                {
                    "trial": r.number,
                    "cost_usd": r.cost_usd,
                    "wait_p95_s": r.wait_p95_s,
                    "config": policy_config_to_dict(r.config),
                }
                for r in front
            ],
            indent=2,
        )
        + "\n"
    )
    from simulator.plot import plot_pareto

    plot_pareto(front, chosen, out / "pareto.png")
    console.print(
        f"wrote {out / 'tuned.yaml'}, {out / 'pareto.json'}, {out / 'pareto.png'}", markup=False
    )
    if run.completed < trials:
        # The files hold the best of what completed; the exit status tells scripts the study
        # is short of what was asked.
        raise typer.Exit(1)


def failure_report(run: StudyRun, *, trials: int, max_failures: int) -> list[str]:
    """Lines about the trials that failed in a tune run: how many, the first error, and
    whether the run stopped short of ``trials`` because of them."""
    if not run.failed:
        return []
    first = run.failed[0]
    lines = [
        f"{len(run.failed)} trial(s) failed in this run; first: trial {first.number}: {first.error}"
    ]
    if run.completed < trials:
        lines.append(
            f"stopped after {len(run.failed)} failed trial(s) (--max-failures {max_failures}): "
            f"{run.completed} of {trials} trials completed; running the same command again "
            "resumes the study"
        )
    else:
        lines.append(
            f"failed trials were replaced by new ones (at most --max-failures {max_failures} "
            "per run)"
        )
    return lines


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
    app.command("simulate")(simulate_command)
    app.command("gen-trace")(gen_trace_command)
