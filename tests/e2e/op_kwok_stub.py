"""A stand-in kwok node pool for driving the controller before ``providers/kwok.py`` exists:
the group's instances are kwok-managed Nodes labelled with the pool, created and deleted
through the API server, so the group's state lives in the cluster (a restarted controller
sees the same target)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

from controller.devcluster_kwok import gpu_node_manifest
from controller.kube import ApiError, Kube, core_path
from dlscaler.config import PoolModel
from dlscaler.pool import (
    CapacityError,
    GroupDescription,
    Instance,
    InstanceState,
    NodeTemplate,
)
from providers.template import POOL_LABEL, build_template


class KwokStubProvider:
    def __init__(self, kube: Kube, pool: PoolModel, *, ready_delay_s: float = 1.0) -> None:
        self.kube = kube
        self.pool = pool
        self.ready_delay_s = pool.provisioning_delay_s
        self.available = pool.kwok.get("availableNodes")
        self._lock = threading.Lock()
        self.calls: list[str] = []

    @property
    def group_id(self) -> str:
        return self.pool.name

    def _nodes(self) -> list[dict]:
        return self.kube.list(core_path("nodes"), label_selector=f"{POOL_LABEL}={self.pool.name}")

    def describe(self) -> GroupDescription:
        nodes = self._nodes()
        instances = tuple(
            Instance(
                n["spec"].get("providerID", ""),
                InstanceState.DELETING
                if n["metadata"].get("deletionTimestamp")
                else InstanceState.RUNNING,
                n["metadata"]["name"],
            )
            for n in sorted(nodes, key=lambda n: n["metadata"]["name"])
        )
        live = sum(1 for i in instances if i.state is not InstanceState.DELETING)
        return GroupDescription(
            self.pool.name, self.pool.min_nodes, self.pool.max_nodes, live, instances
        )

    def set_target_size(self, size: int) -> None:
        with self._lock:
            self.calls.append(f"set_target_size({size})")
            live = [n for n in self._nodes() if not n["metadata"].get("deletionTimestamp")]
            wanted = size - len(live)
            if self.available is not None and size > self.available:
                raise CapacityError(
                    f"kwok pool has room for {self.available} nodes, asked for {size}",
                    pool=self.pool.name,
                    operation="set_target_size",
                    code="KwokStockout",
                )
            template = build_template(self.pool)
            for _ in range(max(0, wanted)):
                name = f"kwok-{self.pool.name}-{uuid.uuid4().hex[:6]}"
                manifest = gpu_node_manifest(
                    name,
                    gpus=self.pool.gpus_per_node,
                    gpu_type=self.pool.gpu_type,
                    ready_delay_s=self.ready_delay_s,
                    labels=dict(template.labels),
                    provider_id=f"kwok://{self.pool.name}/{name}",
                )
                self.kube.create(core_path("nodes"), manifest)
            if wanted < 0:
                newest = sorted(live, key=lambda n: n["metadata"]["creationTimestamp"])
                for n in newest[wanted:]:
                    self.kube.delete(core_path("nodes", name=n["metadata"]["name"]))

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        with self._lock:
            self.calls.append(f"delete_instances({len(provider_ids)})")
            for pid in provider_ids:
                name = pid.rsplit("/", 1)[-1]
                try:
                    self.kube.delete(core_path("nodes", name=name))
                except ApiError as err:
                    if not err.not_found:
                        raise

    def node_template(self) -> NodeTemplate:
        return build_template(self.pool)
