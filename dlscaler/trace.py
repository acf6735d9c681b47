"""The trace format: one CSV row a job, parsed into :class:`~dlscaler.model.Gang` objects.

``job_id,submit_s,duration_s,num_gpus[,gpu_type][,workers][,priority][,queue][,...]``;
seconds are relative to the trace start; any other column is kept as a job attribute.
The parser takes lines (the caller opens the file), so it stays pure. A malformed row
fails with its line number and column; with ``skip_invalid`` it is counted and reported
instead, never silently dropped.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType

from dlscaler.model import ANY_GPU_TYPE, Gang, split_into_workers

REQUIRED_COLUMNS: tuple[str, ...] = ("job_id", "submit_s", "duration_s", "num_gpus")
KNOWN_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "gpu_type", "workers", "priority", "queue")
MAX_REPORTED_ERRORS = 20


class TraceError(ValueError):
    """A trace that cannot be read; the message names the source, line and column."""


@dataclass(frozen=True, slots=True)
class Trace:
    source: str
    jobs: tuple[Gang, ...]
    columns: tuple[str, ...]
    skipped_rows: int = 0
    skipped_examples: tuple[str, ...] = field(default=())
    """The first few skip reasons (with line numbers), for the report."""

    @property
    def span_s(self) -> float:
        return self.jobs[-1].submit_s - self.jobs[0].submit_s if self.jobs else 0.0

    @property
    def gpu_hours(self) -> float:
        return sum(j.total_gpus * (j.duration_s or 0.0) for j in self.jobs) / 3600.0


def _number(raw: str, column: str, *, positive: bool, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"column '{column}': expected {what}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"column '{column}': expected {what}, got {raw!r}")
    return value


def _integer(raw: str, column: str, *, minimum: int, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        try:
            as_float = float(raw)
        except ValueError:
            as_float = math.nan
        if not as_float.is_integer():
            raise ValueError(f"column '{column}': expected {what}, got {raw!r}") from None
        value = int(as_float)
    if value < minimum:
        raise ValueError(f"column '{column}': expected {what}, got {raw!r}")
    return value


def _row_to_gang(row: dict[str, str], extra: tuple[str, ...], max_gpus_per_worker: int) -> Gang:
    job_id = row["job_id"].strip()
    if not job_id:
        raise ValueError("column 'job_id': must not be empty")
    submit_s = _number(row["submit_s"], "submit_s", positive=False, what="seconds >= 0")
    duration_s = _number(row["duration_s"], "duration_s", positive=True, what="seconds > 0")
    num_gpus = _integer(row["num_gpus"], "num_gpus", minimum=1, what="a whole number >= 1")
    workers_raw = (row.get("workers") or "").strip()
    if workers_raw:
        workers = _integer(workers_raw, "workers", minimum=1, what="a whole number >= 1")
        if num_gpus % workers:
            raise ValueError(
                f"column 'workers': {workers} workers cannot share {num_gpus} GPUs equally"
            )
        gpus_per_worker = num_gpus // workers
    else:
        workers, gpus_per_worker = split_into_workers(num_gpus, max_gpus_per_worker)
    priority_raw = (row.get("priority") or "").strip()
    priority = (
        _integer(priority_raw, "priority", minimum=-(10**9), what="an integer")
        if (priority_raw)
        else 0
    )
    return Gang(
        job_id=job_id,
        submit_s=submit_s,
        duration_s=duration_s,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        gpu_type=(row.get("gpu_type") or ANY_GPU_TYPE).strip(),
        priority=priority,
        queue=(row.get("queue") or "").strip() or "default",
        attributes=MappingProxyType({c: row.get(c) or "" for c in extra}),
    )


def _rows(lines: Iterable[str], source: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(lines)
    try:
        for fields in reader:
            yield reader.line_num, fields
    except csv.Error as err:
        raise TraceError(f"{source}:{reader.line_num}: not valid CSV: {err}") from None


def parse_trace(
    lines: Iterable[str],
    *,
    source: str = "trace",
    skip_invalid: bool = False,
    max_gpus_per_worker: int = 8,
) -> Trace:
    """Parse a trace; jobs come back sorted by submit time (ties keep file order).

    ``max_gpus_per_worker`` shapes rows without a ``workers`` column into gangs (see
    :func:`~dlscaler.model.split_into_workers`); pass the largest node size of the pools.
    """
    rows = _rows(lines, source)
    header_line = next(rows, None)
    if header_line is None:
        raise TraceError(
            f"{source}: empty file; expected a header with {', '.join(REQUIRED_COLUMNS)}"
        )
    header = [h.strip() for h in header_line[1]]
    if header:
        # Spreadsheet programs start a UTF-8 CSV with a byte-order mark; it is not part of
        # the first column's name.
        header[0] = header[0].removeprefix("\ufeff").strip()
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TraceError(
            f"{source}:1: header lacks column(s) {', '.join(missing)}; "
            f"a trace needs {', '.join(REQUIRED_COLUMNS)} (got {', '.join(header) or 'nothing'})"
        )
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise TraceError(f"{source}:1: column(s) {', '.join(duplicates)} appear more than once")
    extra = tuple(c for c in header if c not in KNOWN_COLUMNS)

    jobs: list[Gang] = []
    seen: dict[str, int] = {}
    skipped = 0
    examples: list[str] = []
    for line_no, fields in rows:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        try:
            if len(fields) != len(header):
                raise ValueError(f"expected {len(header)} columns, got {len(fields)}")
            gang = _row_to_gang(dict(zip(header, fields, strict=True)), extra, max_gpus_per_worker)
            if gang.job_id in seen:
                raise ValueError(
                    f"column 'job_id': {gang.job_id!r} already used on line {seen[gang.job_id]}"
                )
        except ValueError as err:
            message = f"{source}:{line_no}: {err}"
            if not skip_invalid:
                raise TraceError(
                    message + " (use --skip-invalid to count and skip such rows)"
                ) from None
            skipped += 1
            if len(examples) < MAX_REPORTED_ERRORS:
                examples.append(message)
            continue
        seen[gang.job_id] = line_no
        jobs.append(gang)
    if not jobs:
        raise TraceError(f"{source}: no valid job rows")
    jobs.sort(key=lambda g: g.submit_s)
    return Trace(
        source=source,
        jobs=tuple(jobs),
        columns=tuple(header),
        skipped_rows=skipped,
        skipped_examples=tuple(examples),
    )
