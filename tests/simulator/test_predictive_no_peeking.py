"""The predictive policy sees only what a controller would have seen at that moment.

Replaying a trace, and the same trace cut at time C (every job submitted after C removed),
must give the same decisions, forecasts and capacity before C: nothing from the future
rows can have reached the forecaster or the policy.
"""

from __future__ import annotations

import math
from dataclasses import replace

from dlscaler.config import DEFAULT_POOL, PolicyConfig
from dlscaler.model import Forecast, Gang
from dlscaler.trace import parse_trace
from simulator.forecasting import PredictorForecast, default_forecast_factory
from simulator.runner import SimOptions, SimResult, simulate
from simulator.synth import SynthSpec, generate, to_csv

DAY_S = 86_400.0


def _run(trace_text: str, cut_s: float | None) -> SimResult:
    trace = parse_trace(trace_text.splitlines(), source="synthetic")
    if cut_s is not None:
        trace = replace(trace, jobs=tuple(j for j in trace.jobs if j.submit_s <= cut_s))
    config = PolicyConfig(policy="predictive")
    source = default_forecast_factory(config)
    assert isinstance(source, PredictorForecast)
    return simulate(
        trace,
        [DEFAULT_POOL],
        config,
        options=SimOptions(seed=7, keep_reasons=100_000),
        forecast_source=source,
    )


def _before(result: SimResult, cut_s: float) -> tuple[list[str], list[tuple[float, ...]]]:
    reasons = [r for r in result.reasons if float(r.split()[0][2:-1]) < cut_s]
    tl = result.timeline
    samples = [
        (t, d, p, f50, f90)
        for t, d, p, f50, f90 in zip(
            tl.t_s,
            tl.demand_gpus,
            tl.provisioned_gpus,
            tl.forecast_p50,
            tl.forecast_p90,
            strict=True,
        )
        if t < cut_s
    ]
    return reasons, samples


def test_future_trace_rows_change_nothing_before_they_arrive() -> None:
    text = to_csv(generate(SynthSpec(jobs=1500, days=5.0, seed=11, median_duration_s=1200)))
    cut_s = 4.2 * DAY_S
    full = _run(text, None)
    cut = _run(text, cut_s)

    full_reasons, full_samples = _before(full, cut_s)
    cut_reasons, cut_samples = _before(cut, cut_s)
    # The forecast was trusted and used before the cut (otherwise this proves little).
    assert any(math.isfinite(s[4]) for s in full_samples)
    assert any("forecast p90" in r for r in full_reasons)
    assert full_reasons == cut_reasons
    assert len(full_samples) == len(cut_samples) > 1000
    for a, b in zip(full_samples, cut_samples, strict=True):
        assert a[:3] == b[:3]
        assert a[3] == b[3] or (math.isnan(a[3]) and math.isnan(b[3]))
        assert a[4] == b[4] or (math.isnan(a[4]) and math.isnan(b[4]))
    # And the runs do differ after the cut: the later jobs exist in one of them only.
    assert len(full.jobs) > len(cut.jobs)


class RecordingSource:
    """The default forecaster, recording the arrivals it is shown (a stateful fake of what
    a controller's arrival log would see)."""

    def __init__(self, config: PolicyConfig) -> None:
        inner = default_forecast_factory(config)
        assert isinstance(inner, PredictorForecast)
        self.inner = inner
        self.arrivals: list[tuple[str, float, float | None]] = []

    def observe(self, now_s: float, demand_gpus: float) -> None:
        self.inner.observe(now_s, demand_gpus)

    def observe_arrival(self, gang: Gang) -> None:
        self.arrivals.append((gang.job_id, gang.submit_s, gang.duration_s))
        self.inner.observe_arrival(gang)

    def forecast(self, now_s: float) -> Forecast:
        return self.inner.forecast(now_s)


def test_arrivals_are_shown_without_durations_and_a_warm_start_is_not_an_arrival() -> None:
    rows = ["job_id,submit_s,duration_s,num_gpus"]
    rows += [f"snap{i},0,7200,8" for i in range(5)]  # the cluster as the trace began
    rows += [f"later{i},{600 * (i + 1)},900,8" for i in range(3)]
    trace = parse_trace(rows, source="snapshot")
    config = PolicyConfig(policy="predictive")
    for warm, first_seen in ((True, "later0"), (False, "snap0")):
        source = RecordingSource(config)
        simulate(
            trace,
            [DEFAULT_POOL],
            config,
            options=SimOptions(seed=1, warm_start=warm),
            forecast_source=source,
        )
        assert source.arrivals[0][0] == first_seen
        assert all(duration is None for _, _, duration in source.arrivals)
        assert len(source.arrivals) == (3 if warm else 8)
