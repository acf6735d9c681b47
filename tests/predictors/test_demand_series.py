from __future__ import annotations

import numpy as np
import pytest

from dlscaler.model import Gang
from predictors.base import Series
from predictors.series import (
    ARRIVED_GPUS,
    ARRIVED_JOBS,
    age_covariate_name,
    demand_series,
    fill_gaps,
)


def gang(job_id: str, submit_s: float, duration_s: float | None, gpus: int) -> Gang:
    return Gang(job_id, submit_s, workers=1, gpus_per_worker=gpus, duration_s=duration_s)


def test_values_are_the_peak_demand_within_each_step():
    jobs = [gang("a", 0, 250, 2), gang("b", 120, 60, 4), gang("c", 310, 100, 1)]
    series = demand_series(jobs, 100.0)
    # 0-100: a=2; 100-200: a+b=6 at 120; 200-300: a until 250 -> 2; 300-400: c from 310 -> 1.
    np.testing.assert_array_equal(series.values, [2, 6, 2, 1, 1])
    assert series.start_s == 0.0


def test_a_job_ending_when_another_starts_never_overlaps_it():
    jobs = [gang("a", 0, 100, 3), gang("b", 100, 100, 3)]
    np.testing.assert_array_equal(demand_series(jobs, 50.0).values, [3, 3, 3, 3])


def test_jobs_without_a_duration_demand_until_the_end():
    jobs = [gang("a", 0, None, 2), gang("b", 0, 300, 1)]
    series = demand_series(jobs, 100.0, end_s=500.0)
    np.testing.assert_array_equal(series.values, [3, 3, 3, 2, 2])


def test_covariates_count_arrivals_and_running_gpus_by_age():
    jobs = [gang("a", 0, 10_000, 2), gang("b", 650, 1_000, 4), gang("c", 660, 30, 1)]
    series = demand_series(jobs, 300.0, end_s=3_000.0)
    np.testing.assert_array_equal(series.exog[ARRIVED_JOBS][:3], [1, 0, 2])
    np.testing.assert_array_equal(series.exog[ARRIVED_GPUS][:3], [2, 0, 5])
    # End of step 2 (t=900): a is 900 s old (10-20 min), b 250 s old (2-5 min), c is gone.
    assert series.exog[age_covariate_name(600)][2] == 2
    assert series.exog[age_covariate_name(120)][2] == 4
    assert series.exog[age_covariate_name(0)][2] == 0
    # The age buckets add up to the demand at each step's end.
    ends = sum(series.exog[age_covariate_name(a)] for a in (0, 120, 300, 600, 1200, 1800))
    assert ends[2] == 6


def test_fill_gaps_carries_the_last_good_value_forward():
    series = Series(np.array([np.nan, 2.0, np.nan, np.inf, -1.0, 5.0]), 60.0)
    np.testing.assert_array_equal(fill_gaps(series).values, [0, 2, 2, 2, 0, 5])


def test_misaligned_covariate_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="'arrived_gpus'"):
        Series(np.zeros(3), 60.0, exog={"arrived_gpus": np.zeros(2)})


def test_bundled_trace_mean_demand_matches_the_data_readme():
    from pathlib import Path

    from dlscaler.trace import parse_trace

    path = Path(__file__).parents[2] / "data" / "alibaba_openb_2023_jobs.csv"
    with path.open() as fh:
        trace = parse_trace(fh, source=str(path))
    series = demand_series(trace.jobs, 60.0, covariates=False)
    # data/README: peak 70, mean 16.6 concurrent GPUs (if every job started at submit).
    assert series.values.max() == 70
    assert abs(series.values.mean() - 16.6) < 0.2


def test_no_jobs_is_no_demand_not_an_error():
    series = demand_series([], 300.0)
    assert len(series) == 1 and series.values.tolist() == [0.0]
    assert all(column.tolist() == [0.0] for column in series.exog.values())
