"""A DLJob's gang as Kubernetes objects: worker pods and the headless Service between them.

Each worker is the job's pod template plus:

* the GPUs (``nvidia.com/gpu`` request and limit on the first container),
* a required node affinity to the node admission reserved for it (``matchFields`` on
  ``metadata.name``, as the DaemonSet controller pins pods), ANDed with the template's own
  node affinity, and tolerations for the pool's taints;
* a stable DNS name, ``worker-<i>.<service>.<namespace>.svc``, from ``hostname`` and
  ``subdomain`` and a headless Service that publishes not-ready addresses (workers must
  find each other before any of them is ready);
* the rendezvous environment of its framework (PyTorch: MASTER_ADDR, MASTER_PORT,
  WORLD_SIZE, RANK, and torchrun's PET_* variables; TensorFlow: TF_CONFIG; Horovod: the
  host list), without overriding variables the template sets itself.

Everything is owned by the DLJob, so deleting the job deletes its gang.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from controller.dljob import JobView
from controller.kube import owner_reference
from controller.names import (
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNED_POOL_ANNOTATION,
    ATTEMPT_LABEL,
    GPU_RESOURCE,
    JOB_NAME_LABEL,
    JOB_UID_LABEL,
    WORKER_INDEX_LABEL,
)

PYTORCH_PORT = 29500
TENSORFLOW_PORT = 2222
HOROVOD_SSH_PORT = 22


def service_name(job_name: str) -> str:
    """A DNS-1035 label for the job's headless Service (the job name when it is one)."""
    name = job_name.lower()
    if not re.match(r"^[a-z]", name):
        name = "j-" + name
    name = re.sub(r"[^a-z0-9-]", "-", name)[:63].rstrip("-")
    return name or "dljob"


def worker_host(index: int) -> str:
    return f"worker-{index}"


def worker_pod_name(job_name: str, index: int) -> str:
    return f"{job_name}-worker-{index}"


def worker_fqdn(job: JobView, index: int) -> str:
    return f"{worker_host(index)}.{service_name(job.name)}.{job.namespace}.svc"


def label_value(text: str) -> str:
    """Truncated to a label value's 63 characters, ending alphanumeric."""
    return re.sub(r"[^A-Za-z0-9]+$", "", text[:63])


def job_labels(job: JobView) -> dict[str, str]:
    return {JOB_UID_LABEL: job.uid, JOB_NAME_LABEL: label_value(job.name)}


def rendezvous_env(job: JobView, index: int, workers: int) -> list[dict[str, str]]:
    """The environment that lets the workers find each other, per framework."""
    env = {
        "DLSCALER_JOB_NAME": job.name,
        "DLSCALER_WORKER_INDEX": str(index),
        "DLSCALER_NUM_WORKERS": str(workers),
    }
    hosts = [worker_fqdn(job, i) for i in range(workers)]
    if job.framework == "pytorch":
        master = hosts[0]
        env.update(
            {
                "MASTER_ADDR": master,
                "MASTER_PORT": str(PYTORCH_PORT),
                "WORLD_SIZE": str(workers),
                "RANK": str(index),
                # torchrun reads these (as Kubeflow's PyTorchJob sets them).
                "PET_MASTER_ADDR": master,
                "PET_MASTER_PORT": str(PYTORCH_PORT),
                "PET_NNODES": str(workers),
                "PET_NODE_RANK": str(index),
                "PET_NPROC_PER_NODE": str(max(1, job.gpus_per_worker)),
            }
        )
    elif job.framework == "tensorflow":
        tf_config = {
            "cluster": {"worker": [f"{h}:{TENSORFLOW_PORT}" for h in hosts]},
            "task": {"type": "worker", "index": index},
        }
        env["TF_CONFIG"] = json.dumps(tf_config, separators=(",", ":"))
    elif job.framework == "horovod":
        slots = max(1, job.gpus_per_worker)
        env.update(
            {
                # horovodrun -H takes this list as it is; -np is the process count.
                "HOROVOD_HOSTS": ",".join(f"{h}:{slots}" for h in hosts),
                "HOROVOD_NUM_PROC": str(slots * workers),
                "HOROVOD_RANK_OFFSET": str(index * slots),
            }
        )
    return [{"name": k, "value": v} for k, v in env.items()]


def _pin_affinity(affinity: Mapping[str, Any] | None, node: str) -> dict[str, Any]:
    """The template's affinity with every required node term also requiring ``node``."""
    out = copy.deepcopy(dict(affinity or {}))
    node_aff = out.setdefault("nodeAffinity", {})
    required = node_aff.setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
    )
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({})
    for term in terms:  # terms are ORed: each one must also require the node
        term.setdefault("matchFields", []).append(copy.deepcopy(pin))
    return out


def parse_taint(text: str) -> dict[str, str]:
    """``key[=value]:Effect`` (the NodePool form) -> a Kubernetes taint."""
    head, _, effect = text.rpartition(":")
    key, _, value = head.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def _tolerations(existing: Sequence[Mapping[str, Any]], taints: Sequence[str]) -> list[Any]:
    out = [dict(t) for t in existing]
    for text in taints:
        taint = parse_taint(text)
        tol = {"key": taint["key"], "effect": taint["effect"]}
        if "value" in taint:
            tol.update(operator="Equal", value=taint["value"])
        else:
            tol["operator"] = "Exists"
        if tol not in out:
            out.append(tol)
    return out


def render_worker(
    job: JobView,
    index: int,
    *,
    workers: int,
    node: str,
    pool: str,
    pool_taints: Sequence[str] = (),
) -> dict[str, Any]:
    """The pod of worker ``index`` of ``workers``, pinned to ``node`` of ``pool``."""
    template = job.template
    meta = template.get("metadata") or {}
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    labels = {**(meta.get("labels") or {}), **job_labels(job)}
    labels[WORKER_INDEX_LABEL] = str(index)
    labels[ATTEMPT_LABEL] = str(job.attempt)
    annotations = {
        **(meta.get("annotations") or {}),
        ASSIGNED_NODE_ANNOTATION: node,
        ASSIGNED_POOL_ANNOTATION: pool,
    }
    containers = [dict(c) for c in spec.get("containers") or []]
    env = rendezvous_env(job, index, workers)
    for i, container in enumerate(containers):
        own = list(container.get("env") or [])
        names = {e.get("name") for e in own}
        container["env"] = own + [e for e in env if e["name"] not in names]
        if i == 0 and job.gpus_per_worker:
            res = dict(container.get("resources") or {})
            for part in ("limits", "requests"):
                res[part] = {**(res.get(part) or {}), GPU_RESOURCE: str(job.gpus_per_worker)}
            container["resources"] = res
        containers[i] = container
    spec["containers"] = containers
    spec["hostname"] = worker_host(index)
    spec["subdomain"] = service_name(job.name)
    spec.setdefault("restartPolicy", "Never")  # a failed worker restarts the whole gang
    spec["affinity"] = _pin_affinity(spec.get("affinity"), node)
    if pool_taints:
        spec["tolerations"] = _tolerations(spec.get("tolerations") or [], pool_taints)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": worker_pod_name(job.name, index),
            "namespace": job.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(job.obj)],
        },
        "spec": spec,
    }


def render_service(job: JobView) -> dict[str, Any]:
    """The headless Service that gives each worker its DNS name."""
    ports = [{"name": "rendezvous", "port": PYTORCH_PORT, "targetPort": PYTORCH_PORT}]
    if job.framework == "tensorflow":
        ports = [{"name": "grpc", "port": TENSORFLOW_PORT, "targetPort": TENSORFLOW_PORT}]
    elif job.framework == "horovod":
        ports = [{"name": "ssh", "port": HOROVOD_SSH_PORT, "targetPort": HOROVOD_SSH_PORT}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(job.name),
            "namespace": job.namespace,
            "labels": job_labels(job),
            "ownerReferences": [owner_reference(job.obj)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_UID_LABEL: job.uid},
            "ports": ports,
        },
    }
