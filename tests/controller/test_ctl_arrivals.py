"""Arrival scenarios in the controller: the forecast a pass hands to ``decide()`` carries the
gangs of past lead-time windows exactly as the simulator's forecaster builds them; objects
re-listed every pass (and after a restart) are counted once; the arrivals are kept in the
state ConfigMap within a cap."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest
from ctl_memory_api import MemoryApi
from ctl_objects import T0, dljob

from controller.arrivals import (
    MAX_PERSISTED,
    MAX_TEXT_CHARS,
    ArrivalLog,
    decode,
    decode_record,
    encode,
    signature,
    window_s,
)
from controller.clock import format_time
from controller.dljob import parse_dljob
from controller.dlservice import SERVING_QUEUE, parse_dlservice
from controller.forecasting import Forecasting
from controller.kube import Kube
from controller.state import ARRIVALS_KEY, KEY, DemandHistory, StateStore
from dlscaler.config import PolicyConfig, PoolModel, parse_policy_config
from dlscaler.model import Gang
from dlscaler.policy.forecast_needs import lead_time_s
from predictors.arrivals import ArrivalWindows
from simulator.forecasting import PredictorForecast, default_forecast_factory

DAY = 86_400.0
POOLS = [
    PoolModel.model_validate(
        {"name": "a100", "gpuType": "a100", "gpusPerNode": 8, "maxNodes": 20,
         "pricePerHour": 32.0, "provisioningDelaySeconds": 420}
    ),
    PoolModel.model_validate(
        {"name": "any", "gpusPerNode": 4, "maxNodes": 20, "pricePerHour": 9.0,
         "provisioningDelaySeconds": 180}
    ),
]  # fmt: skip


def predictive(**predictive: Any) -> PolicyConfig:
    return parse_policy_config(
        {"policy": "predictive", "predictive": {"leadTimeFactor": 1.5, **predictive}}
    )


def dlservice(
    name: str, *, replicas: int, created_s: float, uid: str = "", gpus: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "dlscaler.io/v1alpha1",
        "kind": "DLService",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"uid-svc-{name}",
            "generation": 1,
            "creationTimestamp": format_time(created_s),
        },
        "spec": {
            "replicas": replicas,
            "minReplicas": 1,
            "maxReplicas": 16,
            "gpusPerReplica": gpus,
            "gpuType": "a100",
            "template": {"spec": {"containers": [{"name": "srv", "image": "srv:1"}]}},
        },
    }


def job_objects(gangs: list[Gang]) -> list[dict[str, Any]]:
    """The DLJobs whose gangs are ``gangs`` (job ids ``ns/<name>``)."""
    out = []
    for g in gangs:
        name = g.job_id.split("/", 1)[1]
        if g.attributes.get("elastic"):
            obj = dljob(name, workers=None, min_workers=g.workers, max_workers=g.workers * 2,
                        gpus_per_worker=g.gpus_per_worker, gpu_type=g.gpu_type,
                        priority=g.priority, queue=g.queue, created_s=g.submit_s)  # fmt: skip
        else:
            obj = dljob(name, workers=g.workers, gpus_per_worker=g.gpus_per_worker,
                        gpu_type=g.gpu_type, priority=g.priority, queue=g.queue,
                        created_s=g.submit_s)  # fmt: skip
        out.append(obj)
    return out


def arrivals(days: float, seed: int = 7) -> list[Gang]:
    """Gangs submitted over ``days`` (whole seconds, as creationTimestamps are), busier by
    day: shapes and types as a mixed cluster has them."""
    rng = random.Random(seed)
    out = []
    t = T0
    i = 0
    while t < T0 + days * DAY:
        hour = ((t - T0) % DAY) / 3600
        t += round(rng.expovariate(1 / (240 if 8 <= hour < 20 else 1200))) + 1
        workers, gpw = rng.choice([(1, 1), (1, 2), (1, 8), (2, 8), (4, 8), (3, 4)])
        elastic = rng.random() < 0.1
        out.append(
            Gang(
                job_id=f"ns/j{i}",
                submit_s=float(t),
                workers=workers,
                gpus_per_worker=gpw,
                gpu_type=rng.choice(["a100", ""]),
                priority=rng.choice([0, 0, 5]),
                queue=rng.choice(["default", "research"]),
                attributes={"elastic": "1"} if elastic else {},
            )
        )
        i += 1
    return out


def demand_history(until_s: float) -> DemandHistory:
    """Enough demand history for a forecast (the scenarios ride on it)."""
    h = DemandHistory(step_s=300, max_points=100_000)
    t = T0
    while t <= until_s:
        h.observe(t, 64 + 32 * (((t - T0) % DAY) > DAY / 3))
        t += 300
    return h


def simulator_scenarios(
    gangs: list[Gang], config: PolicyConfig, nows: list[float]
) -> list[tuple[tuple[Gang, ...], ...]]:
    """What ``simulator.runner`` hands its forecaster (each gang as it is submitted, duration
    hidden), and the scenarios its forecast carries at each of ``nows``."""
    source = default_forecast_factory(config, lead_time_s(config, POOLS))
    assert isinstance(source, PredictorForecast)
    out = []
    pending = iter(gangs)
    upcoming = next(pending, None)
    t = T0
    for now in nows:
        while t <= now:
            source.observe(t, 64.0)
            t += 300
        while upcoming is not None and upcoming.submit_s <= now:
            source.observe_arrival(upcoming)
            upcoming = next(pending, None)
        out.append(source.forecast(now).arrival_scenarios)
    return out


def test_the_controllers_forecast_carries_the_scenarios_the_simulators_would() -> None:
    config = predictive()
    gangs = arrivals(days=3)
    objects = job_objects(gangs)
    nows = [T0 + 2 * DAY + 3_333.0, T0 + 2.5 * DAY + 17.0, T0 + 3 * DAY - 1]
    expected = simulator_scenarios(gangs, config, nows)

    f = Forecasting(config, background=False)
    f.update(demand_history(nows[-1]), nows[-1])  # a demand forecast exists
    rng = random.Random(3)
    lagging: list[dict[str, Any]] = []  # jobs a lagging watch delivers one pass late
    listed: list[dict[str, Any]] = []
    created = iter(objects)
    nxt = next(created, None)
    got: list[tuple[tuple[Gang, ...], ...]] = []
    for now in nows:
        t = T0 if not got else nows[len(got) - 1]
        while t < now:
            t = min(now, t + 300.0)  # a pass every five minutes
            listed += lagging
            lagging = []
            while nxt is not None and parse_dljob(nxt).created_s <= t:
                (lagging if rng.random() < 0.05 else listed).append(nxt)
                nxt = next(created, None)
            # Every pass lists every job again, in the API server's order (by name).
            jobs = [parse_dljob(o) for o in sorted(listed, key=lambda o: o["metadata"]["name"])]
            f.observe_arrivals(jobs, [], t)
        if lagging:  # the last pass before ``now`` sees them too
            listed += lagging
            lagging = []
            f.observe_arrivals([parse_dljob(o) for o in listed], [], now)
        got.append(f.forecast(now, POOLS).arrival_scenarios)

    assert window_s(config, POOLS) == lead_time_s(config, POOLS) == 1.5 * 420
    for scenarios, want in zip(got, expected, strict=True):
        assert len(scenarios) >= 24 + 13  # 24 recent windows and 13 a day for the days seen
        assert scenarios == want
        assert any(len(s) >= 2 for s in scenarios)
        assert sum(len(s) for s in scenarios) > 10  # not a comparison of empty windows


def test_a_service_counts_its_replicas_at_creation_then_each_scale_up_but_no_scale_down() -> None:
    log = ArrivalLog()
    created = T0 + 100
    svc = dlservice("llm", replicas=2, created_s=created)
    log.observe_cluster([], [parse_dlservice(svc)], T0 + 200)
    log.observe_cluster([], [parse_dlservice(svc)], T0 + 260)
    assert [(a.time_s, a.gang.workers, a.gang.gpus_per_worker, a.gang.gpu_type)
            for a in log.arrivals] == [(created, 1, 2, "a100")] * 2  # fmt: skip
    assert {a.gang.queue for a in log.arrivals} == {SERVING_QUEUE}

    svc["spec"]["replicas"] = 5
    assert log.observe_cluster([], [parse_dlservice(svc)], T0 + 320) == 3
    svc["spec"]["replicas"] = 1
    assert log.observe_cluster([], [parse_dlservice(svc)], T0 + 380) == 0
    svc["spec"]["replicas"] = 3
    assert log.observe_cluster([], [parse_dlservice(svc)], T0 + 440) == 2
    assert log.observe_cluster([], [parse_dlservice(svc)], T0 + 500) == 0
    assert [a.time_s for a in log.arrivals] == [created] * 2 + [T0 + 320] * 3 + [T0 + 440] * 2


def test_re_listing_the_same_objects_does_not_count_them_again() -> None:
    log = ArrivalLog()
    objects = job_objects(arrivals(days=0.5))
    jobs = [parse_dljob(o) for o in objects]
    svc = parse_dlservice(dlservice("llm", replicas=3, created_s=T0 + 50))
    now = T0 + DAY / 2
    first = log.observe_cluster(jobs, [svc], now)
    assert first == len(jobs) + 3
    for k in range(5):  # passes that list the same objects
        assert log.observe_cluster(jobs, [svc], now + 60 * k) == 0
    # A job that finished and was deleted stays an arrival; a new one is one more.
    assert log.observe_cluster([*jobs[1:], parse_dljob(dljob("late", created_s=now))], [svc],
                               now + 400) == 1  # fmt: skip
    assert len(log) == first + 1
    # The same name created again is a new object (a new uid): a new arrival.
    again = dljob("late", created_s=now + 500)
    again["metadata"]["uid"] = "uid-ns-late-2"
    assert log.observe_cluster([parse_dljob(again)], [svc], now + 560) == 1


def test_a_job_seen_late_lands_in_the_windows_of_its_creation() -> None:
    log = ArrivalLog()
    early = parse_dljob(dljob("early", workers=4, created_s=T0 + 1_000))
    later = parse_dljob(dljob("later", workers=1, created_s=T0 + 2_000))
    log.observe_cluster([later], [], T0 + 2_010)
    log.scenarios(T0 + 2_010, 1_500)  # the windows exist before the late one is seen
    log.observe_cluster([later, early], [], T0 + 2_070)
    in_order = ArrivalWindows(1_500, step_s=300)
    in_order.observe(early.gang())
    in_order.observe(later.gang())
    windows = log.scenarios(T0 + 2_400, 1_500)
    assert windows == in_order.scenarios(T0 + 2_400)
    assert (early.gang(), later.gang()) in windows
    assert [a.gang.job_id for a in log.arrivals] == ["ns/early", "ns/later"]


def test_scenarios_ride_only_on_a_demand_forecast_and_a_positive_arrival_quantile() -> None:
    jobs = [parse_dljob(o) for o in job_objects(arrivals(days=1.2))]
    now = T0 + 1.2 * DAY
    f = Forecasting(predictive(), background=False)
    f.observe_arrivals(jobs, [], now)
    assert f.forecast(now, POOLS).arrival_scenarios == ()  # no history: reactive anyway
    f.update(demand_history(now), now)
    assert f.forecast(now, POOLS).quantiles
    assert f.forecast(now, POOLS).arrival_scenarios

    off = Forecasting(predictive(arrivalQuantile=0.0), background=False)
    off.observe_arrivals(jobs, [], now)
    off.update(demand_history(now), now)
    assert off.forecast(now, POOLS).quantiles
    assert off.forecast(now, POOLS).arrival_scenarios == ()
    reactive = Forecasting(PolicyConfig(policy="reactive"), background=False)
    reactive.observe_arrivals(jobs, [], now)
    assert reactive.arrivals is None and reactive.arrivals_record(now) is None


def test_the_window_follows_the_nodepools_lead_time() -> None:
    config = predictive()
    log = ArrivalLog()
    log.observe(Gang("ns/a", T0, 1, 8), "a")
    assert window_s(config, POOLS) == 630.0
    assert window_s(config, POOLS[1:]) == 270.0
    assert window_s(predictive(leadTimeFactor=0.0), POOLS) == 60.0  # a minute at least
    assert window_s(config, []) == 450.0  # no pool yet: the default delay, 300 s
    # A change of pools changes the windows: the arrival at T0 is in the latest window of
    # 630 s ending at T0 + 500, not in the latest of 270 s.
    assert log.scenarios(T0 + 500, 630.0)[0] == (Gang("ns/a", T0, 1, 8),)
    assert log.scenarios(T0 + 500, 270.0)[0] == ()


# --- persistence ---------------------------------------------------------------------------


def store_in(api: MemoryApi) -> StateStore:
    return StateStore(cast(Kube, api), "dlscaler-system")


def shapes(scenarios: tuple[tuple[Gang, ...], ...]) -> list[list[tuple[Any, ...]]]:
    return [sorted(signature(g) for g in s) for s in scenarios]


def test_saved_arrivals_survive_a_restart_and_listed_objects_are_not_counted_twice() -> None:
    config = predictive()
    gangs = arrivals(days=2)
    objects = job_objects(gangs)
    now = T0 + 2 * DAY
    svc = dlservice("llm", replicas=2, created_s=T0 + 600)
    before = Forecasting(config, background=False)
    before.observe_arrivals([parse_dljob(o) for o in objects], [parse_dlservice(svc)], now)
    history = demand_history(now)
    api = MemoryApi()
    store = store_in(api)
    store.load(step_s=300, max_points=100_000)
    store.save(history, arrivals=before.arrivals_record(now))
    saved = api.peek(store.path)
    assert saved is not None and set(saved["data"]) == {KEY, ARRIVALS_KEY}

    # The restarted controller: most finished jobs were deleted meanwhile; the rest and the
    # service are listed again, along with a job created while no controller ran.
    later = now + 120
    still_listed = [o for i, o in enumerate(objects) if i % 10 == 0]
    new_job = dljob("while-down", workers=2, created_s=now + 30)
    after = Forecasting(config, background=False)
    restarted = store_in(api)
    assert restarted.load(step_s=300, max_points=100_000).values == history.values
    after.restore_arrivals(restarted.arrivals_text, later)
    assert after.arrivals is not None and before.arrivals is not None
    assert len(after.arrivals) == len(before.arrivals) == len(gangs) + 2
    jobs = [parse_dljob(o) for o in [*still_listed, new_job]]
    for k in range(3):
        after.observe_arrivals(jobs, [parse_dlservice(svc)], later + 60 * k)
    assert len(after.arrivals) == len(gangs) + 3  # only the job created while down is new
    # A scale-up after the restart is counted once, for the replicas it adds.
    svc["spec"]["replicas"] = 3
    after.observe_arrivals(jobs, [parse_dlservice(svc)], later + 300)
    after.observe_arrivals(jobs, [parse_dlservice(svc)], later + 360)
    assert len(after.arrivals) == len(gangs) + 4

    # The scenarios are the ones a controller that never restarted has (in shape and time).
    never = ArrivalLog()
    two = parse_dlservice(dlservice("llm", replicas=2, created_s=T0 + 600))
    never.observe_cluster([parse_dljob(o) for o in objects], [two], now)
    never.observe_cluster([parse_dljob(new_job)], [two], later)
    assert shapes(after.arrivals.scenarios(now + 200, 630)) == shapes(
        never.scenarios(now + 200, 630)
    )
    # Restoring the same record again (leadership regained) adds nothing.
    after.restore_arrivals(restarted.arrivals_text, later + 400)
    assert len(after.arrivals) == len(gangs) + 4


def test_a_restore_after_a_failed_first_read_does_not_repeat_the_jobs_already_seen() -> None:
    objects = job_objects(arrivals(days=0.3))
    now = T0 + 0.3 * DAY
    first = ArrivalLog()
    first.observe_cluster([parse_dljob(o) for o in objects], [], now)
    text = first.encode(now)
    second = ArrivalLog()  # its first read failed: it saw the cluster before the record
    second.observe_cluster([parse_dljob(o) for o in objects[:20]], [], now + 60)
    assert second.restore(text, now + 120) == len(objects) - 20
    assert len(second) == len(objects)
    second.observe_cluster([parse_dljob(o) for o in objects], [], now + 180)
    assert len(second) == len(objects)


def test_arrivals_older_than_eight_days_are_neither_kept_nor_saved() -> None:
    log = ArrivalLog()
    now = T0 + 10 * DAY
    old = parse_dljob(dljob("old", created_s=now - 8 * DAY - 1))
    recent = parse_dljob(dljob("recent", created_s=now - 8 * DAY + 1))
    assert log.observe_cluster([old, recent], [], now) == 1
    arrivals_saved, _ = decode(log.encode(now + 2))
    assert arrivals_saved == []  # eight days have passed for it too by now + 2


def test_the_saved_record_keeps_the_latest_arrivals_within_the_count_cap() -> None:
    log = ArrivalLog(max_persisted=100)
    for i in range(150):
        log.observe(Gang(f"ns/j{i}", T0 + i, 1 + i % 3, 8, "a100"), f"j{i}")
    saved, _ = decode(log.encode(T0 + 200))
    assert [a.time_s for a in saved] == [T0 + i for i in range(50, 150)]
    assert [a.gang.workers for a in saved] == [1 + i % 3 for i in range(50, 150)]
    assert len(log) == 150  # the cap is on what is saved, not on what is kept in memory


def test_the_saved_record_keeps_the_latest_arrivals_within_the_size_cap() -> None:
    rng = random.Random(5)
    log = ArrivalLog(max_text_chars=20_000)
    for i in range(20_000):
        gang = Gang(f"ns/j{i}", T0 + i * 7.123, rng.randint(1, 4096), rng.randint(1, 16),
                    f"type-{rng.randint(0, 40)}")  # fmt: skip
        log.observe(gang, f"j{i}")
    text = log.encode(T0 + 20_000 * 7.2)
    saved, _ = decode(text)
    assert len(text) <= 20_000
    assert 0 < len(saved) < 20_000
    assert [signature(a.gang) for a in saved] == [
        signature(a.gang) for a in log.arrivals[-len(saved) :]
    ]


def test_at_the_cap_the_state_configmap_stays_below_900_kib() -> None:
    """The worst the record can be: the count cap of arrivals at odd milliseconds and of
    every shape, beside two weeks of demand that does not compress."""
    rng = random.Random(11)
    now = T0 + 8 * DAY
    log = ArrivalLog()
    start = now - 8 * DAY + 1
    for i in range(MAX_PERSISTED):
        t = start + i * (8 * DAY - 2) / MAX_PERSISTED + rng.random()
        log.observe(Gang(f"ns/j{i}", t, rng.randint(1, 4096), rng.randint(1, 16),
                         f"type-{rng.randint(0, 300)}"), f"j{i}")  # fmt: skip
    text = log.encode(now)
    assert len(text) <= MAX_TEXT_CHARS
    demand = DemandHistory(step_s=60, max_points=20_160)
    for i in range(20_160):
        demand.observe(now - 14 * DAY + i * 60, rng.random() * 10_000)
    total = len(text) + len(demand.encode())
    assert total < 900 * 1024


def test_a_typical_busy_week_fits_whole() -> None:
    rng = random.Random(2)
    now = T0 + 8 * DAY
    arrivals_ = [Gang(f"ns/j{i}", float(round(now - 8 * DAY + 1 + i * 6.9)),
                      *rng.choice([(1, 1), (1, 8), (2, 8), (4, 8)]), rng.choice(["a100", ""]))
                 for i in range(MAX_PERSISTED)]  # fmt: skip
    log = ArrivalLog()
    for g in arrivals_:
        log.observe(g, g.job_id)
    text = log.encode(now)
    assert json.loads(text)["count"] == MAX_PERSISTED
    assert len(text) < MAX_TEXT_CHARS / 2


def test_a_record_this_version_cannot_read_is_refused_with_its_version() -> None:
    with pytest.raises(ValueError, match="format 2"):
        decode(json.dumps({"version": 2}))
    with pytest.raises(ValueError, match="unreadable"):
        decode(json.dumps({"version": 1, "count": 3}))
    good = encode([], {})
    assert decode(good) == ([], {})
    f = Forecasting(predictive(), background=False)
    f.restore_arrivals("{not json", T0)  # logged and skipped: the controller goes on
    assert f.arrivals is not None and len(f.arrivals) == 0


def test_a_restored_arrival_recognised_as_a_dljob_is_forgotten_with_its_uid() -> None:
    objects = job_objects(arrivals(days=0.2))
    now = T0 + 0.2 * DAY
    first = ArrivalLog()
    first.observe_cluster([parse_dljob(o) for o in objects], [], now)
    restarted = ArrivalLog()
    restarted.restore(first.encode(now), now + 60)
    jobs = [parse_dljob(o) for o in objects]
    assert restarted.observe_cluster(jobs, [], now + 120) == 0  # all recognised
    assert all(restarted.seen(j.uid) for j in jobs)
    # Nine days on, the arrivals and the uids they were recognised as are both gone.
    restarted.prune(now + 9 * DAY)
    assert len(restarted) == 0
    assert not any(restarted.seen(j.uid) for j in jobs)


def test_memory_keeps_the_latest_arrivals_and_forgotten_ones_do_not_come_back() -> None:
    gangs = arrivals(days=1.0)
    objects = job_objects(gangs)
    jobs = [parse_dljob(o) for o in objects]
    now = T0 + 1.0 * DAY
    log = ArrivalLog(max_in_memory=100)
    log.observe_cluster(jobs, [], now)
    assert len(log) == 100
    assert [a.time_s for a in log.arrivals] == [g.submit_s for g in gangs[-100:]]
    for k in range(3):  # the same objects listed again: nothing re-added
        assert log.observe_cluster(jobs, [], now + 60 * (k + 1)) == 0
    assert len(log) == 100
    # The windows that began at or before the newest forgotten arrival are not samples.
    window = 600.0
    forgotten = gangs[-101].submit_s
    full = ArrivalLog()
    full.observe_cluster(jobs, [], now)
    assert 0 < len(log.scenarios(now, window)) < len(full.scenarios(now, window))
    expected = [
        s
        for s, start in zip(
            full.scenarios(now, window), window_starts(now, window, gangs[0].submit_s), strict=True
        )
        if start > forgotten
    ]
    assert shapes(log.scenarios(now, window)) == shapes(tuple(expected))


def window_starts(now: float, window: float, first_s: float) -> list[float]:
    """The start of each window ``ArrivalWindows`` samples, in its order (its defaults:
    24 recent windows, 7 days of 13 windows a step apart), after the history began (a step
    before the first arrival ``first_s``)."""
    starts = [now - window - j * 300.0 for j in range(24)]
    for d in range(1, 8):
        starts += [
            now - d * DAY + k * 300.0
            for k in range(-6, 7)
            if now - d * DAY + k * 300.0 + window <= now
        ]
    return [s for s in starts if s >= first_s - 300.0]


def test_a_capped_record_keeps_old_windows_out_after_a_restart() -> None:
    gangs = arrivals(days=1.5)
    objects = job_objects(gangs)
    now = T0 + 1.5 * DAY
    before = ArrivalLog(max_persisted=150)
    before.observe_cluster([parse_dljob(o) for o in objects], [], now)
    text = before.encode(now)
    saved, _, until, _ = decode_record(text)
    assert len(saved) == 150 and until == gangs[-151].submit_s
    after = ArrivalLog()
    after.restore(text, now + 60)
    # The oldest DLJob is still listed (its TTL has not passed); the rest were deleted.
    # Counting it would make the windows between it and the record's first arrival samples
    # of a day with one job in it.
    assert after.observe_cluster([parse_dljob(objects[0])], [], now + 120) == 0
    window = 600.0
    kept = [
        s
        for s, start in zip(
            before.scenarios(now, window),
            window_starts(now, window, gangs[0].submit_s),
            strict=True,
        )
        if start > until
    ]
    assert shapes(after.scenarios(now, window)) == shapes(tuple(kept))


def test_a_whole_record_says_it_is_whole() -> None:
    log = ArrivalLog()
    log.observe(Gang("ns/a", T0, 1, 8, "a100"), "a")
    assert decode_record(log.encode(T0 + 1)).incomplete_until_s is None
    assert decode_record(encode([], {})).incomplete_until_s is None


def test_quiet_days_before_the_oldest_arrival_kept_stay_samples_after_a_restart() -> None:
    """Arrivals busy for the first hours, then quiet for days: eight days on, the busy
    hours are pruned, and the quiet days after them are still samples (empty windows), in
    the running controller and after a restart alike."""
    gangs = [g for g in arrivals(days=1.0) if g.submit_s < T0 + 0.4 * DAY]
    late = Gang("ns/late", T0 + 8.5 * DAY - 7200, 1, 8, "a100")
    log = ArrivalLog()
    log.observe_cluster(job_objects_parsed(gangs), [], T0 + 0.4 * DAY)
    log.observe(late, "late")
    now = T0 + 8.5 * DAY
    log.prune(now)
    assert len(log) == 1  # only the late one is left
    window = 600.0
    before = log.scenarios(now, window)
    assert sum(1 for s in before if not s) > 50  # the quiet days' windows: samples, empty
    restarted = ArrivalLog()
    restarted.restore(log.encode(now), now + 1)
    assert decode_record(log.encode(now)).history_since_s == gangs[0].submit_s
    assert shapes(restarted.scenarios(now, window)) == shapes(before)


def job_objects_parsed(gangs: list[Gang]) -> list[Any]:
    return [parse_dljob(o) for o in job_objects(gangs)]
