#!/usr/bin/env python3
"""Generate crds/*.yaml: the DLJob, DLService and NodePool CustomResourceDefinitions.

The hand-written part (our own fields, their bounds, CEL rules, printer columns) is the
Python data below; the pod ``template`` schema is converted from the API server's own
OpenAPI v3 document (``/openapi/v3/api/v1``, ``io.k8s.api.core.v1.PodTemplateSpec``), so
a DLJob's workers are validated exactly as a Deployment's pods would be, and follow the
Kubernetes version we build against.

    hack/gen-crds.py                     start a throwaway API server, write crds/
    hack/gen-crds.py --kubeconfig PATH   read the OpenAPI document from a running cluster
    hack/gen-crds.py --openapi FILE      ... or from a saved copy of /openapi/v3/api/v1
    hack/gen-crds.py --check ...         exit 1 if crds/ differs from what would be written

The output is committed: crds/ is the one source the tests, the examples and the Helm
chart use. Descriptions are kept for our own fields and dropped inside ``template`` (the
pod schema would otherwise make each CRD larger than the 256 KiB that client-side
``kubectl apply`` can record in its last-applied annotation).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
GROUP = "dlscaler.io"
VERSION = "v1alpha1"

Schema = dict[str, Any]

# --- the pod template, from the API server's OpenAPI document ---------------------------

# Keys of an OpenAPI schema that a CRD's structural schema accepts and we keep. Anything
# else (x-kubernetes-patch-*, x-kubernetes-unions, $ref wrappers, descriptions) is dropped.
_KEPT_KEYS = {
    "type",
    "format",
    "enum",
    "default",
    "required",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}

# controller-gen's schema for resource.Quantity: a number, or a string such as 500m / 16Gi.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_SPECIAL_REFS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"x-kubernetes-int-or-string": True},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": {"type": "string", "format": "date-time"},
}
# Only these ObjectMeta fields make sense in a pod template (the controller names the pods).
_TEMPLATE_METADATA: Schema = {
    "type": "object",
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_REF_PREFIX = "#/components/schemas/"
_CONTAINER = "io.k8s.api.core.v1.Container"


def _ref_name(node: Schema) -> str | None:
    """The referenced schema's name, for ``$ref`` and the ``allOf: [{$ref}]`` wrapper."""
    if "$ref" in node:
        return str(node["$ref"]).removeprefix(_REF_PREFIX)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        return str(all_of[0]["$ref"]).removeprefix(_REF_PREFIX)
    return None


def _useful_default(value: Any) -> bool:
    # The OpenAPI document marks struct references with `default: {}` (and some enums with
    # ""): meaningless as CRD defaults and invalid against the type's required fields.
    return value is not None and value not in ({}, [], "")


def _convert(node: Schema, schemas: dict[str, Schema], stack: tuple[str, ...]) -> Schema:
    out: Schema = {}
    ref = _ref_name(node)
    if ref is not None:
        if ref in stack:
            raise ValueError(f"recursive schema {' -> '.join((*stack, ref))}: cannot inline")
        if ref == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":
            return copy.deepcopy(_TEMPLATE_METADATA)
        if ref in _SPECIAL_REFS:
            out = copy.deepcopy(_SPECIAL_REFS[ref])
        else:
            out = _convert(schemas[ref], schemas, (*stack, ref))
            if ref == _CONTAINER:
                # The core API rejects an image-less container only when the pod is
                # created; for a DLJob that would be long after `kubectl apply` said yes.
                out["required"] = sorted({*out.get("required", []), "image"})
                out["properties"]["image"]["minLength"] = 1
        if _useful_default(node.get("default")):  # a wrapper may default the referenced type
            out["default"] = node["default"]
        return out
    for key, value in node.items():
        if key in _KEPT_KEYS and (key != "default" or _useful_default(value)):
            out[key] = copy.deepcopy(value)
    if "properties" in node:
        out["properties"] = {
            name: _convert(prop, schemas, stack) for name, prop in node["properties"].items()
        }
    if "items" in node:
        out["items"] = _convert(node["items"], schemas, stack)
        _default_list_map_keys(out, node["items"], schemas)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], schemas, stack)
    if out.get("format") == "int-or-string":  # OpenAPI v3 spells IntOrString this way
        out = {"x-kubernetes-int-or-string": True}
    return out


def _default_list_map_keys(array: Schema, items_src: Schema, schemas: dict[str, Schema]) -> None:
    """A list-map key must be required or defaulted: restore the empty-string default that
    _useful_default dropped (imagePullSecrets[].name: "" is how the core API has it)."""
    ref = _ref_name(items_src)
    src = schemas[ref] if ref else items_src
    items = array["items"]
    for key in array.get("x-kubernetes-list-map-keys", []):
        prop = items["properties"][key]
        if key in items.get("required", []) or "default" in prop:
            continue
        original = src.get("properties", {}).get(key, {}).get("default")
        if original is None:
            raise ValueError(f"list-map key {key} has neither a default nor required")
        prop["default"] = original


def pod_template_schema(openapi_v1: dict[str, Any]) -> Schema:
    """The structural schema of a PodTemplateSpec, inlined from ``/openapi/v3/api/v1``."""
    schemas = openapi_v1["components"]["schemas"]
    spec = _convert(schemas["io.k8s.api.core.v1.PodTemplateSpec"], schemas, ())
    spec["properties"]["spec"]["properties"].pop("ephemeralContainers", None)
    spec["required"] = ["spec"]
    spec["description"] = (
        "The worker pod template: a core/v1 PodTemplateSpec, validated with the API "
        "server's own pod schema (see `kubectl explain pod.spec`). Every container "
        "needs an image."
    )
    return spec


# --- schema helpers ---------------------------------------------------------------------


def integer(
    desc: str, *, minimum: int | None = None, maximum: int | None = None, **kw: Any
) -> Schema:
    s: Schema = {"type": "integer", "description": desc}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    s.update(kw)
    return s


def number(desc: str, *, minimum: float | None = None, **kw: Any) -> Schema:
    s: Schema = {"type": "number", "description": desc}
    if minimum is not None:
        s["minimum"] = minimum
    s.update(kw)
    return s


def string(desc: str, **kw: Any) -> Schema:
    return {"type": "string", "description": desc, **kw}


def obj(desc: str, properties: dict[str, Schema], **kw: Any) -> Schema:
    return {"type": "object", "description": desc, "properties": properties, **kw}


def immutable(schema: Schema, name: str) -> Schema:
    """A transition rule: the field keeps the value it was submitted with."""
    rule = {
        "rule": "self == oldSelf",
        "message": f"{name} is immutable: it cannot change after the resource is created "
        "(delete and re-create it instead)",
    }
    schema.setdefault("x-kubernetes-validations", []).append(rule)
    return schema


def rule(expr: str, message: str, field_path: str = "", reason: str = "") -> Schema:
    r: Schema = {"rule": expr, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    if reason:
        r["reason"] = reason
    return r


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Same as dlscaler.config.GPU_TYPE_PATTERN: lower-case, e.g. a100, h100-80gb, l4; "" = any.
GPU_TYPE_PATTERN = r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
TAINT_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
    r"(=(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?)?:(NoSchedule|PreferNoSchedule|NoExecute)$"
)
TIME = {"type": "string", "format": "date-time"}


def gpu_type(desc: str) -> Schema:
    return string(desc, pattern=GPU_TYPE_PATTERN, maxLength=63, default="")


def conditions() -> Schema:
    """metav1.Condition, as in every Kubernetes API (``kubectl wait --for=condition=...``)."""
    return {
        "type": "array",
        "description": "The latest observations of the resource's state.",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "maxItems": 16,
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": string("Condition type in CamelCase, e.g. Ready.", maxLength=316),
                "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
                "reason": string("Machine-readable CamelCase reason.", maxLength=1024),
                "message": string("Human-readable details.", maxLength=32768),
                "lastTransitionTime": {**TIME, "description": "When status last changed."},
                "observedGeneration": integer(
                    "The .metadata.generation the condition was set for.", minimum=0
                ),
            },
        },
    }


def crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    scope: str,
    description: str,
    spec: Schema,
    status: Schema,
    columns: list[Schema],
    scale: Schema | None = None,
) -> Schema:
    subresources: Schema = {"status": {}}
    if scale is not None:
        subresources["scale"] = scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "dlscaler"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["dlscaler"],
            },
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def column(name: str, path: str, typ: str = "string", desc: str = "", priority: int = 0) -> Schema:
    c: Schema = {"name": name, "type": typ, "jsonPath": path}
    if desc:
        c["description"] = desc
    if priority:
        c["priority"] = priority
    return c


AGE = column("Age", ".metadata.creationTimestamp", "date")

# --- DLJob ------------------------------------------------------------------------------

MAX_WORKERS = 4096


def dljob(template: Schema) -> Schema:
    workers_desc = "Workers in a fixed-size gang: all start together or none does."
    spec = obj(
        "What to run and how much of the cluster it needs. Set either `workers` (a "
        "fixed-size gang) or `minWorkers` and `maxWorkers` (an elastic job).",
        {
            "framework": immutable(
                string(
                    "The training framework; decides the rendezvous environment the "
                    "controller sets (MASTER_ADDR/WORLD_SIZE/RANK, or TF_CONFIG).",
                    enum=["pytorch", "tensorflow", "horovod"],
                ),
                "framework",
            ),
            "template": template,
            "workers": immutable(integer(workers_desc, minimum=1, maximum=MAX_WORKERS), "workers"),
            "minWorkers": integer(
                "Elastic jobs: start once this many workers fit.", minimum=1, maximum=MAX_WORKERS
            ),
            "maxWorkers": integer(
                "Elastic jobs: never grow beyond this many workers.",
                minimum=1,
                maximum=MAX_WORKERS,
            ),
            "gpusPerWorker": immutable(
                integer(
                    "GPUs (nvidia.com/gpu) each worker needs, 0-16; a worker never spans nodes.",
                    minimum=0,
                    maximum=16,
                    default=1,
                ),
                "gpusPerWorker",
            ),
            "gpuType": immutable(
                gpu_type(
                    "The GPU type the workers need (a NodePool's gpuType, e.g. a100); "
                    "empty: any type."
                ),
                "gpuType",
            ),
            "priority": integer(
                "Higher runs first when GPUs are short (the priority queue ordering).",
                minimum=-1_000_000,
                maximum=1_000_000,
                default=0,
                format="int32",
            ),
            "queue": string(
                "The queue the job is accounted to (fair-share weights are per queue).",
                pattern=DNS_LABEL,
                maxLength=63,
                default="default",
            ),
            "runPolicy": obj(
                "What to do when workers fail or the job runs too long.",
                {
                    "backoffLimit": integer(
                        "Restarts of the whole gang before the job is marked Failed.",
                        minimum=0,
                        maximum=1000,
                        default=3,
                        format="int32",
                    ),
                    "activeDeadlineSeconds": integer(
                        "Fail the job once it has run this long (seconds).",
                        minimum=1,
                        format="int64",
                    ),
                    "ttlSecondsAfterFinished": integer(
                        "Delete the job this long after it finished (seconds).",
                        minimum=0,
                        format="int32",
                    ),
                },
                default={},
            ),
            "suspend": {
                "type": "boolean",
                "default": False,
                "description": "While true the job is held: no pods run and no GPUs are "
                "asked for (as in batch/v1 Job, so a queue manager such as Kueue can admit "
                "it).",
            },
            "hints": obj(
                "Optional facts about the job the runtime regressor uses to estimate "
                "how long it will run.",
                {
                    "datasetSizeGb": number("Dataset size in GB.", minimum=0),
                    "epochs": integer("Epochs to train.", minimum=1, format="int32"),
                    "modelParameters": number("Model size in parameters, e.g. 7e9.", minimum=0),
                },
            ),
        },
        required=["framework", "template"],
    )
    spec["x-kubernetes-validations"] = [
        rule(
            "has(self.workers) || (has(self.minWorkers) && has(self.maxWorkers))",
            "set workers (a fixed-size gang) or both minWorkers and maxWorkers (an elastic job)",
            ".workers",
            "FieldValueRequired",
        ),
        rule(
            "!has(self.workers) || (!has(self.minWorkers) && !has(self.maxWorkers))",
            "workers cannot be combined with minWorkers/maxWorkers: set one or the other",
            ".workers",
            "FieldValueForbidden",
        ),
        rule(
            "!has(self.minWorkers) || !has(self.maxWorkers) || self.minWorkers <= self.maxWorkers",
            "minWorkers must be less than or equal to maxWorkers",
            ".minWorkers",
        ),
        rule(
            # As in batch/v1 Job: a queue manager (Kueue) may adjust a held job's pods
            # (node selectors, tolerations) before admitting it, nobody may after.
            "oldSelf.suspend || self.template == oldSelf.template",
            "template is immutable unless the job is suspended (spec.suspend: true)",
            ".template",
        ),
        rule(
            "has(self.workers) == has(oldSelf.workers)",
            "a job cannot switch between fixed (workers) and elastic (minWorkers/maxWorkers) "
            "after it was created",
            ".workers",
        ),
    ]
    status = obj(
        "What the controller observed; written only through the status subresource.",
        {
            "phase": string(
                "Queued (waiting for GPUs), Admitted (capacity found, pods starting), "
                "Running, Succeeded or Failed.",
                enum=["Queued", "Admitted", "Running", "Succeeded", "Failed"],
            ),
            "conditions": conditions(),
            "workers": integer("Workers the gang has now (or asks for, while queued).", minimum=0),
            "gpus": integer(
                "GPUs the gang holds (or asks for): workers x gpusPerWorker.", minimum=0
            ),
            "workerStates": {
                "type": "array",
                "description": "One entry per worker pod.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["index"],
                "maxItems": MAX_WORKERS,
                "items": obj(
                    "A worker's pod and its state.",
                    {
                        "index": integer("The worker's rank.", minimum=0),
                        "podName": string("The worker's pod.", maxLength=253),
                        "nodeName": string("The node it runs on.", maxLength=253),
                        "phase": string(
                            "The pod's phase.",
                            enum=["Pending", "Running", "Succeeded", "Failed", "Unknown"],
                        ),
                        "restarts": integer("Container restarts of this worker.", minimum=0),
                        "message": string("Why the worker is in this state.", maxLength=4096),
                    },
                    required=["index"],
                ),
            },
            "submittedTime": {**TIME, "description": "When the controller first saw the job."},
            "admittedTime": {**TIME, "description": "When capacity was found for the gang."},
            "startTime": {**TIME, "description": "When every worker was running."},
            "completionTime": {**TIME, "description": "When the job succeeded or failed."},
            "estimatedStartTime": {
                **TIME,
                "description": "While queued: when the job is expected to start.",
            },
            "restarts": integer("Gang restarts so far (see runPolicy.backoffLimit).", minimum=0),
            "nextRestartTime": {
                **TIME,
                "description": "After a failure: when the gang is queued again (the restart "
                "backoff doubles per restart).",
            },
            "resizes": integer(
                "Elastic resizes so far (restarts with a new number of workers; they do not "
                "count against runPolicy.backoffLimit).",
                minimum=0,
            ),
            "lastResizeTime": {**TIME, "description": "When the elastic job was last resized."},
            "message": string("A human-readable summary of the phase.", maxLength=32768),
            "observedGeneration": integer(
                "The .metadata.generation this status describes.", minimum=0
            ),
        },
    )
    columns = [
        column("Phase", ".status.phase", desc="Queued, Admitted, Running, Succeeded or Failed"),
        column("Workers", ".status.workers", "integer", "Workers now (or asked for)"),
        column("GPUs", ".status.gpus", "integer", "GPUs held (or asked for)"),
        column("Queue", ".spec.queue"),
        AGE,
        column("Framework", ".spec.framework", priority=1),
        column("GPU-Type", ".spec.gpuType", priority=1),
        column("Priority", ".spec.priority", "integer", priority=1),
    ]
    return crd(
        kind="DLJob",
        plural="dljobs",
        short_names=["dlj"],
        scope="Namespaced",
        description="A distributed deep-learning training job: a gang of GPU workers that "
        "start together, with the pools scaled to fit it.",
        spec=spec,
        status=status,
        columns=columns,
    )


# --- DLService --------------------------------------------------------------------------


def dlservice(template: Schema) -> Schema:
    template = copy.deepcopy(template)
    template["description"] = template["description"].replace("worker", "replica")
    spec = obj(
        "A model server: its pod template, replica bounds and scaling target.",
        {
            "template": template,
            "replicas": integer(
                "Replicas wanted now; the controller (or `kubectl scale`) sets it within "
                "[minReplicas, maxReplicas].",
                minimum=0,
                format="int32",
            ),
            "minReplicas": integer(
                "Never fewer replicas than this.", minimum=0, default=1, format="int32"
            ),
            "maxReplicas": integer("Never more replicas than this.", minimum=1, format="int32"),
            "gpusPerReplica": integer(
                "GPUs (nvidia.com/gpu) each replica needs, 0-16.", minimum=0, maximum=16, default=1
            ),
            "gpuType": gpu_type("The GPU type the replicas need; empty: any type."),
            "target": obj(
                "What one replica should carry; set exactly one of "
                "requestsPerSecondPerReplica and gpuUtilization.",
                {
                    "requestsPerSecondPerReplica": number(
                        "Requests per second one replica serves at the target load.",
                        minimum=0,
                        exclusiveMinimum=True,
                    ),
                    "gpuUtilization": integer(
                        "Target mean GPU utilisation, percent (1-100).", minimum=1, maximum=100
                    ),
                    "prometheusQuery": string(
                        "PromQL giving the current value of the metric (requests per "
                        "second, or GPU utilisation percent) for this service.",
                        maxLength=4096,
                    ),
                },
                **{
                    "x-kubernetes-validations": [
                        rule(
                            "has(self.requestsPerSecondPerReplica) != has(self.gpuUtilization)",
                            "set exactly one of requestsPerSecondPerReplica and gpuUtilization",
                        )
                    ]
                },
            ),
        },
        required=["template", "maxReplicas", "target"],
    )
    spec["x-kubernetes-validations"] = [
        rule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas",
        ),
        rule(
            "!has(self.replicas) || (self.replicas >= self.minReplicas && "
            "self.replicas <= self.maxReplicas)",
            "replicas must be between minReplicas and maxReplicas",
            ".replicas",
        ),
    ]
    status = obj(
        "What the controller observed; written only through the status subresource.",
        {
            "replicas": integer("Replicas that exist now.", minimum=0),
            "readyReplicas": integer("Replicas ready to serve.", minimum=0),
            "selector": string(
                "The label selector of the replicas' pods (for the scale subresource).",
                maxLength=4096,
            ),
            "currentRequestsPerSecondPerReplica": number(
                "The last measured requests per second per replica.", minimum=0
            ),
            "currentGpuUtilization": number(
                "The last measured mean GPU utilisation, percent.", minimum=0
            ),
            "lastScaleTime": {**TIME, "description": "When replicas last changed."},
            "conditions": conditions(),
            "message": string("A human-readable summary.", maxLength=32768),
            "observedGeneration": integer(
                "The .metadata.generation this status describes.", minimum=0
            ),
        },
    )
    columns = [
        column("Replicas", ".status.replicas", "integer", "Replicas now"),
        column("Ready", ".status.readyReplicas", "integer"),
        column("Min", ".spec.minReplicas", "integer"),
        column("Max", ".spec.maxReplicas", "integer"),
        column("GPUs/Replica", ".spec.gpusPerReplica", "integer"),
        AGE,
        column("GPU-Type", ".spec.gpuType", priority=1),
    ]
    return crd(
        kind="DLService",
        plural="dlservices",
        short_names=["dlsvc"],
        scope="Namespaced",
        description="A GPU model server scaled on load; dlscaler runs it as a Deployment "
        "and a Service and grows the pools under it.",
        spec=spec,
        status=status,
        columns=columns,
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    )


# --- NodePool ---------------------------------------------------------------------------

PROVIDERS = ["aws", "gcp", "azure", "kwok"]


def _cloud(
    desc: str,
    properties: dict[str, Schema],
    *,
    required: list[str] | None = None,
    rules: list[Schema] | None = None,
) -> Schema:
    # Mirrors providers/settings.py, which validates these again (extra="forbid"): a typo
    # is rejected at `kubectl apply` rather than when the controller first scales the pool.
    s = obj(desc, properties)
    if required:
        s["required"] = required
    if rules:
        s["x-kubernetes-validations"] = rules
    return s


def nodepool() -> Schema:
    name_like = {"maxLength": 1024}
    spec = obj(
        "A cloud node group of identical GPU machines that dlscaler may resize. The fields "
        "are those of a pools file entry (dlscaler.config.PoolModel).",
        {
            "provider": immutable(
                string("The cloud: aws, gcp, azure, or kwok (fake nodes).", enum=PROVIDERS),
                "provider",
            ),
            "groupId": immutable(
                string(
                    "The cloud's group: Auto Scaling group or EKS nodegroup, managed "
                    "instance group, VM scale set.",
                    default="",
                    **name_like,
                ),
                "groupId",
            ),
            "region": immutable(
                string(
                    "Cloud region, e.g. us-east-1.",
                    pattern=r"^$|" + DNS_LABEL,
                    maxLength=63,
                    default="",
                ),
                "region",
            ),
            "zone": immutable(
                string(
                    "Zone, for zonal groups (us-central1-a; Azure: 1).",
                    pattern=r"^$|" + DNS_LABEL,
                    maxLength=63,
                    default="",
                ),
                "zone",
            ),
            "instanceType": immutable(
                string(
                    "Machine type, e.g. p4d.24xlarge, a2-highgpu-8g, Standard_ND96asr_v4.",
                    pattern=r"^$|^[A-Za-z0-9][-A-Za-z0-9._]*$",
                    maxLength=128,
                    default="",
                ),
                "instanceType",
            ),
            "gpuType": immutable(
                gpu_type(
                    "GPU type of the nodes (lower-case, e.g. a100, h100); empty: "
                    "unspecified, only for jobs that accept any type."
                ),
                "gpuType",
            ),
            "gpusPerNode": immutable(
                integer("GPUs per node, 1-16.", minimum=1, maximum=16), "gpusPerNode"
            ),
            "minNodes": integer(
                "Never fewer nodes than this.", minimum=0, maximum=100_000, default=0
            ),
            "maxNodes": integer("Never more nodes than this.", minimum=0, maximum=100_000),
            "pricePerHour": number("Price of one node-hour, USD.", minimum=0),
            "spot": {
                "type": "boolean",
                "default": False,
                "description": "Spot / preemptible capacity.",
            },
            "provisioningDelaySeconds": number(
                "How long a new node takes to become usable, seconds (used for planning).",
                minimum=0,
                maximum=86400,
                default=300,
            ),
            "idleTimeoutSeconds": number(
                "Remove a node idle this long, seconds; unset: the policy's default.",
                minimum=0,
                maximum=604800,
            ),
            "labels": {
                "type": "object",
                "description": "Labels every node of the pool carries.",
                "maxProperties": 64,
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 63,
                    "pattern": LABEL_VALUE_PATTERN,
                },
                "x-kubernetes-validations": [
                    rule(
                        f"self.all(k, k.size() <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))",
                        "label keys must be qualified names: an optional DNS-subdomain prefix "
                        "and '/', then alphanumerics, '-', '_' or '.'",
                    )
                ],
            },
            "taints": {
                "type": "array",
                "description": "Taints every node of the pool carries, as `kubectl taint` "
                "writes them: key[=value]:NoSchedule|PreferNoSchedule|NoExecute.",
                "maxItems": 32,
                "items": {"type": "string", "maxLength": 400, "pattern": TAINT_PATTERN},
            },
            "aws": _cloud(
                "AWS settings (provider aws): an Auto Scaling group (autoScalingGroupName, "
                "default groupId) or an EKS managed node group (clusterName, nodegroupName).",
                {
                    "autoScalingGroupName": string(
                        "The Auto Scaling group to scale; defaults to groupId.", maxLength=255
                    ),
                    "clusterName": string(
                        "The EKS cluster: with it, the pool is a managed node group.",
                        maxLength=100,
                    ),
                    "nodegroupName": string(
                        "The EKS managed node group; defaults to groupId.", maxLength=63
                    ),
                },
                rules=[
                    rule(
                        "!has(self.autoScalingGroupName) || !has(self.clusterName)",
                        "set either autoScalingGroupName (an Auto Scaling group) or "
                        "clusterName + nodegroupName (an EKS managed node group), not both",
                        ".clusterName",
                        "FieldValueForbidden",
                    ),
                    rule(
                        "!has(self.nodegroupName) || has(self.clusterName)",
                        "nodegroupName needs clusterName (the EKS cluster it belongs to)",
                        ".clusterName",
                        "FieldValueRequired",
                    ),
                ],
            ),
            "gcp": _cloud(
                "GCP settings (provider gcp): the project of the managed instance group "
                "(groupId) - zonal if zone is set, else regional.",
                {
                    "project": string(
                        "GCP project id.", pattern=r"^[a-z][-a-z0-9:.]{4,61}[a-z0-9]$"
                    ),
                    "operationTimeoutSeconds": number(
                        "How long to wait for a resize or delete operation, seconds.",
                        minimum=0,
                        exclusiveMinimum=True,
                        maximum=3600,
                    ),
                    "requestTimeoutSeconds": number(
                        "How long one API request may take, seconds.",
                        minimum=0,
                        exclusiveMinimum=True,
                        maximum=600,
                    ),
                },
                required=["project"],
            ),
            "azure": _cloud(
                "Azure settings (provider azure): where the virtual machine scale set "
                "(groupId) lives.",
                {
                    "subscriptionId": string(
                        "Azure subscription id (a UUID).",
                        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                    ),
                    "resourceGroup": string(
                        "Resource group of the scale set.", minLength=1, maxLength=90
                    ),
                    "operationTimeoutSeconds": number(
                        "How long to wait for a capacity update or delete, seconds.",
                        minimum=0,
                        exclusiveMinimum=True,
                        maximum=3600,
                    ),
                    "requestTimeoutSeconds": number(
                        "How long one API request may take, seconds.",
                        minimum=0,
                        exclusiveMinimum=True,
                        maximum=600,
                    ),
                },
                required=["subscriptionId", "resourceGroup"],
            ),
            "kwok": _cloud(
                "kwok settings (provider kwok): fake GPU nodes in a real cluster. A new "
                "node becomes Ready after provisioningDelaySeconds.",
                {
                    "availableNodes": integer(
                        "Simulated stockout: at most this many nodes of the pool can exist.",
                        minimum=0,
                    ),
                    "nodeNamePrefix": string(
                        "Node name prefix; defaults to kwok-<pool>-.",
                        pattern=r"^$|" + DNS_LABEL,
                        maxLength=40,
                    ),
                },
            ),
        },
        required=["provider", "gpusPerNode", "maxNodes", "pricePerHour"],
    )
    spec["x-kubernetes-validations"] = [
        rule(
            "self.minNodes <= self.maxNodes",
            "minNodes must be less than or equal to maxNodes",
            ".minNodes",
        ),
        *[
            rule(
                f"!has(self.{cloud}) || self.provider == '{cloud}'",
                f"{cloud} settings are only allowed when provider is {cloud}",
                f".{cloud}",
                "FieldValueForbidden",
            )
            for cloud in PROVIDERS
        ],
    ]
    status = obj(
        "What the controller observed; written only through the status subresource.",
        {
            "target": integer("Nodes asked of the cloud.", minimum=0),
            "ready": integer("Nodes whose GPUs are allocatable.", minimum=0),
            "inFlight": integer("Nodes asked for and not yet ready.", minimum=0),
            "draining": integer("Nodes being drained for removal.", minimum=0),
            "lastScaleTime": {**TIME, "description": "When target last changed."},
            "lastError": string(
                "The last error from the cloud (kind: message), until a call succeeds.",
                maxLength=32768,
            ),
            "conditions": conditions(),
            "observedGeneration": integer(
                "The .metadata.generation this status describes.", minimum=0
            ),
        },
    )
    columns = [
        column("Provider", ".spec.provider"),
        column("GPU-Type", ".spec.gpuType"),
        column("Min", ".spec.minNodes", "integer"),
        column("Target", ".status.target", "integer", "Nodes asked of the cloud"),
        column("Ready", ".status.ready", "integer", "Nodes with allocatable GPUs"),
        column("Max", ".spec.maxNodes", "integer"),
        AGE,
        column("GPUs/Node", ".spec.gpusPerNode", "integer", priority=1),
        column("Instance-Type", ".spec.instanceType", priority=1),
        column("Price/Hour", ".spec.pricePerHour", "number", priority=1),
        column("Spot", ".spec.spot", "boolean", priority=1),
    ]
    return crd(
        kind="NodePool",
        plural="nodepools",
        short_names=["dlnp"],
        scope="Cluster",
        description="A group of identical GPU nodes in one cloud that dlscaler resizes.",
        spec=spec,
        status=status,
        columns=columns,
    )


# --- output -----------------------------------------------------------------------------

HEADER = "# Generated by hack/gen-crds.py from its schema definitions and the API server's\n"
HEADER += "# PodTemplateSpec schema. Do not edit by hand: change the generator and re-run it.\n"


def render_all(openapi_v1: dict[str, Any]) -> dict[str, str]:
    """File name -> YAML text, for every CRD."""
    template = pod_template_schema(openapi_v1)
    docs = {
        "dlscaler.io_dljobs.yaml": dljob(template),
        "dlscaler.io_dlservices.yaml": dlservice(template),
        "dlscaler.io_nodepools.yaml": nodepool(),
    }
    return {
        name: HEADER + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
        for name, doc in docs.items()
    }


def fetch_openapi(kubeconfig: str, kubectl: str) -> dict[str, Any]:
    out = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "get", "--raw", "/openapi/v3/api/v1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kubeconfig", help="read the OpenAPI document from this cluster")
    p.add_argument("--openapi", type=Path, help="a saved /openapi/v3/api/v1 document (JSON)")
    p.add_argument("--kubectl", default="kubectl", help="kubectl binary (with --kubeconfig)")
    p.add_argument("--out", type=Path, default=CRD_DIR, help="output directory (crds/)")
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)

    if args.openapi:
        openapi = json.loads(args.openapi.read_text())
    elif args.kubeconfig:
        openapi = fetch_openapi(args.kubeconfig, args.kubectl)
    else:
        from controller.devcluster import DevCluster

        with DevCluster.temporary(components=("etcd", "kube-apiserver")) as cluster:
            openapi = fetch_openapi(str(cluster.kubeconfig), str(cluster.bin("kubectl")))

    stale = []
    for name, text in render_all(openapi).items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} ({len(text) // 1024} KiB)")
    if stale:
        print("out of date (run hack/gen-crds.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
