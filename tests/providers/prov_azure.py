"""A stateful loopback HTTPS fake of the ARM virtualMachineScaleSets endpoints, and its harness.

Exactly what the adapter calls: scale set ``get``, ``PATCH`` (capacity update, a
long-running operation with an ``Azure-AsyncOperation`` URL that answers ``InProgress``
before it finishes), the VM list (paged with ``nextLink``), ``POST .../delete`` (instance
ids; 202 and an async operation) and the async operation status. Served over TLS with a
certificate for 127.0.0.1 from a test CA (trustme): the bearer-token policy refuses plain
HTTP. A stockout fails the update's operation with ``AllocationFailed`` and leaves the new
VMs ``Failed``; a quota refusal is a 409 ``OperationNotAllowed`` at once, as ARM does.
"""

from __future__ import annotations

import itertools
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import trustme
from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient
from prov_faults import FaultInjector
from prov_harness import ContractHarness, contract_pool
from prov_loopback import Call, LoopbackServer, Request, Response

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider
from providers import build_provider
from providers.retry import Retrier

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
RESOURCE_GROUP = "MC_dlscaler_gpu_eastus"
LOCATION = "eastus"
SKU = "Standard_ND96asr_v4"

_SCALE_SET = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
    r"/virtualMachineScaleSets/(?P<name>[^/]+)(?P<rest>/virtualMachines|/delete)?$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations/(?P<op>[^/]+)$",
    re.IGNORECASE,
)


class StaticToken:
    """A credential for tests: any object with ``get_token`` serves."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("loopback-test-token", int(time.time()) + 3600)


@dataclass
class _Vm:
    instance_id: int
    state: str = "Creating"


@dataclass
class _ScaleSet:
    name: str
    capacity: int = 0
    priority: str = "Regular"
    vms: dict[int, _Vm] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def live(self) -> list[_Vm]:
        return [v for v in self.vms.values() if v.state not in ("Deleting",)]


class ArmFake:
    """The scale sets of one fake subscription and resource group, served as ARM."""

    def __init__(self, *, page_size: int = 3, polls_until_done: int = 1) -> None:
        self.page_size = page_size
        self.polls_until_done = polls_until_done
        self._lock = threading.RLock()
        self.scale_sets: dict[str, _ScaleSet] = {}
        self._operations: dict[str, dict[str, Any]] = {}
        self._op_ids = itertools.count(1)

    # --- set-up ---------------------------------------------------------------------------

    def create(self, name: str, *, capacity: int = 0, priority: str = "Regular") -> None:
        with self._lock:
            ss = _ScaleSet(name, priority=priority)
            self.scale_sets[name.lower()] = ss
            self._grow(ss, capacity, fault="")
        self.settle()

    def settle(self) -> None:
        with self._lock:
            for ss in self.scale_sets.values():
                for key, vm in list(ss.vms.items()):
                    if vm.state == "Deleting":
                        del ss.vms[key]
                    elif vm.state == "Creating":
                        vm.state = "Succeeded"

    # --- the REST API ---------------------------------------------------------------------

    def classify(self, request: Request) -> Call:
        m = _SCALE_SET.match(request.path)
        if m is None:
            return Call(
                "poll" if _OPERATION.match(request.path) else "other",
                "Microsoft.Compute/locations/operations/read",
            )
        base = "Microsoft.Compute/virtualMachineScaleSets"
        if m.group("rest") and m.group("rest").lower() == "/delete":
            count = len(request.json().get("instanceIds", []))
            return Call("delete", f"{base}/delete/action", instances=count)
        if m.group("rest"):
            return Call("read", f"{base}/virtualMachines/read")
        if request.method == "PATCH":
            return Call("scale", f"{base}/write")
        return Call("read", f"{base}/read")

    def handle(self, request: Request) -> Response:
        with self._lock:
            host = request.headers.get("host", "127.0.0.1")
            op = _OPERATION.match(request.path)
            if op and request.method == "GET":
                return self._operation_status(op.group("op"))
            m = _SCALE_SET.match(request.path)
            if m is None:
                return _arm_error(404, "NotFound", f"no route for {request.method} {request.path}")
            ss = self.scale_sets.get(m.group("name").lower())
            if ss is None or m.group("rg").lower() != RESOURCE_GROUP.lower():
                return _arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{m.group('name')}' "
                    f"under resource group '{m.group('rg')}' was not found.",
                )
            rest = (m.group("rest") or "").lower()
            if rest == "/virtualmachines" and request.method == "GET":
                return self._list(ss, request, host)
            if rest == "/delete" and request.method == "POST":
                return self._delete(ss, request.json(), request.fault, host)
            if not rest and request.method == "GET":
                return Response.json(200, self._scale_set_json(ss))
            if not rest and request.method == "PATCH":
                return self._update(ss, request.json(), request.fault, host)
            return _arm_error(400, "InvalidRequest", f"unsupported {request.method} {request.path}")

    def _id(self, ss: _ScaleSet) -> str:
        return (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{ss.name}"
        )

    def _scale_set_json(self, ss: _ScaleSet, state: str = "Succeeded") -> dict[str, Any]:
        return {
            "id": self._id(ss),
            "name": ss.name,
            "type": "Microsoft.Compute/virtualMachineScaleSets",
            "location": LOCATION,
            "sku": {"name": SKU, "tier": "Standard", "capacity": ss.capacity},
            "properties": {
                "provisioningState": state,
                "orchestrationMode": "Uniform",
                "virtualMachineProfile": {"priority": ss.priority},
            },
        }

    def _vm_json(self, ss: _ScaleSet, vm: _Vm) -> dict[str, Any]:
        return {
            "id": f"{self._id(ss)}/virtualMachines/{vm.instance_id}",
            "name": f"{ss.name}_{vm.instance_id}",
            "instanceId": str(vm.instance_id),
            "location": LOCATION,
            "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
            "properties": {
                "provisioningState": vm.state,
                "osProfile": {"computerName": f"{ss.name}{vm.instance_id:06x}"},
            },
        }

    def _grow(self, ss: _ScaleSet, count: int, *, fault: str) -> None:
        for _ in range(count):
            n = next(ss.counter)
            ss.vms[n] = _Vm(n, "Failed" if fault == "stockout" else "Creating")
        ss.capacity += count

    def _update(self, ss: _ScaleSet, body: dict[str, Any], fault: str, host: str) -> Response:
        capacity = body.get("sku", {}).get("capacity")
        if capacity is None or int(capacity) < 0:
            return _arm_error(400, "InvalidParameter", "sku.capacity is required")
        capacity = int(capacity)
        error = None
        if capacity > ss.capacity:
            if fault == "quota":
                return _arm_error(
                    409,
                    "OperationNotAllowed",
                    "Operation could not be completed as it results in exceeding approved "
                    "standardNDASv4_A100Family Cores quota. Additional details - Deployment "
                    f"Model: Resource Manager, Location: {LOCATION}, Current Limit: 96, "
                    "Current Usage: 96, "
                    "Additional Required: 96, (Minimum) New Limit Required: 192.",
                )
            self._grow(ss, capacity - ss.capacity, fault=fault)
            if fault == "stockout":
                error = {
                    "code": "AllocationFailed",
                    "message": "Allocation failed. We do not have sufficient capacity for the "
                    f"requested VM size {SKU} in this region.",
                }
        elif capacity < ss.capacity:
            # Scale-in removes the highest instance ids (the default policy, one zone).
            for vm in sorted(ss.live(), key=lambda v: v.instance_id, reverse=True)[
                : ss.capacity - capacity
            ]:
                vm.state = "Deleting"
            ss.capacity = capacity
        headers = self._start_operation(host, error)
        return Response.json(200, self._scale_set_json(ss, "Updating"), headers)

    def _list(self, ss: _ScaleSet, request: Request, host: str) -> Response:
        vms = sorted(ss.vms.values(), key=lambda v: v.instance_id)
        start = int(request.query.get("$skiptoken") or 0)
        page = vms[start : start + self.page_size]
        body: dict[str, Any] = {"value": [self._vm_json(ss, vm) for vm in page]}
        if start + self.page_size < len(vms):
            query = dict(request.query, **{"$skiptoken": str(start + self.page_size)})
            body["nextLink"] = f"https://{host}{request.path}?{urllib.parse.urlencode(query)}"
        return Response.json(200, body)

    def _delete(self, ss: _ScaleSet, body: dict[str, Any], fault: str, host: str) -> Response:
        ids = [str(i) for i in body.get("instanceIds", [])]
        for i in ids:
            vm = ss.vms.get(int(i)) if i.isdigit() else None
            if vm is None or vm.state == "Deleting":
                return _arm_error(
                    400,
                    "InvalidParameter",
                    f"The provided instanceId {i} is not an active Virtual Machine Scale Set "
                    "VM instanceId.",
                    target="instanceIds",
                )
        done = ids[: len(ids) // 2] if fault == "partial_delete" else ids
        for i in done:
            ss.vms[int(i)].state = "Deleting"
        ss.capacity -= len(done)
        error = None
        if len(done) < len(ids):
            error = {
                "code": "InternalExecutionError",
                "message": f"Deleted {len(done)} of {len(ids)} VMs.",
            }
        return Response(202, b"", self._start_operation(host, error))

    def _start_operation(self, host: str, error: dict[str, str] | None) -> dict[str, str]:
        op = f"op-{next(self._op_ids):05d}"
        self._operations[op] = {"polls": self.polls_until_done, "error": error}
        url = (
            f"https://{host}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/"
            f"{LOCATION}/operations/{op}?api-version=2026-04-01"
        )
        return {"Azure-AsyncOperation": url}

    def _operation_status(self, op: str) -> Response:
        state = self._operations.get(op)
        if state is None:
            return _arm_error(404, "NotFound", f"operation {op} not found")
        if state["polls"] > 0:
            state["polls"] -= 1
            return Response.json(200, {"name": op, "status": "InProgress"})
        if state["error"]:
            return Response.json(200, {"name": op, "status": "Failed", "error": state["error"]})
        return Response.json(200, {"name": op, "status": "Succeeded"})


def _arm_error(status: int, code: str, message: str, *, target: str = "") -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if target:
        error["target"] = target
    return Response.json(status, {"error": error})


def render_azure(fault: str, call: Call, request: Request) -> Response:
    if fault == "throttle":
        return Response.json(
            429,
            {"error": {"code": "TooManyRequests", "message": "The request is being throttled."}},
            {"Retry-After": "1"},
        )
    if fault == "permission":
        scope = request.path
        return _arm_error(
            403,
            "AuthorizationFailed",
            "The client '5c1a0b4e-0000-0000-0000-000000000001' with object id "
            "'5c1a0b4e-0000-0000-0000-000000000001' does not have authorization to perform "
            f"action '{call.permission}' over scope '{scope}' or the scope is invalid. If access "
            "was recently granted, please refresh your credentials.",
        )
    return _arm_error(
        500, "InternalServerError", "An unexpected error occured while processing the request."
    )


class AzureCloud:
    """The fake behind the fault layer, served over TLS on loopback for a test session."""

    def __init__(self, ca_path: str, server_context: ssl.SSLContext) -> None:
        self.fake = ArmFake()
        self.faults = FaultInjector(self.fake, render_azure, hold_s=1.2)
        self.server = LoopbackServer(self.faults, ssl_context=server_context)
        self.ca_path = ca_path
        self._client: ComputeManagementClient | None = None

    @classmethod
    def with_test_ca(cls, directory: str) -> AzureCloud:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        ca_path = f"{directory}/loopback-ca.pem"
        ca.cert_pem.write_to_path(ca_path)
        return cls(ca_path, context)

    def client(self) -> ComputeManagementClient:
        """A real ComputeManagementClient pointed at the fake, its own retries off."""
        if self._client is None:
            self._client = ComputeManagementClient(
                StaticToken(),
                SUBSCRIPTION,
                base_url=self.server.url,
                connection_verify=self.ca_path,
                retry_total=0,
            )
        return self._client

    def provider(self, pool: PoolModel, *, retrier: Retrier) -> NodePoolProvider:
        return build_provider(pool, compute=self.client(), retrier=retrier, poll_interval_s=0.01)


class AzureHarness(ContractHarness):
    scheme = "azure"
    group_prefix = "vmss"

    def __init__(self, cloud: AzureCloud) -> None:
        self.cloud = cloud
        self.pool = contract_pool(
            "azure",
            instanceType=SKU,
            region=LOCATION,
            azure={
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "requestTimeoutSeconds": 1.0,
            },
        )

    def create_group(self, name: str, *, target: int) -> None:
        self.cloud.fake.create(name, capacity=target)

    def settle(self, provider: NodePoolProvider) -> None:
        self.cloud.fake.settle()


def azure_truth(harness: AzureHarness, provider: NodePoolProvider) -> tuple[int, list[str]]:
    """Capacity and live VMs, read from the fake's state (no faults)."""
    fake = harness.cloud.fake
    with fake._lock:
        ss = fake.scale_sets[provider.group_id.lower()]
        live = [
            f"azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP.lower()}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{ss.name}"
            f"/virtualMachines/{vm.instance_id}"
            for vm in ss.live()
        ]
        return ss.capacity, sorted(live)
