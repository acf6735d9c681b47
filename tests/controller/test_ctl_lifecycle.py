"""A DLJob's life after admission: Running, Succeeded, gang restarts, Failed, suspend, TTL."""

from __future__ import annotations

from ctl_objects import T0, dljob, pod

from controller.clock import format_time
from controller.dljob import parse_dljob, parse_pod
from controller.lifecycle import resize, step


def admitted(name="j", workers=2, phase="Admitted", restarts=0, **kw):
    status = {
        "phase": phase,
        "workers": workers,
        "restarts": restarts,
        "admittedTime": format_time(T0),
        "workerStates": [{"index": i, "nodeName": f"n{i}"} for i in range(workers)],
    }
    return parse_dljob(dljob(name, workers=workers, status=status, **kw))


def workers(job, *phases, attempt=0):
    return [
        parse_pod(
            pod(
                f"{job.name}-worker-{i}",
                node=f"n{i}",
                phase=ph,
                job_uid=job.uid,
                index=i,
                attempt=attempt,
            )
        )
        for i, ph in enumerate(phases)
    ]


def test_a_new_job_is_queued_with_its_submission_time_and_an_event():
    job = parse_dljob(dljob("j", workers=2, gpus_per_worker=8))
    out = step(job, [], T0 + 5)
    assert out.status["phase"] == "Queued"
    assert out.status["gpus"] == 16
    assert out.status["submittedTime"] == format_time(T0)
    assert [e.reason for e in out.events] == ["Queued"]
    assert out.status["conditions"][0]["type"] == "Queued"


def test_an_admitted_job_creates_its_missing_workers():
    job = admitted(workers=3)
    out = step(job, workers(job, "Pending"), T0 + 1)
    assert out.create_workers == [1, 2]
    assert "phase" not in out.status


def test_a_job_is_running_once_every_worker_runs():
    job = admitted()
    partly = step(job, workers(job, "Running", "Pending"), T0 + 1)
    assert "phase" not in partly.status
    out = step(job, workers(job, "Running", "Running"), T0 + 2)
    assert out.status["phase"] == "Running"
    assert out.status["startTime"] == format_time(T0 + 2)
    assert [e.reason for e in out.events] == ["Running"]
    states = out.status["workerStates"]
    assert [(s["index"], s["phase"], s["nodeName"]) for s in states] == [
        (0, "Running", "n0"),
        (1, "Running", "n1"),
    ]


def test_a_job_succeeds_when_every_worker_succeeded():
    job = admitted(phase="Running")
    assert "phase" not in step(job, workers(job, "Succeeded", "Running"), T0 + 3).status
    out = step(job, workers(job, "Succeeded", "Succeeded"), T0 + 4)
    assert out.status["phase"] == "Succeeded"
    assert out.status["completionTime"] == format_time(T0 + 4)
    assert {c["type"]: c["status"] for c in out.status["conditions"]}["Succeeded"] == "True"


def test_a_failed_worker_restarts_the_whole_gang():
    job = admitted(phase="Running", backoff_limit=2)
    out = step(job, workers(job, "Failed", "Running"), T0 + 3)
    assert out.status["phase"] == "Queued"
    assert out.status["restarts"] == 1
    assert sorted(out.delete_pods) == ["j-worker-0", "j-worker-1"]
    assert [e.reason for e in out.events] == ["Restarting"]


def test_a_worker_that_disappears_from_a_running_job_restarts_the_gang():
    job = admitted(phase="Running")
    out = step(job, workers(job, "Running"), T0 + 3)
    assert out.status["phase"] == "Queued"
    assert out.status["restarts"] == 1


def test_past_the_backoff_limit_the_job_fails_and_its_workers_stop():
    job = admitted(phase="Running", restarts=2, backoff_limit=2)
    out = step(job, workers(job, "Failed", "Running", attempt=2), T0 + 3)
    assert out.status["phase"] == "Failed"
    assert out.delete_pods == ["j-worker-1"]
    assert "backoffLimit 2 reached" in out.status["message"]


def test_pods_of_an_earlier_attempt_are_deleted():
    job = admitted(restarts=1)
    old = workers(job, "Failed", "Running", attempt=0)
    out = step(job, old + workers(job, "Running", "Running", attempt=1), T0 + 3)
    assert sorted(out.delete_pods) == ["j-worker-0", "j-worker-1"]
    assert out.status["phase"] == "Running"


def test_a_worker_pinned_to_a_node_that_is_gone_restarts_the_gang():
    job = admitted()
    pending = [
        parse_pod(pod("j-worker-0", assigned_node="n0", phase="Pending", job_uid=job.uid, index=0)),
        parse_pod(pod("j-worker-1", node="n1", phase="Running", job_uid=job.uid, index=1)),
    ]
    assert step(job, pending, T0 + 1, existing_nodes={"n0", "n1"}).status.get("phase") is None
    out = step(job, pending, T0 + 1, existing_nodes={"n1"})
    assert out.status["phase"] == "Queued"
    assert "n0" in out.status["message"]


def test_the_active_deadline_fails_the_job():
    job = admitted(phase="Running", active_deadline_s=60)
    out = step(job, workers(job, "Running", "Running"), T0 + 30)
    assert out.wake_at_s == T0 + 60
    out = step(job, workers(job, "Running", "Running"), T0 + 61)
    assert out.status["phase"] == "Failed"
    assert [e.reason for e in out.events] == ["DeadlineExceeded"]


def test_suspending_stops_the_workers_and_queues_the_job():
    job = admitted(phase="Running", suspend=True)
    out = step(job, workers(job, "Running", "Running"), T0 + 3)
    assert out.status["phase"] == "Queued"
    assert sorted(out.delete_pods) == ["j-worker-0", "j-worker-1"]
    assert {c["type"] for c in out.status["conditions"]} == {"Suspended"}


def test_a_finished_job_is_deleted_after_its_ttl():
    status = {"phase": "Succeeded", "completionTime": format_time(T0)}
    job = parse_dljob(dljob("j", status=status, ttl_s=100))
    assert step(job, [], T0 + 50).wake_at_s == T0 + 100
    assert step(job, [], T0 + 100).delete_job is True


def test_a_worker_the_scheduler_refuses_for_too_long_restarts_the_gang_saying_why():
    job = admitted()
    refused = pod("j-worker-0", assigned_node="n0", phase="Pending", job_uid=job.uid, index=0)
    refused["metadata"]["creationTimestamp"] = format_time(T0)
    refused["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": 'persistentvolumeclaim "imagenet" not found',
        }
    ]
    pods = [parse_pod(refused), *workers(job, "Pending", "Running")[1:]]
    assert "phase" not in step(job, pods, T0 + 100, unschedulable_after_s=300).status
    out = step(job, pods, T0 + 301, unschedulable_after_s=300)
    assert out.status["phase"] == "Queued"
    assert 'persistentvolumeclaim "imagenet" not found' in out.status["message"]


def test_a_resize_restarts_the_gang_on_its_new_nodes_without_counting_a_restart():
    job = admitted(phase="Running", restarts=1, backoff_limit=1)
    pods = workers(job, "Running", "Running", attempt=1)
    done = parse_pod(pod("j-worker-2", node="n2", phase="Succeeded", job_uid=job.uid, index=2))
    out = resize(job, [*pods, done], T0 + 9, nodes=["n0", "n0", "n3"], reason="R", message="m")
    assert sorted(out.delete_pods) == ["j-worker-0", "j-worker-1", "j-worker-2"]
    assert out.create_workers == []  # every name is still taken by a pod on its way out
    assert out.status["phase"] == "Admitted"
    assert "restarts" not in out.status
    assert (out.status["workers"], out.status["gpus"], out.status["resizes"]) == (3, 24, 1)
    assert [w["nodeName"] for w in out.status["workerStates"]] == ["n0", "n0", "n3"]
    assert {c["type"]: c["reason"] for c in out.status["conditions"]}["Resized"] == "R"
    assert [(e.reason, e.message) for e in out.events] == [("Resized", "m")]


def test_a_resized_job_keeps_its_first_start_time_once_its_new_workers_run():
    status = {"startTime": format_time(T0 + 1), "resizes": 1}
    job = admitted(workers=1)
    job = parse_dljob({**job.obj, "status": {**job.status, **status}})
    out = step(job, workers(job, "Running", attempt=1), T0 + 50)
    assert out.status["phase"] == "Running"
    assert out.status["startTime"] == format_time(T0 + 1)
    fresh = admitted(workers=1)
    out = step(fresh, workers(fresh, "Running"), T0 + 50)
    assert out.status["startTime"] == format_time(T0 + 50)
