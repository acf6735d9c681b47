"""Names the controller puts on Kubernetes objects: API coordinates, labels, annotations.

One place, so the snapshot builder (which reads them), the gang renderer (which writes
them) and the tests agree. Node labels that the providers set come from
``providers.template`` (``dlscaler.io/pool``, ``nvidia.com/gpu``).
"""

from __future__ import annotations

from providers.template import GPU_RESOURCE, POOL_LABEL

GROUP = "dlscaler.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DLJOBS = "dljobs"
DLSERVICES = "dlservices"
NODEPOOLS = "nodepools"

JOB_UID_LABEL = "dlscaler.io/job-uid"
"""On a DLJob's pods and Service: the owning DLJob's uid (what the controller selects on)."""
JOB_NAME_LABEL = "dlscaler.io/job-name"
"""The owning DLJob's name, for people (truncated to a label value's 63 characters)."""
WORKER_INDEX_LABEL = "dlscaler.io/worker-index"
ATTEMPT_LABEL = "dlscaler.io/attempt"
"""Which start of the gang a pod belongs to (0, then one more per gang restart)."""
SERVICE_LABEL = "dlscaler.io/dlservice"

ASSIGNED_NODE_ANNOTATION = "dlscaler.io/assigned-node"
"""The node admission reserved for a worker; the pod is pinned there by node affinity."""
ASSIGNED_POOL_ANNOTATION = "dlscaler.io/assigned-pool"
DRAINING_ANNOTATION = "dlscaler.io/draining-since"
"""On a Node the controller is draining for removal: when it started (RFC 3339)."""
CONSOLIDATING_ANNOTATION = "dlscaler.io/consolidating-since"
"""On a Node consolidation cordoned (busy, it takes no new work and is removed once empty):
when (RFC 3339). Only a node carrying it is ever uncordoned by the controller."""
GPU_TYPE_LABEL = "dlscaler.io/gpu-type"
"""On a Node: the GPU type it carries (NodePool ``gpuType``)."""

FIELD_MANAGER = "dlscaler"
COMPONENT = "dlscaler-controller"

__all__ = [
    "API_VERSION",
    "ASSIGNED_NODE_ANNOTATION",
    "ASSIGNED_POOL_ANNOTATION",
    "ATTEMPT_LABEL",
    "COMPONENT",
    "CONSOLIDATING_ANNOTATION",
    "DLJOBS",
    "DLSERVICES",
    "DRAINING_ANNOTATION",
    "FIELD_MANAGER",
    "GPU_RESOURCE",
    "GPU_TYPE_LABEL",
    "GROUP",
    "JOB_NAME_LABEL",
    "JOB_UID_LABEL",
    "NODEPOOLS",
    "POOL_LABEL",
    "SERVICE_LABEL",
    "VERSION",
    "WORKER_INDEX_LABEL",
]
