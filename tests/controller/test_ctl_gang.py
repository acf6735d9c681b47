"""A DLJob's worker pods and headless Service: pinning, GPUs, rendezvous environment."""

from __future__ import annotations

import json

from ctl_objects import dljob

from controller.dljob import parse_dljob
from controller.gang import render_service, render_worker, service_name
from controller.names import (
    ASSIGNED_NODE_ANNOTATION,
    ATTEMPT_LABEL,
    GPU_RESOURCE,
    JOB_UID_LABEL,
    WORKER_INDEX_LABEL,
)


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_pytorch_workers_get_master_addr_world_size_and_rank():
    job = parse_dljob(dljob("train", workers=3, framework="pytorch"))
    pods = [render_worker(job, i, workers=3, node=f"n{i}", pool="a") for i in range(3)]
    envs = [env_of(p) for p in pods]
    assert {e["MASTER_ADDR"] for e in envs} == {"worker-0.train.ns.svc"}
    assert {e["MASTER_PORT"] for e in envs} == {"29500"}
    assert [e["WORLD_SIZE"] for e in envs] == ["3", "3", "3"]
    assert [e["RANK"] for e in envs] == ["0", "1", "2"]
    assert [e["PET_NODE_RANK"] for e in envs] == ["0", "1", "2"]
    # Each worker's DNS name is what MASTER_ADDR points at for rank 0.
    assert pods[0]["spec"]["hostname"] == "worker-0"
    assert pods[0]["spec"]["subdomain"] == "train"


def test_tensorflow_workers_get_tf_config_with_every_worker_and_their_own_index():
    job = parse_dljob(dljob("tf", workers=2, framework="tensorflow"))
    configs = [
        json.loads(env_of(render_worker(job, i, workers=2, node="n", pool="a"))["TF_CONFIG"])
        for i in range(2)
    ]
    hosts = ["worker-0.tf.ns.svc:2222", "worker-1.tf.ns.svc:2222"]
    assert configs[0] == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 0}}
    assert configs[1]["task"] == {"type": "worker", "index": 1}
    assert "MASTER_ADDR" not in env_of(render_worker(job, 0, workers=2, node="n", pool="a"))


def test_horovod_workers_get_the_host_list_with_slots_per_gpu():
    job = parse_dljob(dljob("hvd", workers=2, framework="horovod", gpus_per_worker=4))
    env = env_of(render_worker(job, 1, workers=2, node="n", pool="a"))
    assert env["HOROVOD_HOSTS"] == "worker-0.hvd.ns.svc:4,worker-1.hvd.ns.svc:4"
    assert env["HOROVOD_NUM_PROC"] == "8"


def test_a_variable_the_template_sets_is_not_overridden():
    template = {
        "spec": {
            "containers": [
                {"name": "t", "image": "i", "env": [{"name": "MASTER_PORT", "value": "1234"}]}
            ]
        }
    }
    job = parse_dljob(dljob("j", template=template))
    env = render_worker(job, 0, workers=2, node="n", pool="a")["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "MASTER_PORT"] == ["1234"]


def test_the_worker_requests_its_gpus_and_is_pinned_to_its_node():
    job = parse_dljob(dljob("j", gpus_per_worker=8))
    pod = render_worker(job, 1, workers=2, node="node-7", pool="a")
    res = pod["spec"]["containers"][0]["resources"]
    assert res["limits"][GPU_RESOURCE] == "8"
    assert res["requests"][GPU_RESOURCE] == "8"
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
    ]
    meta = pod["metadata"]
    assert meta["name"] == "j-worker-1"
    assert meta["annotations"][ASSIGNED_NODE_ANNOTATION] == "node-7"
    assert meta["labels"][JOB_UID_LABEL] == "uid-ns-j"
    assert meta["labels"][WORKER_INDEX_LABEL] == "1"
    assert meta["labels"][ATTEMPT_LABEL] == "0"
    assert meta["ownerReferences"][0]["kind"] == "DLJob"
    assert meta["ownerReferences"][0]["controller"] is True
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_templates_own_node_affinity_terms_each_also_require_the_node():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    template = {"spec": {"affinity": affinity, "containers": [{"name": "t", "image": "i"}]}}
    job = parse_dljob(dljob("j", template=template))
    pod = render_worker(job, 0, workers=1, node="n1", pool="a")
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert len(terms) == 2
    for term in terms:
        assert term["matchExpressions"][0]["key"] == "zone"
        assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
    # The job's template is not modified.
    assert "matchFields" not in str(job.template)


def test_workers_tolerate_their_pools_taints():
    job = parse_dljob(dljob("j"))
    pod = render_worker(
        job,
        0,
        workers=1,
        node="n",
        pool="a",
        pool_taints=("nvidia.com/gpu=present:NoSchedule", "spot:NoExecute"),
    )
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "operator": "Equal", "value": "present"},
        {"key": "spot", "effect": "NoExecute", "operator": "Exists"},
    ]


def test_the_service_is_headless_and_publishes_workers_before_they_are_ready():
    job = parse_dljob(dljob("j"))
    svc = render_service(job)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {JOB_UID_LABEL: "uid-ns-j"}
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-ns-j"


def test_service_names_are_dns_labels_even_for_job_names_that_are_not():
    assert service_name("train") == "train"
    assert service_name("7b-finetune") == "j-7b-finetune"
    assert service_name("a.b") == "a-b"
    assert len(service_name("x" * 200)) == 63


def test_workers_of_a_resized_elastic_gang_carry_the_new_attempt_and_world_size():
    status = {"phase": "Admitted", "workers": 3, "restarts": 1, "resizes": 2}
    job = parse_dljob(
        dljob("el", workers=None, min_workers=1, max_workers=4, framework="tensorflow",
              status=status)
    )  # fmt: skip
    pod = render_worker(job, 2, workers=job.admitted_workers, node="n2", pool="a")
    assert pod["metadata"]["labels"][ATTEMPT_LABEL] == "3"  # one restart plus two resizes
    tf_config = json.loads(env_of(pod)["TF_CONFIG"])
    assert len(tf_config["cluster"]["worker"]) == 3
    assert tf_config["task"] == {"type": "worker", "index": 2}
