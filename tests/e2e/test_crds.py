"""The CRDs in crds/ against the real API server: examples apply, bad specs are refused
with a message naming the field, defaults, immutability, printer columns, subresources."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.devcluster import DevCluster

REPO_ROOT = Path(__file__).resolve().parents[2]


def _is_manifest(path: Path) -> bool:
    # examples/ also holds inputs for other commands (a simulator pools file).
    doc = yaml.safe_load(path.read_text())
    return isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("dlscaler.io/")


EXAMPLES = [p for p in sorted((REPO_ROOT / "examples").glob("*.yaml")) if _is_manifest(p)]
DELETE = object()  # a value that removes the key

JOB: dict[str, Any] = {
    "apiVersion": "dlscaler.io/v1alpha1",
    "kind": "DLJob",
    "metadata": {"name": "job"},
    "spec": {
        "framework": "pytorch",
        "workers": 2,
        "gpusPerWorker": 8,
        "gpuType": "a100",
        "template": {"spec": {"containers": [{"name": "trainer", "image": "busybox:1.36"}]}},
    },
}
ELASTIC_JOB = copy.deepcopy(JOB)
del ELASTIC_JOB["spec"]["workers"]
ELASTIC_JOB["spec"] |= {"minWorkers": 2, "maxWorkers": 4}
SERVICE: dict[str, Any] = {
    "apiVersion": "dlscaler.io/v1alpha1",
    "kind": "DLService",
    "metadata": {"name": "svc"},
    "spec": {
        "maxReplicas": 4,
        "target": {"requestsPerSecondPerReplica": 10},
        "template": {"spec": {"containers": [{"name": "server", "image": "busybox:1.36"}]}},
    },
}
POOL: dict[str, Any] = {
    "apiVersion": "dlscaler.io/v1alpha1",
    "kind": "NodePool",
    "metadata": {"name": "pool"},
    "spec": {
        "provider": "kwok",
        "gpuType": "a100",
        "gpusPerNode": 8,
        "maxNodes": 4,
        "pricePerHour": 32.77,
    },
}


def changed(base: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """A copy of ``base`` with each ``path=value`` set (``spec__runPolicy__backoffLimit=1``:
    ``__`` separates keys, digits index lists); ``DELETE`` removes the key."""
    out = copy.deepcopy(base)
    for dotted, value in paths.items():
        keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split("__")]
        node = out
        for k in keys[:-1]:
            node = node[k]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return out


def container(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "trainer", **fields}]}}


# (case id, manifest, text the error must contain: the offending field's path)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "job-missing-image",
        changed(JOB, spec__template=container()),
        "spec.template.spec.containers[0].image",
    ),
    (
        "job-empty-image",
        changed(JOB, spec__template=container(image="")),
        "spec.template.spec.containers[0].image",
    ),
    ("job-zero-workers", changed(JOB, spec__workers=0), "spec.workers"),
    ("job-workers-not-a-number", changed(JOB, spec__workers="two"), "spec.workers"),
    ("job-no-workers-at-all", changed(JOB, spec__workers=DELETE), "spec.workers"),
    (
        "job-workers-and-elastic",
        changed(JOB, spec__minWorkers=1, spec__maxWorkers=3),
        "spec.workers",
    ),
    ("job-elastic-min-above-max", changed(ELASTIC_JOB, spec__minWorkers=5), "spec.minWorkers"),
    ("job-elastic-without-max", changed(ELASTIC_JOB, spec__maxWorkers=DELETE), "spec.workers"),
    ("job-unknown-framework", changed(JOB, spec__framework="jax"), "spec.framework"),
    ("job-missing-framework", changed(JOB, spec__framework=DELETE), "spec.framework"),
    ("job-missing-template", changed(JOB, spec__template=DELETE), "spec.template"),
    ("job-17-gpus-per-worker", changed(JOB, spec__gpusPerWorker=17), "spec.gpusPerWorker"),
    ("job-negative-gpus", changed(JOB, spec__gpusPerWorker=-1), "spec.gpusPerWorker"),
    ("job-bad-gpu-type", changed(JOB, spec__gpuType="A100 80GB"), "spec.gpuType"),
    ("job-bad-queue-name", changed(JOB, spec__queue="Team_A"), "spec.queue"),
    (
        "job-negative-backoff",
        changed(JOB, spec__runPolicy={"backoffLimit": -1}),
        "spec.runPolicy.backoffLimit",
    ),
    ("job-zero-epochs", changed(JOB, spec__hints={"epochs": 0}), "spec.hints.epochs"),
    (
        "job-negative-dataset",
        changed(JOB, spec__hints={"datasetSizeGb": -5}),
        "spec.hints.datasetSizeGb",
    ),
    (
        "job-bad-memory-quantity",
        changed(JOB, spec__template=container(image="x", resources={"limits": {"memory": "lots"}})),
        "spec.template.spec.containers[0].resources.limits.memory",
    ),
    (
        "job-bad-image-pull-policy",
        changed(JOB, spec__template=container(image="x", imagePullPolicy="Sometimes")),
        "spec.template.spec.containers[0].imagePullPolicy",
    ),
    ("job-typo-in-field-name", changed(JOB, spec__wokers=2), "spec.wokers"),
    ("service-min-above-max", changed(SERVICE, spec__minReplicas=5), "spec.minReplicas"),
    ("service-replicas-above-max", changed(SERVICE, spec__replicas=9), "spec.replicas"),
    ("service-missing-max", changed(SERVICE, spec__maxReplicas=DELETE), "spec.maxReplicas"),
    (
        "service-two-targets",
        changed(SERVICE, spec__target={"requestsPerSecondPerReplica": 5, "gpuUtilization": 70}),
        "spec.target",
    ),
    (
        "service-utilisation-over-100",
        changed(SERVICE, spec__target={"gpuUtilization": 150}),
        "spec.target.gpuUtilization",
    ),
    (
        "service-zero-rps",
        changed(SERVICE, spec__target={"requestsPerSecondPerReplica": 0}),
        "spec.target.requestsPerSecondPerReplica",
    ),
    (
        "service-missing-image",
        changed(SERVICE, spec__template={"spec": {"containers": [{"name": "s"}]}}),
        "spec.template.spec.containers[0].image",
    ),
    ("pool-negative-price", changed(POOL, spec__pricePerHour=-1.5), "spec.pricePerHour"),
    ("pool-unknown-provider", changed(POOL, spec__provider="ibm"), "spec.provider"),
    ("pool-min-above-max", changed(POOL, spec__minNodes=5), "spec.minNodes"),
    ("pool-zero-gpus-per-node", changed(POOL, spec__gpusPerNode=0), "spec.gpusPerNode"),
    ("pool-missing-max-nodes", changed(POOL, spec__maxNodes=DELETE), "spec.maxNodes"),
    ("pool-bad-gpu-type", changed(POOL, spec__gpuType="H100!"), "spec.gpuType"),
    ("pool-bad-taint", changed(POOL, spec__taints=["gpu=true:Sometimes"]), "spec.taints[0]"),
    ("pool-bad-label-key", changed(POOL, spec__labels={"bad key": "x"}), "spec.labels"),
    ("pool-bad-label-value", changed(POOL, spec__labels={"team": "a b"}), "spec.labels.team"),
    ("pool-aws-settings-on-kwok", changed(POOL, spec__aws={"clusterName": "c"}), "spec.aws"),
    (
        "pool-gcp-without-project",
        changed(POOL, spec__provider="gcp", spec__gcp={"operationTimeoutSeconds": 60}),
        "spec.gcp.project",
    ),
    (
        "pool-azure-bad-subscription",
        changed(
            POOL,
            spec__provider="azure",
            spec__azure={"subscriptionId": "nope", "resourceGroup": "rg"},
        ),
        "spec.azure.subscriptionId",
    ),
    (
        "pool-eks-nodegroup-without-cluster",
        changed(POOL, spec__provider="aws", spec__aws={"nodegroupName": "ng"}),
        "spec.aws.clusterName",
    ),
]

# (case id, object created first, merge patch that must be refused, field the error names)
IMMUTABLE: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("job-framework", JOB, {"spec": {"framework": "horovod"}}, "spec.framework"),
    ("job-workers", JOB, {"spec": {"workers": 3}}, "spec.workers"),
    ("job-gpus-per-worker", JOB, {"spec": {"gpusPerWorker": 4}}, "spec.gpusPerWorker"),
    ("job-gpu-type", JOB, {"spec": {"gpuType": "h100"}}, "spec.gpuType"),
    (
        "job-template-image",
        JOB,
        {"spec": {"template": container(image="busybox:1.37")}},
        "spec.template",
    ),
    (
        "job-fixed-to-elastic",
        JOB,
        {"spec": {"workers": None, "minWorkers": 1, "maxWorkers": 3}},
        "spec.workers",
    ),
    ("pool-provider", POOL, {"spec": {"provider": "aws"}}, "spec.provider"),
    ("pool-gpus-per-node", POOL, {"spec": {"gpusPerNode": 4}}, "spec.gpusPerNode"),
    ("pool-gpu-type", POOL, {"spec": {"gpuType": "h100"}}, "spec.gpuType"),
]


def _plural(manifest: dict[str, Any]) -> str:
    return {"DLJob": "dljobs", "DLService": "dlservices", "NodePool": "nodepools"}[manifest["kind"]]


def _unique(manifest: dict[str, Any], suffix: str) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["metadata"]["name"] = f"{out['metadata']['name']}-{suffix}"
    return out


def test_valid_base_manifests_are_accepted(kube_cluster: DevCluster, kube_namespace: str) -> None:
    # Every invalid case below is one of these with a single change: the baseline must pass.
    for manifest in (JOB, ELASTIC_JOB, SERVICE, POOL):
        proc = kube_cluster.kubectl(
            "create",
            "--dry-run=server",
            "-n",
            kube_namespace,
            "-f",
            "-",
            input=json.dumps(manifest),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("manifest", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_spec_is_rejected_naming_the_field(
    kube_cluster: DevCluster, kube_namespace: str, manifest: dict[str, Any], field: str
) -> None:
    proc = kube_cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        kube_namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    assert proc.returncode != 0, f"accepted: {json.dumps(manifest['spec'])}"
    assert field in proc.stderr, proc.stderr


def test_there_are_at_least_twenty_invalid_cases() -> None:
    assert len(INVALID) + len(IMMUTABLE) >= 20


@pytest.mark.parametrize(
    ("base", "patch", "field"), [c[1:] for c in IMMUTABLE], ids=[c[0] for c in IMMUTABLE]
)
def test_changing_an_immutable_field_is_rejected(
    kube_cluster: DevCluster,
    kube_namespace: str,
    request: pytest.FixtureRequest,
    base: dict[str, Any],
    patch: dict[str, Any],
    field: str,
) -> None:
    manifest = _unique(base, request.node.callspec.id)
    name = manifest["metadata"]["name"]
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(manifest))
    try:
        proc = kube_cluster.kubectl(
            "patch",
            _plural(manifest),
            name,
            "-n",
            kube_namespace,
            "--type=merge",
            "-p",
            json.dumps(patch),
            check=False,
        )
        assert proc.returncode != 0, f"patch {patch} was accepted"
        assert field in proc.stderr, proc.stderr
        assert "immutable" in proc.stderr or "cannot switch" in proc.stderr, proc.stderr
    finally:
        kube_cluster.kubectl("delete", _plural(manifest), name, "-n", kube_namespace, check=False)


def test_template_of_a_suspended_job_can_change(
    kube_cluster: DevCluster, kube_namespace: str
) -> None:
    job = changed(JOB, metadata__name="held", spec__suspend=True)
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"zone": "b"}}}}}
    kube_cluster.kubectl(
        "patch", "dljob", "held", "-n", kube_namespace, "--type=merge", "-p", json.dumps(patch)
    )
    stored = kube_cluster.get_json("dljob", "held", "-n", kube_namespace)["spec"]["template"]
    assert stored["spec"]["nodeSelector"] == {"zone": "b"}


def test_mutable_fields_can_change(kube_cluster: DevCluster, kube_namespace: str) -> None:
    job = _unique(ELASTIC_JOB, "mutable")
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    name = job["metadata"]["name"]
    patch = {"spec": {"maxWorkers": 6, "priority": 5, "suspend": True}}
    kube_cluster.kubectl(
        "patch", "dljob", name, "-n", kube_namespace, "--type=merge", "-p", json.dumps(patch)
    )
    spec = kube_cluster.get_json("dljob", name, "-n", kube_namespace)["spec"]
    assert (spec["maxWorkers"], spec["priority"], spec["suspend"]) == (6, 5, True)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_applies(kube_cluster: DevCluster, kube_namespace: str, path: Path) -> None:
    assert EXAMPLES, "no examples found"
    doc = yaml.safe_load(path.read_text())
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", str(path))
    try:
        stored = kube_cluster.get_json("-n", kube_namespace, "-f", str(path))
        # What was written is what is stored: nothing pruned, no field renamed.
        assert _contains(stored["spec"], doc["spec"]), json.dumps(stored["spec"], indent=1)
    finally:
        kube_cluster.kubectl("delete", "-n", kube_namespace, "-f", str(path), check=False)


def _contains(stored: Any, written: Any) -> bool:
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(
            k in stored and _contains(stored[k], v) for k, v in written.items()
        )
    if isinstance(written, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(written)
            and all(_contains(s, w) for s, w in zip(stored, written, strict=True))
        )
    if isinstance(written, float | int) and isinstance(stored, float | int):
        return float(stored) == float(written)
    return bool(stored == written)


def test_examples_cover_every_kind_and_cloud() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
    frameworks = {d["spec"]["framework"] for d in docs if d["kind"] == "DLJob"}
    elastic = [d for d in docs if d["kind"] == "DLJob" and "minWorkers" in d["spec"]]
    providers = {d["spec"]["provider"] for d in docs if d["kind"] == "NodePool"}
    assert {"pytorch", "tensorflow"} <= frameworks
    assert elastic
    assert any(d["kind"] == "DLService" for d in docs)
    assert providers == {"aws", "gcp", "azure", "kwok"}
    # The PyTorch example: 2 workers x 8 GPUs.
    assert any(
        d["kind"] == "DLJob"
        and d["spec"]["framework"] == "pytorch"
        and (d["spec"].get("workers"), d["spec"].get("gpusPerWorker")) == (2, 8)
        for d in docs
    )


def test_defaults_are_filled_in(kube_cluster: DevCluster, kube_namespace: str) -> None:
    job = {
        **JOB,
        "metadata": {"name": "defaults"},
        "spec": {
            "framework": "pytorch",
            "workers": 1,
            "template": container(image="x", ports=[{"containerPort": 29500}]),
        },
    }
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    spec = kube_cluster.get_json("dljob", "defaults", "-n", kube_namespace)["spec"]
    assert spec["gpusPerWorker"] == 1
    assert spec["gpuType"] == ""
    assert spec["queue"] == "default"
    assert spec["priority"] == 0
    assert spec["suspend"] is False
    assert spec["runPolicy"] == {"backoffLimit": 3}
    # Defaults inside the pod template come from the core API's schema.
    assert spec["template"]["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"

    pool = _unique(POOL, "defaults")
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(pool))
    try:
        pspec = kube_cluster.get_json("nodepool", pool["metadata"]["name"])["spec"]
        assert (pspec["minNodes"], pspec["spot"], pspec["provisioningDelaySeconds"]) == (
            0,
            False,
            300,
        )
        assert (pspec["groupId"], pspec["region"], pspec["zone"]) == ("", "", "")
    finally:
        kube_cluster.kubectl("delete", "nodepool", pool["metadata"]["name"])


def _columns(output: str) -> list[dict[str, str]]:
    lines = output.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[1:]]


def _patch_status(
    cluster: DevCluster, resource: str, name: str, ns: str, status: dict[str, Any]
) -> None:
    args = ["patch", resource, name, "--subresource=status", "--type=merge"]
    if ns:
        args += ["-n", ns]
    cluster.kubectl(*args, "-p", json.dumps({"status": status}))


def test_kubectl_get_dljobs_shows_phase_workers_gpus_queue(
    kube_cluster: DevCluster, kube_namespace: str
) -> None:
    job = changed(JOB, metadata__name="columns", spec__queue="vision")
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    _patch_status(
        kube_cluster,
        "dljob",
        "columns",
        kube_namespace,
        {"phase": "Running", "workers": 2, "gpus": 16},
    )
    [row] = _columns(kube_cluster.kubectl("get", "dljobs", "-n", kube_namespace).stdout)
    assert list(row) == ["NAME", "PHASE", "WORKERS", "GPUS", "QUEUE", "AGE"]
    assert row["NAME"] == "columns"
    assert (row["PHASE"], row["WORKERS"], row["GPUS"], row["QUEUE"]) == (
        "Running",
        "2",
        "16",
        "vision",
    )
    assert re.fullmatch(r"\d+s", row["AGE"]), row["AGE"]
    [wide] = _columns(kube_cluster.kubectl("get", "dlj", "-n", kube_namespace, "-o", "wide").stdout)
    assert (wide["FRAMEWORK"], wide["GPU-TYPE"], wide["PRIORITY"]) == ("pytorch", "a100", "0")


def test_kubectl_get_nodepools_shows_provider_gpu_type_and_sizes(kube_cluster: DevCluster) -> None:
    pool = changed(
        POOL, metadata__name="columns-pool", spec__minNodes=1, spec__instanceType="kwok-8gpu"
    )
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(pool))
    try:
        _patch_status(
            kube_cluster, "nodepool", "columns-pool", "", {"target": 3, "ready": 2, "inFlight": 1}
        )
        out = kube_cluster.kubectl("get", "nodepools", "columns-pool").stdout
        [row] = _columns(out)
        assert list(row) == ["NAME", "PROVIDER", "GPU-TYPE", "MIN", "TARGET", "READY", "MAX", "AGE"]
        got = (
            row["PROVIDER"],
            row["GPU-TYPE"],
            row["MIN"],
            row["TARGET"],
            row["READY"],
            row["MAX"],
        )
        assert got == ("kwok", "a100", "1", "3", "2", "4")
        [wide] = _columns(kube_cluster.kubectl("get", "dlnp", "columns-pool", "-o", "wide").stdout)
        got = (wide["GPUS/NODE"], wide["INSTANCE-TYPE"], wide["PRICE/HOUR"], wide["SPOT"])
        assert got == ("8", "kwok-8gpu", "32.77", "false")
    finally:
        kube_cluster.kubectl("delete", "nodepool", "columns-pool")


def test_dlservice_scale_subresource(kube_cluster: DevCluster, kube_namespace: str) -> None:
    svc = changed(SERVICE, metadata__name="scaled", spec__replicas=1)
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(svc))
    _patch_status(
        kube_cluster,
        "dlservice",
        "scaled",
        kube_namespace,
        {"replicas": 1, "readyReplicas": 1, "selector": "app=scaled"},
    )
    kube_cluster.kubectl("scale", "dlservice", "scaled", "-n", kube_namespace, "--replicas=3")
    assert kube_cluster.get_json("dlsvc", "scaled", "-n", kube_namespace)["spec"]["replicas"] == 3
    scale = json.loads(
        kube_cluster.kubectl(
            "get",
            "--raw",
            f"/apis/dlscaler.io/v1alpha1/namespaces/{kube_namespace}/dlservices/scaled/scale",
        ).stdout
    )
    assert scale["kind"] == "Scale"
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (3, 1)
    assert scale["status"]["selector"] == "app=scaled"
    # Out of [minReplicas, maxReplicas]: refused, naming the field.
    proc = kube_cluster.kubectl(
        "scale", "dlservice", "scaled", "-n", kube_namespace, "--replicas=9", check=False
    )
    assert proc.returncode != 0
    assert "spec.replicas" in proc.stderr, proc.stderr
    [row] = _columns(kube_cluster.kubectl("get", "dlservices", "-n", kube_namespace).stdout)
    assert (row["REPLICAS"], row["READY"], row["MIN"], row["MAX"], row["GPUS/REPLICA"]) == (
        "1",
        "1",
        "1",
        "4",
        "1",
    )


FULL_JOB_STATUS: dict[str, Any] = {
    "phase": "Running",
    "conditions": [
        {
            "type": "Admitted",
            "status": "True",
            "reason": "CapacityFound",
            "message": "2 nodes of pool a100",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "observedGeneration": 1,
        }
    ],
    "workers": 2,
    "gpus": 16,
    "workerStates": [
        {"index": 0, "podName": "j-0", "nodeName": "n1", "phase": "Running", "restarts": 0},
        {"index": 1, "podName": "j-1", "nodeName": "n2", "phase": "Pending", "message": "pulling"},
    ],
    "submittedTime": "2026-01-02T03:00:00Z",
    "admittedTime": "2026-01-02T03:04:05Z",
    "startTime": "2026-01-02T03:05:00Z",
    "completionTime": "2026-01-02T04:05:00Z",
    "estimatedStartTime": "2026-01-02T03:04:00Z",
    "restarts": 1,
    "message": "running on 2 nodes",
    "observedGeneration": 1,
}
FULL_POOL_STATUS: dict[str, Any] = {
    "target": 4,
    "ready": 2,
    "inFlight": 2,
    "draining": 1,
    "lastScaleTime": "2026-01-02T03:04:05Z",
    "lastError": "capacity: aws-a100 set_target_size: InsufficientInstanceCapacity",
    "conditions": [{"type": "Ready", "status": "False", "reason": "Stockout", "message": "x"}],
    "observedGeneration": 2,
}
FULL_SERVICE_STATUS: dict[str, Any] = {
    "replicas": 2,
    "readyReplicas": 1,
    "selector": "app=svc",
    "currentRequestsPerSecondPerReplica": 12.5,
    "currentGpuUtilization": 61.0,
    "lastScaleTime": "2026-01-02T03:04:05Z",
    "conditions": [{"type": "Scaling", "status": "True"}],
    "message": "scaled up for load",
    "observedGeneration": 3,
}


@pytest.mark.parametrize(
    ("base", "status"),
    [(JOB, FULL_JOB_STATUS), (POOL, FULL_POOL_STATUS), (SERVICE, FULL_SERVICE_STATUS)],
    ids=["dljob", "nodepool", "dlservice"],
)
def test_every_status_field_the_controller_writes_is_kept(
    kube_cluster: DevCluster, kube_namespace: str, base: dict[str, Any], status: dict[str, Any]
) -> None:
    # The API server silently drops status fields the schema does not declare.
    obj = _unique(base, "status")
    name, plural = obj["metadata"]["name"], _plural(obj)
    ns = "" if obj["kind"] == "NodePool" else kube_namespace
    scope = ["-n", ns] if ns else []
    kube_cluster.kubectl("create", *scope, "-f", "-", input=json.dumps(obj))
    try:
        _patch_status(kube_cluster, plural, name, ns, status)
        stored = kube_cluster.get_json(plural, name, *scope)["status"]
        assert stored == status
        # ...and a status written through the main resource is ignored (status subresource).
        kube_cluster.kubectl(
            "patch", plural, name, *scope, "--type=merge", "-p", '{"status": {"message": "x"}}'
        )
        assert kube_cluster.get_json(plural, name, *scope)["status"] == status
    finally:
        kube_cluster.kubectl("delete", plural, name, *scope)


def test_invalid_status_is_rejected(kube_cluster: DevCluster, kube_namespace: str) -> None:
    job = _unique(JOB, "badstatus")
    kube_cluster.kubectl("create", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    proc = kube_cluster.kubectl(
        "patch",
        "dljob",
        job["metadata"]["name"],
        "-n",
        kube_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Pending"}}',
        check=False,
    )
    assert proc.returncode != 0
    assert "status.phase" in proc.stderr, proc.stderr


def test_short_names_and_category(kube_cluster: DevCluster, kube_namespace: str) -> None:
    kube_cluster.kubectl(
        "create", "-n", kube_namespace, "-f", "-", input=json.dumps(_unique(JOB, "cat"))
    )
    kube_cluster.kubectl(
        "create", "-n", kube_namespace, "-f", "-", input=json.dumps(_unique(SERVICE, "cat"))
    )
    names = kube_cluster.kubectl(
        "get", "dlscaler", "-n", kube_namespace, "-o", "name"
    ).stdout.split()
    assert sorted(names) == [
        "dljob.dlscaler.io/job-cat",
        "dlservice.dlscaler.io/svc-cat",
    ]
    resources = kube_cluster.kubectl(
        "api-resources", "--api-group=dlscaler.io", "-o", "wide"
    ).stdout
    rows = {r["NAME"]: r for r in _columns(resources)}
    assert rows["dljobs"]["SHORTNAMES"] == "dlj"
    assert rows["dlservices"]["SHORTNAMES"] == "dlsvc"
    assert rows["nodepools"]["SHORTNAMES"] == "dlnp"
    assert rows["nodepools"]["NAMESPACED"] == "false"
    assert rows["dljobs"]["NAMESPACED"] == "true"
    assert rows["nodepools"]["CATEGORIES"] == "dlscaler"


def test_kubectl_explain_documents_the_fields(kube_cluster: DevCluster) -> None:
    out = kube_cluster.kubectl("explain", "dljob.spec.gpusPerWorker").stdout
    assert "0-16" in out
    out = kube_cluster.kubectl("explain", "nodepool.spec.pricePerHour").stdout
    assert "USD" in out


def test_committed_crds_match_the_generator(kube_cluster: DevCluster) -> None:
    # crds/ is generated from hack/gen-crds.py and this API server's pod schema.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "hack" / "gen-crds.py"),
            "--check",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--kubectl",
            str(kube_cluster.bin("kubectl")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_crds_fit_client_side_apply(kube_cluster: DevCluster) -> None:
    # kubectl apply (client side) keeps the whole object in an annotation limited to 256 KiB.
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert len(json.dumps(doc)) < 256 * 1024 - 4096, path.name
    proc = kube_cluster.kubectl("apply", "--dry-run=server", "-f", str(REPO_ROOT / "crds"))
    assert proc.returncode == 0
