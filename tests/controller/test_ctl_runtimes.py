"""The runtime regression in the controller: finished DLJobs become training records (hints
included), kept in their own ConfigMap, refitted on a schedule, and running gangs reach
``decide()`` with an expected end."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
from ctl_memory_api import MemoryApi
from ctl_objects import T0, dljob, node, nodepool, pod

from controller.clock import format_time
from controller.dljob import ADMITTED, RUNNING, SUCCEEDED, parse_dljob, parse_pod
from controller.kube import ApiError, Kube, core_path
from controller.planning import plan_pass
from controller.pools import nodepool_model
from controller.runtimes import (
    FinishedJobStore,
    RuntimeEstimates,
    decode,
    encode,
    finished_record,
    job_features,
)
from controller.snapshot import PoolInput, parse_node
from dlscaler.config import PolicyConfig

HOUR = 3600.0


def succeeded(
    name: str, run_s: float, *, epochs: int | None = None, namespace: str = "ns", **kw: Any
) -> dict[str, Any]:
    obj = dljob(name, namespace=namespace, **kw)
    if epochs is not None:
        obj["spec"]["hints"] = {"epochs": epochs, "datasetSizeGb": 40.5}
    obj["status"] = {
        "phase": SUCCEEDED,
        "workers": obj["spec"].get("workers", 1),
        "admittedTime": format_time(T0 - 60),
        "startTime": format_time(T0),
        "completionTime": format_time(T0 + run_s),
    }
    return obj


def running(name: str, *, epochs: int | None, started_s: float, **kw: Any) -> dict[str, Any]:
    obj = dljob(name, workers=1, **kw)
    if epochs is not None:
        obj["spec"]["hints"] = {"epochs": epochs}
    obj["status"] = {
        "phase": RUNNING,
        "workers": 1,
        "admittedTime": format_time(started_s),
        "startTime": format_time(started_s),
        "workerStates": [{"index": 0, "nodeName": f"n-{name}", "phase": "Running"}],
    }
    return obj


def store_in(api: MemoryApi) -> FinishedJobStore:
    return FinishedJobStore(cast(Kube, api), "dlscaler-system", "dlscaler-state-runtimes")


def test_a_succeeded_job_becomes_a_record_with_its_hints_and_run_time() -> None:
    job = parse_dljob(succeeded("train", 5400, epochs=12, namespace="alice", framework="tf"))
    record = finished_record(job)
    assert record is not None
    assert record.run_s == 5400  # startTime to completionTime (not from admission)
    assert record.gang.duration_s == 5400
    assert record.gang.workers == 2 and record.gang.gpus_per_worker == 8
    assert dict(record.gang.attributes) == {
        "framework": "tf",
        "user": "alice",
        "epochs": "12",
        "datasetSizeGb": "40.5",
    }


def test_only_succeeded_jobs_with_sensible_times_are_recorded() -> None:
    assert finished_record(parse_dljob(running("r", epochs=None, started_s=T0))) is None
    failed = succeeded("f", 60)
    failed["status"]["phase"] = "Failed"
    assert finished_record(parse_dljob(failed)) is None
    backwards = succeeded("b", -60)
    assert finished_record(parse_dljob(backwards)) is None
    no_start = succeeded("n", 60)
    del no_start["status"]["startTime"]
    record = finished_record(parse_dljob(no_start))
    assert record is not None and record.run_s == 120  # from admittedTime, one minute earlier


def test_records_round_trip_compactly() -> None:
    jobs = [
        finished_record(parse_dljob(succeeded(f"j{i}", 60.0 * i, epochs=i % 7 + 1)))
        for i in range(1, 2001)
    ]
    text = encode([j for j in jobs if j is not None])
    back = decode(text)
    assert back == jobs
    assert len(text) < 200_000  # 2,000 jobs, far below a ConfigMap's 1 MiB


def test_the_store_writes_a_merge_patch_and_notices_a_write_by_someone_else() -> None:
    api = MemoryApi()
    store = store_in(api)
    assert store.load() == []
    one = finished_record(parse_dljob(succeeded("one", 600)))
    two = finished_record(parse_dljob(succeeded("two", 900)))
    assert one is not None and two is not None
    store.save([one])
    store.save([one, two])
    assert store_in(api).load() == [one, two]
    # Another controller writes in between: ours is refused once, then goes through.
    other = store_in(api)
    other.load()
    other.save([two])
    with pytest.raises(ApiError):
        store.save([one])
    store.save([one])
    assert store_in(api).load() == [one]


def test_each_finished_job_is_recorded_once_and_the_latest_are_kept() -> None:
    estimates = RuntimeEstimates(max_jobs=3, background=False)
    jobs = [parse_dljob(succeeded(f"j{i}", 60.0 * (i + 1))) for i in range(5)]
    estimates.observe(jobs[:2])
    estimates.observe(jobs[:2])
    assert [j.gang.job_id for j in estimates.finished] == ["ns/j0", "ns/j1"]
    estimates.observe(jobs)
    assert [j.gang.job_id for j in estimates.finished] == ["ns/j2", "ns/j3", "ns/j4"]


def test_records_are_persisted_on_schedule_and_read_back_after_a_restart() -> None:
    api = MemoryApi()
    clock = [0.0]
    first = RuntimeEstimates(
        store=store_in(api), persist_every_s=300, background=False, clock=lambda: clock[0]
    )
    first.observe([parse_dljob(succeeded("a", 600))])
    first.observe([parse_dljob(succeeded("b", 700))])  # within 300 s of the last write
    [stored] = api.items(core_path("configmaps", "dlscaler-system"))
    assert [j.gang.job_id for j in decode(stored["data"]["finished"])] == ["ns/a"]
    first.close()  # a leader stepping down writes what it has
    second = RuntimeEstimates(store=store_in(api), background=False)
    second.observe([])
    assert [j.gang.job_id for j in second.finished] == ["ns/a", "ns/b"]


def _history(n: int) -> list[Any]:
    """Finished jobs whose run time is 10 minutes per epoch (1 to 10 epochs)."""
    return [
        parse_dljob(succeeded(f"h{i}", 600.0 * (i % 10 + 1), epochs=i % 10 + 1)) for i in range(n)
    ]


def test_refits_follow_the_schedule_and_learn_from_the_hints() -> None:
    clock = [0.0]
    estimates = RuntimeEstimates(refit_every_s=HOUR, background=False, clock=lambda: clock[0])
    estimates.observe(_history(200))
    assert estimates.fits == 1 and estimates.regressor.trained
    estimates.observe(_history(300))  # more jobs, but within the hour: no refit
    assert estimates.fits == 1
    clock[0] = HOUR
    estimates.observe([])
    assert estimates.fits == 2
    now = T0 + 60
    jobs = [
        parse_dljob(running("short", epochs=1, started_s=T0)),
        parse_dljob(running("long", epochs=9, started_s=T0)),
    ]
    gangs = [
        _running_gang(jobs[0], T0),
        _running_gang(jobs[1], T0),
    ]
    short, long = estimates.expected_ends(gangs, jobs, now)
    assert short.expected_end_s is not None and long.expected_end_s is not None
    # About 10 and 90 minutes after the start: the hints, not one median for all.
    assert short.expected_end_s - T0 == pytest.approx(600, rel=0.3)
    assert long.expected_end_s - T0 == pytest.approx(5400, rel=0.3)


def _running_gang(job: Any, started_s: float) -> Any:
    from controller.admission import running_gang

    return running_gang(job, "p", started_s, [f"n-{job.name}"])


def test_before_any_job_has_finished_an_hour_is_assumed() -> None:
    estimates = RuntimeEstimates(background=False)
    job = parse_dljob(running("r", epochs=3, started_s=T0))
    [gang] = estimates.expected_ends([_running_gang(job, T0)], [job], T0 + 600)
    assert gang.expected_end_s == pytest.approx(T0 + HOUR)


def test_a_background_refit_does_not_hold_up_the_pass() -> None:
    estimates = RuntimeEstimates(background=True)
    try:
        estimates.observe(_history(200))
        job = parse_dljob(running("r", epochs=3, started_s=T0))
        # Whether or not the refit has finished, the pass gets an estimate now.
        [gang] = estimates.expected_ends([_running_gang(job, T0)], [job], T0 + 60)
        assert gang.expected_end_s is not None and math.isfinite(gang.expected_end_s)
    finally:
        estimates.close()


def test_the_pass_gives_decide_running_gangs_with_expected_ends() -> None:
    """``plan_pass`` with the estimator, on cluster objects: the running DLJob reaches the
    policy (and the pass's result) with an expected end from the trained model."""
    estimates = RuntimeEstimates(background=False)
    estimates.observe(_history(200))
    pool = nodepool("p", max_nodes=4)
    job_obj = running("r", epochs=2, started_s=T0, gpus_per_worker=8)
    job_obj["status"]["phase"] = ADMITTED
    uid = job_obj["metadata"]["uid"]
    nodes = [node("n-r", pool="p")]
    pods = [pod("r-worker-0", node="n-r", job_uid=uid, index=0)]
    jobs = [parse_dljob(job_obj)]
    now = T0 + 300
    decided = plan_pass(
        now_s=now,
        jobs=jobs,
        pods=[parse_pod(p) for p in pods],
        nodes=[parse_node(n) for n in nodes],
        pools=[PoolInput(nodepool_model(pool), None)],
        idle_since={},
        config=PolicyConfig(),
        expected_ends=lambda gangs: estimates.expected_ends(gangs, jobs, now),
    )
    [gang] = decided.running
    assert gang.gang.job_id == "ns/r"
    assert gang.expected_end_s is not None
    # Two epochs of ten minutes from the start, give or take the model's error.
    assert gang.expected_end_s - T0 == pytest.approx(1200, rel=0.3)
    # Without the estimator the end stays unknown, as before.
    plain = plan_pass(
        now_s=now,
        jobs=jobs,
        pods=[parse_pod(p) for p in pods],
        nodes=[parse_node(n) for n in nodes],
        pools=[PoolInput(nodepool_model(pool), None)],
        idle_since={},
        config=PolicyConfig(),
    )
    assert plain.running[0].expected_end_s is None


def test_features_of_a_job_without_hints_are_its_shape_framework_and_namespace() -> None:
    job = parse_dljob(dljob("x", namespace="bob", framework="horovod", workers=3))
    gang = job_features(job)
    assert dict(gang.attributes) == {"framework": "horovod", "user": "bob"}
    assert gang.workers == 3 and gang.duration_s is None


class Forbidden(MemoryApi):
    """A Role that does not cover the ConfigMap: every call is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def get(self, path: str) -> dict[str, Any] | None:
        self.refused += 1
        raise ApiError(403, "configmaps is forbidden", reason="Forbidden", path=path)


def test_a_forbidden_configmap_is_tried_once_and_the_records_stay_in_memory() -> None:
    api = Forbidden()
    estimates = RuntimeEstimates(store=store_in(api), background=False)
    for i in range(3):
        estimates.observe([parse_dljob(succeeded(f"j{i}", 600))])
    assert api.refused == 1
    assert estimates.store is None
    assert len(estimates.finished) == 3
