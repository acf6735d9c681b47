"""The delay between a gang's failure and its restart: exponential as the Job
controller's, shown in status, condition and Event, and honoured by the pass (a gang in
its delay is neither admitted nor provisioned for)."""

from __future__ import annotations

import pytest
from ctl_objects import T0, dljob, node, nodepool, pod

from controller.clock import format_time
from controller.dljob import parse_dljob, parse_pod
from controller.lifecycle import RestartBackoff, backing_off, step
from controller.planning import plan_pass
from controller.pools import nodepool_model
from controller.snapshot import PoolInput, parse_node
from dlscaler.config import PolicyConfig


def running(restarts: int = 0, resizes: int = 0, backoff_limit: int = 6):
    status = {
        "phase": "Running",
        "workers": 1,
        "restarts": restarts,
        "resizes": resizes,
        "admittedTime": format_time(T0),
        "workerStates": [{"index": 0, "nodeName": "n0"}],
    }
    return parse_dljob(dljob("j", workers=1, status=status, backoff_limit=backoff_limit))


def failed_worker(job, attempt: int):
    return [
        parse_pod(
            pod("j-worker-0", node="n0", phase="Failed", job_uid=job.uid, index=0, attempt=attempt)
        )
    ]


def test_the_delay_doubles_from_ten_seconds_up_to_six_minutes():
    delays = [RestartBackoff().delay_s(n) for n in range(1, 9)]
    assert delays == [10, 20, 40, 80, 160, 320, 360, 360]
    assert RestartBackoff(base_s=1, max_s=4).delay_s(1000) == 4
    assert RestartBackoff(base_s=0).delay_s(3) == 0


def test_a_negative_setting_is_refused_naming_both_values():
    with pytest.raises(ValueError, match=r"got base_s=-1, max_s=360\.0"):
        RestartBackoff(base_s=-1)


def test_a_failed_gang_waits_before_it_is_queued_again_and_says_until_when():
    job = running(restarts=2)
    out = step(job, failed_worker(job, 2), T0 + 100)
    at = format_time(T0 + 100 + 40)  # the third restart: 10 s doubled twice
    assert out.status["phase"] == "Queued" and out.status["restarts"] == 3
    assert out.status["nextRestartTime"] == at
    assert out.wake_at_s == T0 + 140
    queued = {c["type"]: c for c in out.status["conditions"]}["Queued"]
    assert queued["reason"] == "BackoffDelay"
    assert f"after a backoff of 40 s, at {at}" in queued["message"]
    (event,) = out.events
    assert event.reason == "Restarting" and at in event.message
    assert "worker j-worker-0 failed" in event.message


def test_without_a_backoff_the_gang_is_queued_again_at_once():
    job = running()
    out = step(job, failed_worker(job, 0), T0 + 100, backoff=RestartBackoff(base_s=0))
    assert out.status["nextRestartTime"] is None
    assert {c["type"]: c for c in out.status["conditions"]}["Queued"]["reason"] == "Restarting"
    assert out.wake_at_s is None


def test_during_the_delay_nothing_changes_and_afterwards_the_job_asks_for_gpus_again():
    status = {"phase": "Queued", "restarts": 1, "nextRestartTime": format_time(T0 + 10)}
    job = parse_dljob(dljob("j", workers=1, status=status))
    waiting = step(job, [], T0 + 5)
    assert waiting.status == {} and waiting.wake_at_s == T0 + 10
    assert backing_off(job, waiting, T0 + 5)
    done = step(job, [], T0 + 10)
    assert done.status["nextRestartTime"] is None
    assert done.status["message"].startswith("backoff over: waiting for GPUs (restart 1 of 3)")
    assert not backing_off(job, done, T0 + 10)


def test_resizes_do_not_count_against_the_backoff_limit():
    job = running(restarts=0, resizes=4, backoff_limit=1)
    assert job.attempt == 4
    out = step(job, failed_worker(job, 4), T0 + 50)
    assert out.status["phase"] == "Queued" and out.status["restarts"] == 1
    assert out.status["nextRestartTime"] == format_time(T0 + 60)
    again = running(restarts=1, resizes=4, backoff_limit=1)
    assert step(again, failed_worker(again, 5), T0 + 50).status["phase"] == "Failed"


def test_the_pass_neither_admits_nor_scales_up_for_a_gang_in_its_delay():
    pool = nodepool("p", max_nodes=4)
    status = {"phase": "Queued", "restarts": 1, "nextRestartTime": format_time(T0 + 10)}
    job = parse_dljob(dljob("j", workers=2, status=status))

    def pass_at(now_s, nodes):
        return plan_pass(
            now_s=now_s,
            jobs=[job],
            pods=[],
            nodes=[parse_node(node(n, pool="p")) for n in nodes],
            pools=[PoolInput(nodepool_model(pool), None)],
            idle_since={},
            config=PolicyConfig(),
        )

    early = pass_at(T0 + 5, ["n0", "n1"])
    assert early.admissions == () and early.waiting == ()
    assert early.steps[job.uid].wake_at_s == T0 + 10
    none_ready = pass_at(T0 + 5, [])
    assert none_ready.plan.scale_ups == ()
    assert [a.nodes for a in pass_at(T0 + 10, ["n0", "n1"]).admissions] == [("n0", "n1")]
    assert [u.job_ids for u in pass_at(T0 + 10, []).plan.scale_ups] == [("ns/j",)]
