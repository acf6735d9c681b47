"""Elastic DLJobs in the controller's pass: growth into idle nodes, a shrink instead of a
scale-up, and the passes after it (old pods terminating, new ones created) — through the
pass's own pure parts (``plan_pass``, then ``controller.resizing``), applied to a small
in-memory cluster that keeps pods, terminations and job statuses as the API server would.
"""

from __future__ import annotations

import json
from typing import Any

from ctl_objects import T0, dljob, node, nodepool, pod

from controller import gang, lifecycle, resizing
from controller.clock import format_time
from controller.dljob import ADMITTED, RUNNING, parse_dljob, parse_pod
from controller.planning import plan_pass
from controller.pools import nodepool_model
from controller.snapshot import PoolInput, parse_node
from dlscaler.config import PolicyConfig

NOW = T0 + 3600.0


class World:
    """Nodes of one pool, DLJobs and pods; a pass is planned as the reconciler plans it and
    its job steps and admissions are applied. Deleted pods terminate until :meth:`settle`;
    created pods are bound to their node and run at the next :meth:`settle`."""

    def __init__(self, *node_names: str, max_nodes: int = 4) -> None:
        self.pool = nodepool("p", gpu_type="a100", max_nodes=max_nodes, idle_timeout_s=600)
        self.nodes = [node(n, pool="p") for n in node_names]
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []

    def add_job(self, obj: dict[str, Any]) -> None:
        obj["spec"]["gpuType"] = "a100"
        self.jobs[obj["metadata"]["name"]] = obj

    def run(self, name: str, *nodes: str, attempt: int = 0) -> None:
        """Pods of ``name``'s current gang, running on ``nodes``."""
        uid = self.jobs[name]["metadata"]["uid"]
        for i, n in enumerate(nodes):
            p = pod(f"{name}-worker-{i}", node=n, job_uid=uid, index=i, attempt=attempt)
            self.pods[p["metadata"]["name"]] = p

    def job(self, name: str) -> dict[str, Any]:
        return self.jobs[name]["status"]

    def step(self, now_s: float, *, min_interval_s: float = 300.0):
        jobs = [parse_dljob(j) for j in self.jobs.values()]
        pods = [parse_pod(p) for p in self.pods.values()]
        pods += resizing.reserved_workers(jobs, pods)
        decided = plan_pass(
            now_s=now_s,
            jobs=jobs,
            pods=pods,
            nodes=[parse_node(n) for n in self.nodes],
            pools=[PoolInput(nodepool_model(self.pool), None)],
            idle_since={},
            config=PolicyConfig(idle_timeout_s=600),
        )
        elastic = resizing.plan_elastic(
            now_s=now_s, jobs=jobs, pods=pods, decided=decided, min_interval_s=min_interval_s
        )
        steps = dict(decided.steps)
        steps.update(elastic.steps)
        for job in jobs:
            self._apply(job, steps[job.uid])
        for a in decided.admissions:
            states = [
                {"index": i, "nodeName": n, "phase": "Pending"} for i, n in enumerate(a.nodes)
            ]
            status = {"phase": ADMITTED, "workers": a.workers, "workerStates": states,
                      "admittedTime": format_time(now_s)}  # fmt: skip
            self._apply(a.job, lifecycle.JobStep(status=status, create_workers=[*range(a.workers)]))
        return decided, elastic

    def _apply(self, job, step: lifecycle.JobStep) -> None:
        obj = self.jobs[job.name]
        for name in step.delete_pods:
            self.pods[name]["metadata"]["deletionTimestamp"] = format_time(NOW)
        status = {**obj["status"], **step.status}
        obj["status"] = {k: v for k, v in status.items() if v is not None}
        self.events += [(job.name, e.reason, e.message) for e in step.events]
        updated = parse_dljob(obj)
        nodes = updated.worker_nodes()
        for i in step.create_workers:
            body = gang.render_worker(
                updated, i, workers=updated.admitted_workers, node=nodes[i], pool="p"
            )
            # create-or-get: a pod of that name still terminating stays as it is.
            self.pods.setdefault(body["metadata"]["name"], json.loads(json.dumps(body)))

    def settle(self) -> None:
        """Terminating pods go; new ones are bound to their node and run."""
        self.pods = {
            k: p for k, p in self.pods.items() if not p["metadata"].get("deletionTimestamp")
        }
        for p in self.pods.values():
            annotations = p["metadata"].get("annotations") or {}
            if not p["spec"].get("nodeName"):
                p["spec"]["nodeName"] = annotations["dlscaler.io/assigned-node"]
            p.setdefault("status", {})["phase"] = "Running"

    def env(self, pod_name: str) -> dict[str, str]:
        container = self.pods[pod_name]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in container.get("env") or []}


def running_status(workers: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "phase": RUNNING,
        "workers": len(workers),
        "restarts": 0,
        "admittedTime": format_time(T0),
        "startTime": format_time(T0 + 5),
        "workerStates": [{"index": i, "nodeName": n} for i, n in enumerate(workers)],
        **extra,
    }


def elastic_job(name: str = "e", *, on: list[str], lo: int = 1, hi: int = 2, **status: Any):
    return dljob(name, workers=None, min_workers=lo, max_workers=hi, backoff_limit=0,
                 status=running_status(on, **status))  # fmt: skip


def test_a_running_elastic_job_grows_into_an_idle_node_and_restarts_with_the_new_world_size():
    world = World("n0", "n1")
    world.add_job(elastic_job(on=["n0"]))
    world.run("e", "n0")
    decided, elastic = world.step(NOW)
    assert decided.plan.scale_ups == ()
    (resize,) = elastic.resizes
    assert (resize.from_workers, resize.to_workers, resize.nodes) == (1, 2, ("n0", "n1"))
    assert elastic.grown_nodes == {"n0", "n1"}
    status = world.job("e")
    assert (status["phase"], status["workers"], status["gpus"]) == ("Admitted", 2, 16)
    assert status["resizes"] == 1 and status["restarts"] == 0  # not a failure
    assert status["lastResizeTime"] == format_time(NOW)
    cond = {c["type"]: c for c in status["conditions"]}["Resized"]
    assert cond["reason"] == "GrewIntoIdleCapacity"
    assert cond["message"] == "grew from 1 to 2 workers into idle GPUs of pool p"
    assert ("e", "Resized", cond["message"]) in world.events
    # The new worker starts at once; worker 0 waits for its old pod (same name) to go.
    assert world.pods["e-worker-0"]["metadata"]["deletionTimestamp"]
    assert world.env("e-worker-1")["WORLD_SIZE"] == "2"
    assert world.pods["e-worker-1"]["metadata"]["labels"]["dlscaler.io/attempt"] == "1"

    world.settle()
    world.step(NOW + 1)  # creates worker 0 of the new gang
    assert world.env("e-worker-0")["WORLD_SIZE"] == "2"
    assert world.env("e-worker-0")["RANK"] == "0"
    world.settle()
    world.step(NOW + 2)
    status = world.job("e")
    assert status["phase"] == "Running" and status["workers"] == 2
    assert status["startTime"] == format_time(T0 + 5)  # the first run's start is kept
    assert [w["nodeName"] for w in status["workerStates"]] == ["n0", "n1"]
    _, elastic = world.step(NOW + 3)
    assert elastic.resizes == ()  # at its maximum


def test_a_shrink_takes_the_place_of_a_scale_up_and_the_waiting_gang_gets_the_freed_node():
    world = World("n0", "n1")
    world.add_job(elastic_job(on=["n0", "n1"]))
    world.run("e", "n0", "n1")
    world.add_job(dljob("rigid", workers=1, created_s=NOW - 1))
    decided, elastic = world.step(NOW)
    (resize,) = elastic.resizes
    assert resize.nodes == ("n0",) and resize.made_room_for == ("ns/rigid",)
    assert any(up.job_ids == ("ns/rigid",) for up in decided.plan.scale_ups)
    assert elastic.plan.scale_ups == ()  # no node asked for
    status = world.job("e")
    assert (status["workers"], status["restarts"], status["resizes"]) == (1, 0, 1)
    cond = {c["type"]: c for c in status["conditions"]}["Resized"]
    assert cond["reason"] == "ShrankToMakeRoom"
    assert cond["message"] == "shrank from 2 to 1 workers to make room for ns/rigid"

    # The old workers still terminate: their GPUs are about to be free, so still no
    # scale-up for the waiting gang, and it is not admitted yet.
    decided, elastic = world.step(NOW + 1)
    assert decided.plan.scale_ups and elastic.plan.scale_ups == ()
    assert decided.admissions == ()

    # They are gone. n0 is reserved for the elastic job's worker 0 (its pod comes in this
    # pass): the waiting gang goes to n1.
    world.settle()
    decided, elastic = world.step(NOW + 2)
    assert [(a.job.name, a.nodes) for a in decided.admissions] == [("rigid", ("n1",))]
    assert elastic.plan.scale_ups == () and decided.plan.scale_ups == ()
    assert world.pods["e-worker-0"]["metadata"]["annotations"]["dlscaler.io/assigned-node"] == "n0"
    assert world.env("e-worker-0")["WORLD_SIZE"] == "1"
    world.settle()
    world.step(NOW + 3)
    assert world.job("e")["phase"] == "Running" and world.job("e")["workers"] == 1
    assert world.job("rigid")["phase"] == "Running"


def test_an_elastic_job_resized_recently_is_not_shrunk_and_the_pool_grows_instead():
    world = World("n0", "n1")
    world.add_job(elastic_job(on=["n0", "n1"], resizes=1, lastResizeTime=format_time(NOW - 100)))
    world.run("e", "n0", "n1", attempt=1)
    world.add_job(dljob("rigid", workers=1, created_s=NOW - 1))
    decided, elastic = world.step(NOW)
    assert elastic.resizes == ()
    assert elastic.plan == decided.plan
    assert [up.job_ids for up in elastic.plan.scale_ups] == [("ns/rigid",)]
    # With a shorter interval it is shrunk instead.
    _, elastic = world.step(NOW + 1, min_interval_s=60)
    assert [r.job_id for r in elastic.resizes] == ["ns/e"]
    assert elastic.plan.scale_ups == ()


def test_no_growth_into_the_gpus_of_a_gang_waiting_out_its_restart_backoff():
    world = World("n0", "n1")
    world.add_job(elastic_job(on=["n0"]))
    world.run("e", "n0")
    failed = {"phase": "Queued", "restarts": 1, "nextRestartTime": format_time(NOW + 30)}
    world.add_job(dljob("flaky", workers=1, created_s=T0, status=failed))
    decided, elastic = world.step(NOW)
    assert decided.waiting == () and elastic.resizes == ()
    _, elastic = world.step(NOW + 30)  # the backoff is over: it is admitted, not grown over
    assert elastic.resizes == ()
    assert world.job("flaky")["phase"] == "Admitted"


def test_a_fixed_size_job_and_an_elastic_job_still_starting_are_never_resized():
    world = World("n0", "n1", "n2")
    world.add_job(dljob("fixed", workers=1, status=running_status(["n0"])))
    world.run("fixed", "n0")
    starting = elastic_job("e", on=["n1"])
    starting["status"]["phase"] = "Admitted"
    world.add_job(starting)
    decided, elastic = world.step(NOW)
    assert elastic.resizes == () and elastic.plan == decided.plan


def test_reserved_workers_hold_the_node_of_each_worker_without_a_pod():
    job = parse_dljob(elastic_job(on=["n0", "n1"], resizes=1))
    old = parse_pod(pod("e-worker-0", node="n0", job_uid=job.uid, index=0, attempt=0))
    new = parse_pod(pod("e-worker-1", node="n1", job_uid=job.uid, index=1, attempt=1))
    (reserved,) = resizing.reserved_workers([job], [old, new])
    assert (reserved.assigned_node, reserved.gpus, reserved.job_uid) == ("n0", 8, "")
    queued = parse_dljob(dljob("q", status={"phase": "Queued"}))
    assert resizing.reserved_workers([queued], []) == []
