"""Azure node pools through azure-mgmt-compute: virtual machine scale sets.

Scaling updates the scale set's ``sku.capacity``; removing the policy's chosen nodes is
``deleteInstances`` with their instance ids (which lowers the capacity by as many). Both
are long-running operations, waited on through the SDK's poller. A stockout fails the
operation (``AllocationFailed``, ``ZonalAllocationFailed``, ``SkuNotAvailable``...) and
leaves the new VMs in ``Failed``; the adapter deletes those, so the capacity is back to what
exists, and raises :class:`~dlscaler.pool.CapacityError`.

Credentials come from ``DefaultAzureCredential`` (AKS workload identity, managed identity).
The SDK's retry policy is off (``retry_total=0``): the adapter's retrier is the one layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    ProviderError,
    QuotaError,
    TransientError,
)
from providers.azure_errors import map_azure_error
from providers.base import (
    CloudCall,
    check_delete,
    check_target,
    delete_until_gone,
    parse_provider_id,
)
from providers.retry import Retrier
from providers.settings import AzureSettings, parse_settings, require
from providers.template import CAPACITY_TYPE_LABEL, build_template

SCHEME = "azure"
READ = "Microsoft.Compute/virtualMachineScaleSets/read"
WRITE = "Microsoft.Compute/virtualMachineScaleSets/write"
DELETE_VMS = "Microsoft.Compute/virtualMachineScaleSets/delete/action"
READ_VMS = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read"
SPOT_LABEL = "kubernetes.azure.com/scalesetpriority"

_STATES = {
    "Creating": InstanceState.PENDING,
    "Updating": InstanceState.RUNNING,
    "Succeeded": InstanceState.RUNNING,
    "Deleting": InstanceState.DELETING,
    "Failed": InstanceState.FAILED,
    "Canceled": InstanceState.FAILED,
}


class ScaleSetProvider:
    """One virtual machine scale set (uniform orchestration)."""

    def __init__(
        self,
        pool: PoolModel,
        name: str,
        settings: AzureSettings,
        compute: Any,
        call: CloudCall,
        *,
        poll_interval_s: float,
    ) -> None:
        self._pool = pool
        self._name = name
        self._rg = settings.resource_group
        self._subscription = settings.subscription_id
        self._settings = settings
        self._compute = compute
        self._call = call
        self._poll_interval_s = poll_interval_s
        self._template: NodeTemplate | None = None

    @property
    def group_id(self) -> str:
        return self._name

    @property
    def retrier(self) -> Retrier:
        return self._call.retrier

    @property
    def _timeouts(self) -> dict[str, float]:
        return {"read_timeout": self._settings.request_timeout_s, "connection_timeout": 10.0}

    def provider_id(self, instance_id: str) -> str:
        """``spec.providerID`` of a scale set VM, as cloud-provider-azure writes it (the
        resource group in lower case)."""
        return (
            f"azure:///subscriptions/{self._subscription}/resourceGroups/{self._rg.lower()}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{self._name}"
            f"/virtualMachines/{instance_id}"
        )

    def instance_id(self, pid: str) -> str:
        path = parse_provider_id(pid, SCHEME, pool=self._pool.name)
        parts = path.strip("/").split("/")
        lowered = [p.lower() for p in parts]
        try:
            at = lowered.index("virtualmachinescalesets")
            if parts[at + 1].lower() == self._name.lower() and lowered[at + 2] == "virtualmachines":
                return parts[at + 3]
        except (ValueError, IndexError):
            pass
        raise InvalidConfigError(
            f"provider id {pid!r} is not a VM of scale set {self._name!r}",
            pool=self._pool.name,
            operation="delete_instances",
        )

    def _scale_set(self) -> Any:
        try:
            return self._call(
                "get",
                lambda: self._compute.virtual_machine_scale_sets.get(
                    self._rg, self._name, **self._timeouts
                ),
                permission=READ,
            )
        except NotFoundError as err:
            raise InvalidConfigError(
                f"no virtual machine scale set named {self._name!r} in resource group "
                f"{self._rg!r} of subscription {self._subscription}: check the pool's groupId, "
                "azure.resourceGroup and azure.subscriptionId",
                pool=self._pool.name,
                operation="describe",
                code=err.code,
            ) from err

    def _vms(self, *, once: bool = False) -> list[Any]:
        run = self._call.once if once else self._call
        return run(
            "listVirtualMachines",
            lambda: list(
                self._compute.virtual_machine_scale_set_vms.list(
                    self._rg, self._name, **self._timeouts
                )
            ),
            permission=READ_VMS,
        )

    def _instances(self, vms: Sequence[Any]) -> tuple[Instance, ...]:
        found = [
            Instance(
                provider_id=self.provider_id(str(vm.instance_id)),
                state=_STATES.get(str(vm.provisioning_state or ""), InstanceState.PENDING),
                name=str(vm.name or vm.instance_id),
            )
            for vm in vms
        ]
        return tuple(sorted(found, key=lambda i: i.provider_id))

    def describe(self) -> GroupDescription:
        capacity = int(self._scale_set().sku.capacity or 0)
        return GroupDescription(
            group_id=self._name,
            min_size=self._pool.min_nodes,
            max_size=self._pool.max_nodes,
            target_size=capacity,
            instances=self._instances(self._vms()),
        )

    def _run(self, operation: str, begin: Any, *, permission: str) -> None:
        """Start a long-running operation and wait for it, retried. A failed status poll
        resumes polling (from the poller's continuation token) instead of sending the
        request again; an operation that itself failed is started anew."""
        token: str | None = None

        def attempt() -> None:
            nonlocal token
            poller = self._call.once(operation, lambda: begin(token), permission=permission)
            token = poller.continuation_token()
            try:
                self._call.once(
                    operation, lambda: self._wait(poller, operation), permission=permission
                )
            except ProviderError as err:
                if _operation_failed(err):
                    token = None
                raise

        self._call.retrier.call(attempt)

    def _wait(self, poller: Any, operation: str) -> None:
        poller.result(timeout=self._settings.operation_timeout_s)
        if not poller.done():
            raise TransientError(
                f"{operation} still running after {self._settings.operation_timeout_s:.0f} s "
                "(azure.operationTimeoutSeconds)",
                code="OperationTimeout",
            )

    def set_target_size(self, size: int) -> None:
        from azure.mgmt.compute.models import Sku, VirtualMachineScaleSetUpdate

        scale_set = self._scale_set()
        current = int(scale_set.sku.capacity or 0)
        bounds = GroupDescription(
            self._name, self._pool.min_nodes, self._pool.max_nodes, current, ()
        )
        check_target(size, bounds, pool=self._pool.name, bounds_from="the pool's minNodes/maxNodes")
        if size == current:
            return
        update = VirtualMachineScaleSetUpdate(
            sku=Sku(name=scale_set.sku.name, tier=scale_set.sku.tier, capacity=size)
        )

        def begin(token: str | None) -> Any:
            return self._compute.virtual_machine_scale_sets.begin_update(
                self._rg,
                self._name,
                update,
                continuation_token=token,
                polling_interval=self._poll_interval_s,
                **self._timeouts,
            )

        try:
            # Capacity is absolute, so an update that failed is simply sent again.
            self._run("update", begin, permission=WRITE)
        except (CapacityError, QuotaError) as error:
            if size > current:
                self._remove_failed(error)
            raise

    def _remove_failed(self, error: ProviderError) -> None:
        """Delete the VMs a failed scale-out left in ``Failed``, so the capacity drops back
        to what exists and the scale set does not retry on its own later."""
        try:
            failed = [
                i.provider_id
                for i in self._instances(self._vms())
                if i.state is InstanceState.FAILED
            ]
            if failed:
                self._delete(failed)
                error.message += f" ({len(failed)} VMs that could not be allocated were removed)"
        except ProviderError as err:
            error.message += f" (removing the VMs that failed failed too: {err.message})"

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        # Nodes' providerIDs may spell the resource group in another case than ARM ids do.
        provider_ids = [self.provider_id(self.instance_id(pid)) for pid in provider_ids]
        if provider_ids:
            check_delete(self.describe(), provider_ids, pool=self._pool.name)
            self._delete(provider_ids)

    def _delete(self, provider_ids: Sequence[str]) -> None:
        from azure.mgmt.compute.models import VirtualMachineScaleSetVMInstanceRequiredIDs

        def present() -> dict[str, Instance]:
            return {i.provider_id: i for i in self._instances(self._vms(once=True))}

        def delete(batch: Sequence[str]) -> None:
            ids = VirtualMachineScaleSetVMInstanceRequiredIDs(
                instance_ids=[self.instance_id(pid) for pid in batch]
            )
            self._run(
                "deleteInstances",
                lambda token: self._compute.virtual_machine_scale_sets.begin_delete_instances(
                    self._rg,
                    self._name,
                    ids,
                    continuation_token=token,
                    polling_interval=self._poll_interval_s,
                    **self._timeouts,
                ),
                permission=DELETE_VMS,
            )

        delete_until_gone(
            provider_ids,
            list_instances=present,
            delete=delete,
            retrier=self.retrier,
            pool=self._pool.name,
        )

    def node_template(self) -> NodeTemplate:
        if self._template is None:
            scale_set = self._scale_set()
            profile = scale_set.virtual_machine_profile
            raw = profile.priority if profile is not None else None
            priority = str(getattr(raw, "value", raw) or "")
            spot = priority in ("Spot", "Low") or (not priority and self._pool.spot)
            labels = {CAPACITY_TYPE_LABEL: "spot" if spot else "on-demand"}
            if spot:
                labels[SPOT_LABEL] = "spot"
            taints = [f"{SPOT_LABEL}=spot:NoSchedule"] if spot else []
            self._template = build_template(
                self._pool,
                instance_type=str(scale_set.sku.name or ""),
                extra_labels=labels,
                extra_taints=taints,
            )
        return self._template


def _operation_failed(err: BaseException) -> bool:
    """Whether the operation itself failed (as opposed to a request polling it)."""
    from azure.core.polling.base_polling import OperationFailed

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OperationFailed):
            return True
        cause = cause.__cause__
    return False


def from_pool(
    pool: PoolModel,
    *,
    retrier: Retrier,
    credential: Any = None,
    compute: Any = None,
    poll_interval_s: float = 10.0,
) -> NodePoolProvider:
    """The scale set provider for ``pool``; a client not given is made with
    ``DefaultAzureCredential`` (or ``credential``)."""
    settings = parse_settings(pool, "azure", AzureSettings)
    name = require(pool, "groupId", pool.group_id, "the virtual machine scale set's name")
    if compute is None:
        from azure.mgmt.compute import ComputeManagementClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        compute = ComputeManagementClient(credential, settings.subscription_id, retry_total=0)
    return ScaleSetProvider(
        pool,
        name,
        settings,
        compute,
        CloudCall(pool=pool.name, retrier=retrier, map_error=map_azure_error),
        poll_interval_s=poll_interval_s,
    )
