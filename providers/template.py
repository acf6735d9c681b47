"""Node templates: what a node of a pool looks like before one exists (scale from zero).

The pool's own fields (``gpuType``, ``gpusPerNode``, ``labels``, ``taints``) are what the
policy plans with; the adapters add what only the cloud knows (the instance type of the
group, CPU and memory of that type) and the well-known Kubernetes labels every node of the
pool will carry, so a pending pod's node selector can be matched against an empty pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from dlscaler.config import PoolModel
from dlscaler.pool import NodeTemplate

POOL_LABEL = "dlscaler.io/pool"
CAPACITY_TYPE_LABEL = "dlscaler.io/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_RESOURCE = "nvidia.com/gpu"


def pool_labels(pool: PoolModel, *, instance_type: str = "") -> dict[str, str]:
    """Labels every node of ``pool`` carries, derived from its spec; its own ``labels`` win."""
    labels = {
        POOL_LABEL: pool.name,
        CAPACITY_TYPE_LABEL: "spot" if pool.spot else "on-demand",
    }
    if instance_type or pool.instance_type:
        labels[INSTANCE_TYPE_LABEL] = instance_type or pool.instance_type
    if pool.region:
        labels[REGION_LABEL] = pool.region
    if pool.zone:
        labels[ZONE_LABEL] = pool.zone
    labels.update(pool.labels)
    return labels


def build_template(
    pool: PoolModel,
    *,
    instance_type: str = "",
    gpus_per_node: int | None = None,
    gpu_type: str | None = None,
    cpu: int = 0,
    memory_mib: int = 0,
    extra_labels: Mapping[str, str] = MappingProxyType({}),
    extra_taints: Sequence[str] = (),
) -> NodeTemplate:
    """The pool's template; cloud-derived values fill what the pool file left empty.

    ``gpus_per_node`` from the cloud (the instance type's real GPU count) wins over the pool
    file's, since that is what the kubelet will report; ``dlscaler providers check`` shows
    a mismatch between the two.
    """
    # Derived from the pool file < what the cloud says the nodes are < the pool's own labels.
    labels = {**pool_labels(pool, instance_type=instance_type), **extra_labels, **pool.labels}
    taints = list(pool.taints)
    taints += [t for t in extra_taints if t not in taints]
    return NodeTemplate(
        instance_type=instance_type or pool.instance_type,
        gpu_type=pool.gpu_type or (gpu_type or ""),
        gpus_per_node=gpus_per_node if gpus_per_node else pool.gpus_per_node,
        labels=MappingProxyType(labels),
        taints=tuple(taints),
        cpu=cpu,
        memory_mib=memory_mib,
    )
