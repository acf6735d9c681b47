"""The trace loader: every malformed input fails with its line and column, or (with
``skip_invalid``) is counted and reported; nothing is dropped silently."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.trace import MAX_REPORTED_ERRORS, Trace, TraceError, parse_trace

HEADER = "job_id,submit_s,duration_s,num_gpus"


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def parse(text: str, *, skip_invalid: bool = False) -> Trace:
    return parse_trace(lines(text), source="jobs.csv", skip_invalid=skip_invalid)


def test_valid_rows_become_gangs_sorted_by_submit_time_with_extra_columns_kept() -> None:
    trace = parse_trace(
        lines(
            "job_id,submit_s,duration_s,num_gpus,gpu_type,priority,queue,user\n"
            "late,20,100,1,a100,2,prod,alice\n"
            "early,5,50,16,,0,,bob\n"
            "tie,20,10,4,,,,carol\n"
        ),
        source="jobs.csv",
    )
    assert [g.job_id for g in trace.jobs] == ["early", "late", "tie"]  # ties keep file order
    early, late, tie = trace.jobs
    # 16 GPUs on (default) 8-GPU nodes: the fewest equal workers, 2 x 8.
    assert (early.workers, early.gpus_per_worker) == (2, 8)
    assert early.queue == "default" and early.gpu_type == ""
    assert (late.gpu_type, late.priority, late.queue) == ("a100", 2, "prod")
    assert late.attributes == {"user": "alice"}
    assert tie.priority == 0
    # demand: 50 s x 16 + 100 s x 1 + 10 s x 4 = 940 GPU-seconds
    assert trace.gpu_hours == pytest.approx(940 / 3600)
    assert trace.span_s == 15.0
    assert trace.skipped_rows == 0


def test_workers_column_sets_the_gang_shape() -> None:
    trace = parse_trace(lines("job_id,submit_s,duration_s,num_gpus,workers\nj,0,1,12,3\n"))
    assert (trace.jobs[0].workers, trace.jobs[0].gpus_per_worker) == (3, 4)


def test_gang_shape_follows_the_largest_node_size() -> None:
    # 12 GPUs with at most 8 per worker: 2 workers of 6 (not 8 + 4), so GPU-hours are kept.
    trace = parse_trace(lines(f"{HEADER}\nj,0,1,12\n"), max_gpus_per_worker=8)
    assert (trace.jobs[0].workers, trace.jobs[0].gpus_per_worker) == (2, 6)
    trace = parse_trace(lines(f"{HEADER}\nj,0,1,12\n"), max_gpus_per_worker=16)
    assert (trace.jobs[0].workers, trace.jobs[0].gpus_per_worker) == (1, 12)


def test_blank_lines_are_not_rows() -> None:
    trace = parse(f"{HEADER}\n\na,0,1,1\n\n")
    assert len(trace.jobs) == 1
    assert trace.skipped_rows == 0


@pytest.mark.parametrize(
    ("row", "column", "shown"),
    [
        (",0,10,1", "job_id", "must not be empty"),
        ("a,soon,10,1", "submit_s", "'soon'"),
        ("a,-1,10,1", "submit_s", "'-1'"),
        ("a,,10,1", "submit_s", "''"),
        ("a,nan,10,1", "submit_s", "'nan'"),
        ("a,inf,10,1", "submit_s", "'inf'"),
        ("a,0,0,1", "duration_s", "'0'"),
        ("a,0,-5,1", "duration_s", "'-5'"),
        ("a,0,ten,1", "duration_s", "'ten'"),
        ("a,0,10,0", "num_gpus", "'0'"),
        ("a,0,10,1.5", "num_gpus", "'1.5'"),
        ("a,0,10,two", "num_gpus", "'two'"),
        ("a,0,10,1e400", "num_gpus", "'1e400'"),
        ("a,0,10,-2", "num_gpus", "'-2'"),
    ],
)
def test_malformed_value_fails_with_line_and_column(row: str, column: str, shown: str) -> None:
    with pytest.raises(TraceError) as err:
        parse(f"{HEADER}\nok,0,10,1\n{row}\n")
    message = str(err.value)
    assert message.startswith("jobs.csv:3: ")  # the header is line 1, the bad row line 3
    assert f"column '{column}'" in message
    assert shown in message
    assert "--skip-invalid" in message


@pytest.mark.parametrize(
    ("extra_header", "extra_value", "column", "shown"),
    [
        ("workers", "0", "workers", "'0'"),
        ("workers", "3", "workers", "3 workers cannot share 4 GPUs equally"),
        ("workers", "x", "workers", "'x'"),
        ("priority", "1.5", "priority", "'1.5'"),
        ("priority", "high", "priority", "'high'"),
    ],
)
def test_malformed_optional_column_fails_with_line_and_column(
    extra_header: str, extra_value: str, column: str, shown: str
) -> None:
    with pytest.raises(TraceError) as err:
        parse(f"{HEADER},{extra_header}\na,0,10,4,{extra_value}\n")
    assert str(err.value).startswith("jobs.csv:2: ")
    assert f"column '{column}'" in str(err.value)
    assert shown in str(err.value)


def test_wrong_number_of_fields_names_the_line() -> None:
    with pytest.raises(TraceError, match=r"^jobs\.csv:4: expected 4 columns, got 3"):
        parse(f"{HEADER}\na,0,1,1\nb,0,1,1\nc,0,1\n")


def test_duplicate_job_id_names_both_lines() -> None:
    with pytest.raises(TraceError) as err:
        parse(f"{HEADER}\na,0,1,1\nb,0,1,1\na,5,1,1\n")
    assert str(err.value).startswith("jobs.csv:4: column 'job_id': 'a' already used on line 2")


def test_empty_file_fails_and_says_what_a_header_needs() -> None:
    with pytest.raises(TraceError, match=r"^jobs\.csv: empty file; expected a header with job_id"):
        parse("")


def test_header_missing_columns_names_them() -> None:
    with pytest.raises(TraceError) as err:
        parse("job_id,submit,duration_s\na,0,1\n")
    message = str(err.value)
    assert message.startswith("jobs.csv:1: header lacks column(s) submit_s, num_gpus")
    assert "got job_id, submit, duration_s" in message


def test_header_with_a_repeated_column_fails() -> None:
    with pytest.raises(TraceError, match=r"^jobs\.csv:1: column\(s\) submit_s appear more"):
        parse("job_id,submit_s,duration_s,num_gpus,submit_s\na,0,1,1,2\n")


def test_header_only_has_no_jobs() -> None:
    with pytest.raises(TraceError, match=r"^jobs\.csv: no valid job rows"):
        parse(f"{HEADER}\n")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column_name() -> None:
    # Spreadsheet programs write one; the file is still a valid trace.
    trace = parse(f"\ufeff{HEADER}\na,0,1,1\n")
    assert [g.job_id for g in trace.jobs] == ["a"]


def test_csv_level_error_names_the_line() -> None:
    huge = "x" * 200_000  # above the csv module's field size limit
    with pytest.raises(TraceError, match=r"^jobs\.csv:3: not valid CSV"):
        parse(f"{HEADER}\na,0,1,1\n{huge},0,1,1\n")


def test_skip_invalid_counts_each_skipped_row_and_keeps_the_reasons() -> None:
    trace = parse(
        f"{HEADER}\na,0,1,1\nb,0,0,1\nc,x,1,1\nd,5,1,2\na,6,1,1\n",
        skip_invalid=True,
    )
    assert [g.job_id for g in trace.jobs] == ["a", "d"]
    assert trace.skipped_rows == 3
    examples = trace.skipped_examples
    assert [e.split(":")[1] for e in examples] == ["3", "4", "6"]
    assert "column 'duration_s'" in examples[0]
    assert "column 'submit_s'" in examples[1]
    assert "already used on line 2" in examples[2]


def test_skip_invalid_keeps_only_the_first_reasons_but_counts_all() -> None:
    bad = "".join(f"bad{i},0,0,1\n" for i in range(MAX_REPORTED_ERRORS + 5))
    trace = parse(f"{HEADER}\nok,0,1,1\n{bad}", skip_invalid=True)
    assert trace.skipped_rows == MAX_REPORTED_ERRORS + 5
    assert len(trace.skipped_examples) == MAX_REPORTED_ERRORS


def test_skip_invalid_with_no_valid_row_still_fails() -> None:
    with pytest.raises(TraceError, match="no valid job rows"):
        parse(f"{HEADER}\na,0,0,1\n", skip_invalid=True)


_GOOD = st.tuples(st.integers(0, 10_000), st.integers(1, 10_000), st.integers(1, 64))
_BAD_ROWS = st.sampled_from(["{id},-1,1,1", "{id},0,0,1", "{id},0,1,0", "{id},0,1", "{id},a,1,1"])


@settings(max_examples=75, deadline=None)
@given(st.lists(st.one_of(_GOOD, _BAD_ROWS), min_size=1, max_size=30))
def test_every_row_is_either_a_job_or_counted_as_skipped(
    rows: list[tuple[int, int, int] | str],
) -> None:
    body = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            body.append(row.format(id=f"j{i}"))
        else:
            body.append(f"j{i},{row[0]},{row[1]},{row[2]}")
    text = HEADER + "\n" + "\n".join(body) + "\n"
    good = sum(1 for r in rows if not isinstance(r, str))
    if good == 0:
        with pytest.raises(TraceError):
            parse(text, skip_invalid=True)
        return
    trace = parse(text, skip_invalid=True)
    assert len(trace.jobs) == good
    assert trace.skipped_rows == len(rows) - good
    if good < len(rows):
        with pytest.raises(TraceError):
            parse(text)
