"""GCP node pools through google-cloud-compute: zonal and regional managed instance groups.

A pool with a ``zone`` is a zonal MIG, one with only a ``region`` a regional MIG. Scaling
is ``resize``; removing the policy's chosen nodes is ``deleteInstances`` (which lowers the
target size by as many), with ``skipInstancesOnValidationError`` so a node that is already
gone does not fail the rest. Both return a zone or region operation, which is waited on.

A stockout does not fail the resize: the MIG keeps the new target and retries creating the
instance, whose ``lastAttempt`` carries ``ZONE_RESOURCE_POOL_EXHAUSTED`` (or
``QUOTA_EXCEEDED``). ``describe`` reports that as ``scale_up_error``; a scale-up that sees
it already deletes the failing instances (so the group does not grow later on its own) and
raises :class:`~dlscaler.pool.CapacityError`.

Regional groups need the same IAM permissions as zonal ones
(``compute.instanceGroupManagers.get``/``update``). Credentials are Application Default
Credentials (GKE Workload Identity on a cluster). The client's own retries are off; the
adapter's retrier is the one retry layer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import (
    GroupDescription,
    Instance,
    InstanceState,
    InvalidConfigError,
    NodePoolProvider,
    NodeTemplate,
    NotFoundError,
    ProviderError,
    TransientError,
)
from providers.base import (
    CloudCall,
    check_delete,
    check_target,
    delete_until_gone,
    parse_provider_id,
    with_scale_up_error,
)
from providers.gcp_errors import classify_instance_error, map_gcp_error
from providers.retry import Retrier
from providers.settings import GcpSettings, parse_settings, require
from providers.template import build_template

SCHEME = "gce"
MAX_DELETE_BATCH = 1000
"""deleteInstances takes at most this many instances per request."""
_INSTANCE_URL = re.compile(r"projects/([^/]+)/zones/([^/]+)/instances/([^/?]+)$")
_PENDING_ACTIONS = {
    "CREATING",
    "CREATING_WITHOUT_RETRIES",
    "RECREATING",
    "VERIFYING",
    "STARTING",
    "RESUMING",
}
_DELETING_ACTIONS = {"DELETING", "ABANDONING"}
_FAILED_STATUSES = {"STOPPED", "TERMINATED", "SUSPENDED"}


def provider_id_from_url(url: str) -> str:
    """``gce://project/zone/name``, as the GCE cloud provider writes ``spec.providerID``."""
    m = _INSTANCE_URL.search(url)
    if not m:
        raise ValueError(f"not an instance URL: {url!r}")
    return f"gce://{m.group(1)}/{m.group(2)}/{m.group(3)}"


def instance_path(pid: str, *, pool: str) -> str:
    parts = parse_provider_id(pid, SCHEME, pool=pool).split("/")
    if len(parts) != 3 or not all(parts):
        raise InvalidConfigError(
            f"provider id {pid!r} is not gce://project/zone/name",
            pool=pool,
            operation="delete_instances",
        )
    project, zone, name = parts
    return f"projects/{project}/zones/{zone}/instances/{name}"


@dataclass(frozen=True, slots=True)
class _Location:
    """What differs between a zonal and a regional MIG."""

    project: str
    zone: str
    region: str

    @property
    def kwargs(self) -> dict[str, str]:
        if self.zone:
            return {"project": self.project, "zone": self.zone}
        return {"project": self.project, "region": self.region}

    @property
    def operations_permission(self) -> str:
        return "compute.zoneOperations.get" if self.zone else "compute.regionOperations.get"

    @property
    def where(self) -> str:
        place = f"zone {self.zone}" if self.zone else f"region {self.region}"
        return f"project {self.project}, {place}"

    def delete_request(self, paths: Sequence[str]) -> dict[str, Any]:
        from google.cloud import compute_v1

        if self.zone:
            body = compute_v1.InstanceGroupManagersDeleteInstancesRequest(
                instances=list(paths), skip_instances_on_validation_error=True
            )
            return {"instance_group_managers_delete_instances_request_resource": body}
        regional = compute_v1.RegionInstanceGroupManagersDeleteInstancesRequest(
            instances=list(paths), skip_instances_on_validation_error=True
        )
        return {"region_instance_group_managers_delete_instances_request_resource": regional}


def _state(managed: Any) -> InstanceState:
    action = str(managed.current_action or "")
    status = str(managed.instance_status or "") if "instance_status" in managed else ""
    if action in _DELETING_ACTIONS:
        return InstanceState.DELETING
    if action in _PENDING_ACTIONS:
        return InstanceState.PENDING
    if status == "RUNNING":
        return InstanceState.RUNNING
    if status in _FAILED_STATUSES:
        return InstanceState.FAILED
    return InstanceState.PENDING


def _last_error(managed: Any) -> tuple[str, str]:
    if "last_attempt" not in managed:
        return "", ""
    for e in managed.last_attempt.errors.errors:
        return str(e.code), str(e.message)
    return "", ""


class ManagedInstanceGroupProvider:
    """One zonal or regional managed instance group."""

    def __init__(
        self,
        pool: PoolModel,
        name: str,
        location: _Location,
        client: Any,
        operations: Any,
        call: CloudCall,
        *,
        operation_timeout_s: float,
        request_timeout_s: float,
    ) -> None:
        self._pool = pool
        self._name = name
        self._loc = location
        self._client = client
        self._operations = operations
        self._call = call
        self._operation_timeout_s = operation_timeout_s
        self._request_timeout_s = request_timeout_s

    @property
    def group_id(self) -> str:
        return self._name

    @property
    def retrier(self) -> Retrier:
        return self._call.retrier

    def _target_size(self, *, once: bool = False) -> int:
        run = self._call.once if once else self._call
        try:
            manager = run(
                "get",
                lambda: self._client.get(
                    **self._loc.kwargs,
                    instance_group_manager=self._name,
                    retry=None,
                    timeout=self._request_timeout_s,
                ),
                permission="compute.instanceGroupManagers.get",
            )
        except NotFoundError as err:
            raise InvalidConfigError(
                f"no managed instance group named {self._name!r} in {self._loc.where}: check "
                "the pool's groupId, zone/region and gcp.project",
                pool=self._pool.name,
                operation="describe",
                code=err.code,
            ) from err
        return int(manager.target_size)

    def _managed(self, *, once: bool = False) -> list[Any]:
        run = self._call.once if once else self._call
        return run(
            "listManagedInstances",
            lambda: list(
                self._client.list_managed_instances(
                    **self._loc.kwargs,
                    instance_group_manager=self._name,
                    retry=None,
                    timeout=self._request_timeout_s,
                )
            ),
            permission="compute.instanceGroupManagers.get",
        )

    def _instances(self, managed: Sequence[Any]) -> tuple[Instance, ...]:
        found = []
        for m in managed:
            code, message = _last_error(m)
            found.append(
                Instance(
                    provider_id=provider_id_from_url(m.instance),
                    state=_state(m),
                    name=m.instance.rsplit("/", 1)[-1],
                    error=f"{code}: {message}" if code else "",
                )
            )
        return tuple(sorted(found, key=lambda i: i.provider_id))

    def _launch_failures(self, managed: Sequence[Any]) -> list[tuple[str, ProviderError]]:
        failures = []
        for m in managed:
            if _state(m) is InstanceState.PENDING:
                error = classify_instance_error(*_last_error(m))
                if error is not None:
                    failures.append((provider_id_from_url(m.instance), error))
        return failures

    def describe(self) -> GroupDescription:
        target = self._target_size()
        managed = self._managed()
        desc = GroupDescription(
            group_id=self._name,
            min_size=self._pool.min_nodes,
            max_size=self._pool.max_nodes,
            target_size=target,
            instances=self._instances(managed),
        )
        failures = self._launch_failures(managed)
        return with_scale_up_error(desc, failures[0][1] if failures else None, pool=self._pool.name)

    def _wait(self, operation: Any, *, permission: str) -> None:
        """Wait for a zone/region operation with the server-side ``wait`` call (it returns
        when the operation is done or after about two minutes), then raise its error."""
        from google.api_core import exceptions as gx
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + self._operation_timeout_s
        while operation.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"operation {operation.name} still running after "
                    f"{self._operation_timeout_s:.0f} s (gcp.operationTimeoutSeconds)",
                    pool=self._pool.name,
                    operation="wait",
                    code="OperationTimeout",
                )
            name = operation.name
            operation = self._call(
                "wait",
                lambda name=name, remaining=remaining: self._operations.wait(  # type: ignore[misc]
                    **self._loc.kwargs,
                    operation=name,
                    retry=None,
                    timeout=min(remaining, 150.0),
                ),
                permission=self._loc.operations_permission,
            )
        if operation.http_error_status_code or operation.error.errors:
            failure = gx.from_http_status(  # type: ignore[no-untyped-call]
                operation.http_error_status_code or 500,
                operation.http_error_message or f"operation {operation.name} failed",
                errors=list(operation.error.errors),
            )
            mapped = map_gcp_error(failure, permission)
            assert mapped is not None
            raise mapped

    def set_target_size(self, size: int) -> None:
        current = self._target_size()
        bounds = GroupDescription(
            self._name, self._pool.min_nodes, self._pool.max_nodes, current, ()
        )
        check_target(size, bounds, pool=self._pool.name, bounds_from="the pool's minNodes/maxNodes")
        if size == current:
            return
        permission = "compute.instanceGroupManagers.update"

        def resize() -> None:
            operation = self._call.once(
                "resize",
                lambda: self._client.resize_unary(
                    **self._loc.kwargs,
                    instance_group_manager=self._name,
                    size=size,
                    retry=None,
                    timeout=self._request_timeout_s,
                ),
                permission=permission,
            )
            self._wait(operation, permission=permission)

        # Resize is absolute, so one that failed (in the request or while running) is
        # simply sent again.
        self._call.retrier.call(resize)
        if size > current:
            failures = self._launch_failures(self._managed())
            if failures:
                error = failures[0][1]
                error.pool, error.operation = self._pool.name, "set_target_size"
                error.message = (
                    f"{len(failures)} of {size - current} new instances could not be created "
                    f"and were removed again: {error.message}"
                )
                try:
                    self._delete([pid for pid, _ in failures])
                except ProviderError as err:
                    error.message += f" (removing them failed too: {err.message})"
                raise error

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        for pid in provider_ids:
            instance_path(pid, pool=self._pool.name)
        if provider_ids:
            check_delete(self.describe(), provider_ids, pool=self._pool.name)
            self._delete(provider_ids)

    def _delete(self, provider_ids: Sequence[str]) -> None:
        def present() -> dict[str, Instance]:
            return {i.provider_id: i for i in self._instances(self._managed(once=True))}

        permission = "compute.instanceGroupManagers.update"

        def delete(batch: Sequence[str]) -> None:
            paths = [instance_path(pid, pool=self._pool.name) for pid in batch]
            operation = self._call.once(
                "deleteInstances",
                lambda: self._client.delete_instances_unary(
                    **self._loc.kwargs,
                    instance_group_manager=self._name,
                    **self._loc.delete_request(paths),
                    retry=None,
                    timeout=self._request_timeout_s,
                ),
                permission=permission,
            )
            self._wait(operation, permission=permission)

        delete_until_gone(
            provider_ids,
            list_instances=present,
            delete=delete,
            retrier=self.retrier,
            pool=self._pool.name,
            batch_size=MAX_DELETE_BATCH,
        )

    def node_template(self) -> NodeTemplate:
        # A MIG has no GPU facts of its own (they live in its instance template); the pool
        # file's instanceType/gpuType/gpusPerNode are the template, checked against the
        # group's existence so a typo in groupId shows here too.
        self._target_size()
        extra = {"cloud.google.com/gke-spot": "true"} if self._pool.spot else {}
        return build_template(self._pool, extra_labels=extra)


def _default_clients(zonal: bool, credentials: Any) -> tuple[Any, Any]:
    from google.cloud import compute_v1

    managers = (
        compute_v1.InstanceGroupManagersClient
        if zonal
        else compute_v1.RegionInstanceGroupManagersClient
    )
    ops = compute_v1.ZoneOperationsClient if zonal else compute_v1.RegionOperationsClient
    return (
        managers(credentials=credentials, transport="rest"),
        ops(credentials=credentials, transport="rest"),
    )


def from_pool(
    pool: PoolModel,
    *,
    retrier: Retrier,
    credentials: Any = None,
    instance_group_managers: Any = None,
    operations: Any = None,
) -> NodePoolProvider:
    """The MIG provider for ``pool``. Clients not given are made with Application Default
    Credentials (or ``credentials``): ``instance_group_managers`` (zonal or regional) and
    ``operations`` (zone or region operations, to wait on)."""
    settings = parse_settings(pool, "gcp", GcpSettings)
    name = require(pool, "groupId", pool.group_id, "the managed instance group's name")
    if not pool.zone:
        require(
            pool, "zone or region", pool.region, "a zonal MIG needs zone, a regional one region"
        )
    location = _Location(settings.project, pool.zone, "" if pool.zone else pool.region)
    if instance_group_managers is None or operations is None:
        call = CloudCall(pool=pool.name, retrier=retrier, map_error=map_gcp_error)
        # Building a client looks up Application Default Credentials: map a failure there.
        managers, ops = call.once(
            "configure",
            lambda: _default_clients(bool(pool.zone), credentials),
            permission="compute.instanceGroupManagers.get",
        )
        instance_group_managers = instance_group_managers or managers
        operations = operations or ops
    return ManagedInstanceGroupProvider(
        pool,
        name,
        location,
        instance_group_managers,
        operations,
        CloudCall(pool=pool.name, retrier=retrier, map_error=map_gcp_error),
        operation_timeout_s=settings.operation_timeout_s,
        request_timeout_s=settings.request_timeout_s,
    )
