"""A progress bar per policy on a terminal (nothing when output is piped or in CI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dlscaler.trace import Trace
from simulator.runner import ProgressFn


def _noop(_now_s: float) -> None:
    return None


@contextmanager
def progress_bars(console: Console, trace: Trace) -> Iterator[Callable[[str], ProgressFn]]:
    if not console.is_terminal:
        yield lambda _policy: _noop
        return
    start = trace.jobs[0].submit_s
    span = max(trace.span_s, 1.0)
    with Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bars:

        def for_policy(policy: str) -> ProgressFn:
            task = bars.add_task(policy, total=span / 86400.0)

            def update(now_s: float) -> None:
                bars.update(task, completed=min(span, now_s - start) / 86400.0)

            return update

        yield for_policy
