"""kwok node pools: fake GPU nodes in a real cluster, created and deleted through pykube-ng.

A pool's "instances" are ``Node`` objects labelled ``dlscaler.io/pool=<pool>`` that kwok
plays the kubelet for (annotation ``kwok.x-k8s.io/node: fake``). Each carries
``nvidia.com/gpu`` capacity, the pool's labels and taints, ``spec.providerID =
kwok://<pool>/<node>``, and the ``node.kubernetes.io/not-ready`` taint until kwok reports it
Ready after the pool's ``provisioningDelaySeconds``, so requested nodes are in flight before
they can take pods, as in a cloud. The group's state lives in the cluster: a restarted
controller sees the same target.

``kwok.availableNodes`` simulates a stockout (a scale-up past it raises CapacityError), so
the policy's next-pool fallback can be exercised end to end.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import requests

from dlscaler.config import PoolModel
from dlscaler.pool import (
    CapacityError,
    GroupDescription,
    Instance,
    InstanceState,
    InvalidConfigError,
    NodePoolProvider,
    NodeTemplate,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ThrottledError,
    TransientError,
)
from providers.base import (
    CloudCall,
    check_delete,
    check_target,
    delete_until_gone,
    parse_provider_id,
)
from providers.retry import Retrier
from providers.settings import KwokSettings, parse_settings
from providers.template import GPU_RESOURCE, POOL_LABEL, build_template

SCHEME = "kwok"
MANAGED_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
READY_DELAY_ANNOTATION = "dlscaler.io/kwok-ready-delay"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_TYPE_LABEL = "dlscaler.io/gpu-type"
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
_FORBIDDEN = re.compile(r'cannot (\w+) resource "(\w+)"')


def map_kube_error(exc: BaseException, permission: str) -> ProviderError | None:
    """pykube/requests exceptions as dlscaler errors."""
    from pykube.exceptions import HTTPError, ObjectDoesNotExist

    if isinstance(exc, ObjectDoesNotExist):
        return NotFoundError(str(exc), code="404")
    status = 0
    if isinstance(exc, HTTPError):
        status, message = int(exc.code), str(exc)
    elif isinstance(exc, requests.HTTPError) and exc.response is not None:
        status, message = exc.response.status_code, str(exc)
    elif isinstance(exc, requests.ConnectionError | requests.Timeout):
        return TransientError(
            f"no answer from the API server: {type(exc).__name__}", code=type(exc).__name__
        )
    else:
        return None
    if status == 429:
        return ThrottledError(message, code="429")
    if status in (401, 403):
        named = _FORBIDDEN.search(message)
        return PermissionDeniedError(
            message,
            code=str(status),
            permission=f"{named.group(1)} {named.group(2)}" if named else permission,
        )
    if status == 404:
        return NotFoundError(message, code="404")
    if status >= 500 or status == 409:
        return TransientError(message, code=str(status))
    return InvalidConfigError(message, code=str(status))


def _taint(spec: str) -> dict[str, str]:
    """``key=value:Effect`` (or ``key:Effect``) as a Node taint."""
    keyval, _, effect = spec.rpartition(":")
    if not keyval:
        keyval, effect = spec, "NoSchedule"
    key, _, value = keyval.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def _go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class KwokProvider:
    """The Nodes of one pool in one cluster."""

    def __init__(self, pool: PoolModel, settings: KwokSettings, api: Any, call: CloudCall) -> None:
        self._pool = pool
        self._settings = settings
        self._api = api
        self._call = call
        self._prefix = settings.node_name_prefix or f"kwok-{pool.name}-"
        self.available_nodes: int | None = settings.available_nodes
        """Simulated capacity (``kwok.availableNodes``); a demo or test may change it while
        running to start or end a stockout."""
        # Nodes are in flight as long as the policy expects a cloud's to be.
        self._ready_delay_s = pool.provisioning_delay_s

    @property
    def group_id(self) -> str:
        return self._pool.group_id or self._pool.name

    @property
    def retrier(self) -> Retrier:
        return self._call.retrier

    def _nodes(self, *, once: bool = False) -> list[dict[str, Any]]:
        import pykube

        run = self._call.once if once else self._call
        return run(
            "list",
            lambda: [
                n.obj
                for n in pykube.Node.objects(self._api).filter(
                    selector={POOL_LABEL: self._pool.name}
                )
            ],
            permission="list nodes",
        )

    @staticmethod
    def _state(node: dict[str, Any]) -> InstanceState:
        if node["metadata"].get("deletionTimestamp"):
            return InstanceState.DELETING
        for cond in node.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == "Ready":
                return (
                    InstanceState.RUNNING if cond.get("status") == "True" else InstanceState.PENDING
                )
        return InstanceState.PENDING

    def _instances(self, nodes: Sequence[dict[str, Any]]) -> tuple[Instance, ...]:
        found = [
            Instance(
                provider_id=n["spec"].get("providerID")
                or f"{SCHEME}://{self._pool.name}/{n['metadata']['name']}",
                state=self._state(n),
                name=n["metadata"]["name"],
            )
            for n in nodes
        ]
        return tuple(sorted(found, key=lambda i: i.provider_id))

    def describe(self) -> GroupDescription:
        instances = self._instances(self._nodes())
        return GroupDescription(
            group_id=self.group_id,
            min_size=self._pool.min_nodes,
            max_size=self._pool.max_nodes,
            target_size=sum(1 for i in instances if i.state is not InstanceState.DELETING),
            instances=instances,
        )

    def set_target_size(self, size: int) -> None:
        desc = self.describe()
        check_target(size, desc, pool=self._pool.name, bounds_from="the pool's minNodes/maxNodes")
        if size > desc.target_size:
            self._grow(desc, size)
        elif size < desc.target_size:
            live = [i for i in desc.instances if i.state is not InstanceState.DELETING]
            # Like a cloud: nodes that are not ready yet go first, then the newest names.
            order = sorted(live, key=lambda i: (i.state is InstanceState.RUNNING, i.name))
            self._delete([i.provider_id for i in order[: desc.target_size - size]])

    def _grow(self, desc: GroupDescription, size: int) -> None:
        available = self.available_nodes
        can = size if available is None else min(size, available)
        for _ in range(max(0, can - desc.target_size)):
            # The name is chosen once, before the call: a retry after a lost answer meets
            # 409 AlreadyExists instead of creating a second node.
            name = f"{self._prefix}{uuid.uuid4().hex[:8]}"
            self._call("create", lambda name=name: self._create(name), permission="create nodes")  # type: ignore[misc]
        if can < size:
            raise CapacityError(
                f"the kwok pool has room for {available} nodes (kwok.availableNodes), "
                f"asked for {size}",
                pool=self._pool.name,
                operation="set_target_size",
                code="KwokStockout",
            )

    def _create(self, name: str) -> None:
        import pykube
        from pykube.exceptions import HTTPError

        try:
            pykube.Node(self._api, self._manifest(name)).create()
        except HTTPError as err:
            if err.code != 409 or "already exists" not in str(err):
                raise

    def _manifest(self, name: str) -> dict[str, Any]:
        template = self.node_template()
        labels = {
            **template.labels,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            GPU_COUNT_LABEL: str(template.gpus_per_node),
            POOL_LABEL: self._pool.name,
        }
        if template.gpu_type:
            labels[GPU_TYPE_LABEL] = template.gpu_type
        resources = {GPU_RESOURCE: str(template.gpus_per_node)}
        if template.cpu:
            resources["cpu"] = str(template.cpu)
        if template.memory_mib:
            resources["memory"] = f"{template.memory_mib}Mi"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    MANAGED_ANNOTATION[0]: MANAGED_ANNOTATION[1],
                    READY_DELAY_ANNOTATION: _go_duration(self._ready_delay_s),
                },
            },
            "spec": {
                "providerID": f"{SCHEME}://{self._pool.name}/{name}",
                "taints": [dict(NOT_READY_TAINT), *(_taint(t) for t in template.taints)],
            },
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        for pid in provider_ids:
            self._node_name(pid)
        if provider_ids:
            check_delete(self.describe(), provider_ids, pool=self._pool.name)
            self._delete(provider_ids)

    def _node_name(self, pid: str) -> str:
        rest = parse_provider_id(pid, SCHEME, pool=self._pool.name)
        pool, _, name = rest.partition("/")
        if pool != self._pool.name or not name:
            raise InvalidConfigError(
                f"provider id {pid!r} is not a node of kwok pool {self._pool.name!r}",
                pool=self._pool.name,
                operation="delete_instances",
            )
        return name

    def _delete(self, provider_ids: Sequence[str]) -> None:
        import pykube

        def present() -> dict[str, Instance]:
            return {i.provider_id: i for i in self._instances(self._nodes(once=True))}

        def delete(batch: Sequence[str]) -> None:
            name = self._node_name(batch[0])
            self._call.once(
                "delete",
                lambda: pykube.Node(self._api, {"metadata": {"name": name}}).delete(),
                permission="delete nodes",
            )

        delete_until_gone(
            provider_ids,
            list_instances=present,
            delete=delete,
            retrier=self.retrier,
            pool=self._pool.name,
            batch_size=1,
        )

    def node_template(self) -> NodeTemplate:
        return build_template(self._pool, instance_type=self._pool.instance_type or "kwok-gpu-node")


def from_pool(
    pool: PoolModel,
    *,
    retrier: Retrier,
    api: Any = None,
    kubeconfig: str | None = None,
) -> NodePoolProvider:
    """The kwok provider for ``pool``: ``api`` (a ``pykube.HTTPClient``), or one made from
    ``kubeconfig``, else from the environment (in-cluster service account or ~/.kube/config)."""
    settings = parse_settings(pool, "kwok", KwokSettings)
    call = CloudCall(pool=pool.name, retrier=retrier, map_error=map_kube_error)
    if api is None:
        import pykube

        config = (
            pykube.KubeConfig.from_file(kubeconfig) if kubeconfig else pykube.KubeConfig.from_env()
        )
        api = pykube.HTTPClient(config)
    return KwokProvider(pool, settings, api, call)
