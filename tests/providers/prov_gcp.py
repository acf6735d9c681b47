"""A stateful loopback fake of the GCE instanceGroupManagers REST endpoints, and its harness.

Exactly what the adapter calls, zonal and regional: ``get``, ``resize``,
``listManagedInstances`` (paged), ``deleteInstances`` and the zone/region operation ``get``
that the client polls. Instances are created ``CREATING`` and run on :meth:`GceFake.settle`;
deleted ones show ``DELETING`` until then. A stockout leaves new instances ``CREATING`` with
``lastAttempt.errors`` ``ZONE_RESOURCE_POOL_EXHAUSTED``, as a real MIG does.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from prov_faults import FaultInjector
from prov_harness import ContractHarness, contract_pool
from prov_loopback import Call, LoopbackServer, Request, Response

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider
from providers import build_provider
from providers.retry import Retrier

PROJECT = "dlscaler-test"
ZONE = "us-central1-a"
REGION = "us-central1"
API = "https://www.googleapis.com/compute/v1"

_MANAGER = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/(?P<scope>zones|regions)/(?P<loc>[^/]+)"
    r"/instanceGroupManagers/(?P<name>[^/]+)(?:/(?P<verb>resize|listManagedInstances|deleteInstances))?$"
)
_OPERATION = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/(?P<scope>zones|regions)/(?P<loc>[^/]+)"
    r"/operations/(?P<op>[^/]+?)(?P<wait>/wait)?$"
)
_INSTANCE = re.compile(r"zones/([^/]+)/instances/([^/]+)$")


@dataclass
class _Vm:
    name: str
    zone: str
    action: str = "CREATING"
    status: str = ""
    error: tuple[str, str] | None = None


@dataclass
class _Mig:
    project: str
    scope: str
    loc: str
    name: str
    target: int = 0
    vms: dict[str, _Vm] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def zones(self) -> list[str]:
        return (
            [self.loc]
            if self.scope == "zones"
            else [f"{self.loc}-a", f"{self.loc}-b", f"{self.loc}-c"]
        )

    def live(self) -> list[_Vm]:
        return [v for v in self.vms.values() if v.action != "DELETING"]


class GceFake:
    """The instance group managers of one fake project, served as GCE's REST API."""

    def __init__(self, *, page_size: int = 3, polls_until_done: int = 1) -> None:
        self.page_size = page_size
        self.polls_until_done = polls_until_done
        """Operation GETs that still answer RUNNING before DONE (real polling, not instant)."""
        self._lock = threading.RLock()
        self.migs: dict[tuple[str, str, str, str], _Mig] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self._op_ids = itertools.count(1000)

    # --- set-up ---------------------------------------------------------------------------

    def create(self, name: str, *, region: bool = False, target: int = 0) -> None:
        scope, loc = ("regions", REGION) if region else ("zones", ZONE)
        with self._lock:
            mig = _Mig(PROJECT, scope, loc, name)
            self.migs[(PROJECT, scope, loc, name)] = mig
            self._grow(mig, target, fault="")
        self.settle()

    def settle(self) -> None:
        """Instances finish creating (unless their creation keeps failing) or deleting."""
        with self._lock:
            for mig in self.migs.values():
                for key, vm in list(mig.vms.items()):
                    if vm.action == "DELETING":
                        del mig.vms[key]
                    elif vm.action == "CREATING" and vm.error is None:
                        vm.action, vm.status = "NONE", "RUNNING"

    # --- the REST API ---------------------------------------------------------------------

    def classify(self, request: Request) -> Call:
        m = _MANAGER.match(request.path)
        if m is None:
            op = _OPERATION.match(request.path)
            if op is None:
                return Call("other", "")
            scope = "zone" if op.group("scope") == "zones" else "region"
            return Call("poll", f"compute.{scope}Operations.get")
        verb = m.group("verb")
        if verb == "resize":
            return Call("scale", "compute.instanceGroupManagers.update")
        if verb == "deleteInstances":
            count = len(request.json().get("instances", []))
            return Call("delete", "compute.instanceGroupManagers.update", instances=count)
        return Call("read", "compute.instanceGroupManagers.get")

    def handle(self, request: Request) -> Response:
        with self._lock:
            op = _OPERATION.match(request.path)
            if op and (request.method == "GET" or (op.group("wait") and request.method == "POST")):
                return self._get_operation(op.group("op"))
            m = _MANAGER.match(request.path)
            if m is None:
                return _error(404, f"no route for {request.method} {request.path}", "notFound")
            key = (m.group("project"), m.group("scope"), m.group("loc"), m.group("name"))
            mig = self.migs.get(key)
            if mig is None:
                return _error(
                    404,
                    f"The resource 'projects/{key[0]}/{key[1]}/{key[2]}/instanceGroupManagers/"
                    f"{key[3]}' was not found",
                    "notFound",
                )
            verb = m.group("verb")
            if verb is None and request.method == "GET":
                return Response.json(200, self._manager_json(mig))
            if verb == "resize" and request.method == "POST":
                return self._resize(mig, int(request.query["size"]), request.fault)
            if verb == "listManagedInstances" and request.method == "POST":
                return self._list(mig, request.query)
            if verb == "deleteInstances" and request.method == "POST":
                return self._delete(mig, request.json(), request.fault)
            return _error(400, f"unsupported {request.method} {request.path}", "badRequest")

    def _manager_json(self, mig: _Mig) -> dict[str, Any]:
        where = f"{API}/projects/{mig.project}/{mig.scope}/{mig.loc}"
        stable = all(v.action == "NONE" for v in mig.vms.values())
        return {
            "kind": "compute#instanceGroupManager",
            "id": "4711",
            "name": mig.name,
            ("zone" if mig.scope == "zones" else "region"): where,
            "selfLink": f"{where}/instanceGroupManagers/{mig.name}",
            "instanceTemplate": f"{API}/projects/{mig.project}/global/instanceTemplates/gpu",
            "baseInstanceName": mig.name,
            "targetSize": mig.target,
            "status": {"isStable": stable},
        }

    def _resize(self, mig: _Mig, size: int, fault: str) -> Response:
        if size < 0:
            return _error(400, "Invalid value for field 'size'", "invalid")
        if size > mig.target:
            self._grow(mig, size - mig.target, fault=fault)
        elif size < mig.target:
            # A MIG removes instances that are not running yet first.
            order = sorted(mig.live(), key=lambda v: (v.action == "NONE", v.name), reverse=False)
            for vm in order[: mig.target - size]:
                vm.action = "DELETING"
            mig.target = size
        return self._operation(mig, "resize")

    def _grow(self, mig: _Mig, count: int, *, fault: str) -> None:
        zones = mig.zones()
        for _ in range(count):
            n = next(mig.counter)
            vm = _Vm(name=f"{mig.name}-{n:04x}", zone=zones[n % len(zones)])
            if fault == "stockout":
                vm.error = (
                    "ZONE_RESOURCE_POOL_EXHAUSTED",
                    f"The zone 'projects/{mig.project}/zones/{vm.zone}' does not have enough "
                    "resources available to fulfill the request. Try a different zone, or "
                    "try again later.",
                )
            elif fault == "quota":
                vm.error = (
                    "QUOTA_EXCEEDED",
                    f"Quota 'NVIDIA_A100_GPUS' exceeded. Limit: 16.0 in region {REGION}.",
                )
            mig.vms[vm.name] = vm
        mig.target += count

    def _list(self, mig: _Mig, query: dict[str, str]) -> Response:
        vms = sorted(mig.vms.values(), key=lambda v: v.name)
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or self.page_size), self.page_size)
        page = vms[start : start + size]
        body: dict[str, Any] = {"managedInstances": [self._managed_json(mig, vm) for vm in page]}
        if start + size < len(vms):
            body["nextPageToken"] = str(start + size)
        return Response.json(200, body)

    def _managed_json(self, mig: _Mig, vm: _Vm) -> dict[str, Any]:
        item: dict[str, Any] = {
            "instance": f"{API}/projects/{mig.project}/zones/{vm.zone}/instances/{vm.name}",
            "id": str(abs(hash(vm.name)) % 10**12),
            "name": vm.name,
            "currentAction": vm.action,
        }
        if vm.status:
            item["instanceStatus"] = vm.status
        if vm.error:
            item["lastAttempt"] = {
                "errors": {"errors": [{"code": vm.error[0], "message": vm.error[1]}]}
            }
        return item

    def _delete(self, mig: _Mig, body: dict[str, Any], fault: str) -> Response:
        wanted: list[_Vm] = []
        for url in body.get("instances", []):
            found = _INSTANCE.search(url)
            vm = mig.vms.get(found.group(2)) if found else None
            if vm is None or vm.action == "DELETING" or (found and vm.zone != found.group(1)):
                if not body.get("skipInstancesOnValidationError"):
                    return _error(
                        400, f"The instance '{url}' is not a member of the group", "invalid"
                    )
                continue
            wanted.append(vm)
        done = wanted[: len(wanted) // 2] if fault == "partial_delete" else wanted
        for vm in done:
            vm.action = "DELETING"
        mig.target -= len(done)
        if fault == "partial_delete" and len(done) < len(wanted):
            return self._operation(
                mig,
                "deleteInstances",
                error=(
                    "INTERNAL_ERROR",
                    f"Deleted {len(done)} of {len(wanted)} instances; internal error on the rest",
                ),
            )
        return self._operation(mig, "deleteInstances")

    def _operation(self, mig: _Mig, kind: str, *, error: tuple[str, str] | None = None) -> Response:
        name = f"operation-{next(self._op_ids)}"
        where = f"{API}/projects/{mig.project}/{mig.scope}/{mig.loc}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": name.split("-")[1],
            "name": name,
            ("zone" if mig.scope == "zones" else "region"): where,
            "operationType": f"compute.instanceGroupManagers.{kind}",
            "targetLink": f"{where}/instanceGroupManagers/{mig.name}",
            "selfLink": f"{where}/operations/{name}",
            "status": "DONE",
            "progress": 100,
        }
        if error:
            op["error"] = {"errors": [{"code": error[0], "message": error[1]}]}
            op["httpErrorStatusCode"] = 500
            op["httpErrorMessage"] = "INTERNAL SERVER ERROR"
        self.operations[name] = op
        self._polls[name] = self.polls_until_done
        return Response.json(200, self._op_view(name))

    def _op_view(self, name: str) -> dict[str, Any]:
        op = dict(self.operations[name])
        if self._polls[name] > 0:
            op = {
                k: v
                for k, v in op.items()
                if k not in ("error", "httpErrorStatusCode", "httpErrorMessage")
            }
            op.update(status="RUNNING", progress=0)
        return op

    def _get_operation(self, name: str) -> Response:
        if name not in self.operations:
            return _error(404, f"The resource 'operations/{name}' was not found", "notFound")
        view = self._op_view(name)
        self._polls[name] = max(0, self._polls[name] - 1)
        return Response.json(200, view)


def _error(status: int, message: str, reason: str) -> Response:
    return Response.json(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
    )


def render_gcp(fault: str, call: Call, request: Request) -> Response:
    if fault == "throttle":
        body = {
            "error": {
                "code": 429,
                "message": "Rate Limit Exceeded",
                "errors": [
                    {
                        "message": "Rate Limit Exceeded",
                        "domain": "usageLimits",
                        "reason": "rateLimitExceeded",
                    }
                ],
            }
        }
        return Response.json(429, body)
    if fault == "permission":
        target = request.path.removeprefix("/compute/v1/")
        return _error(403, f"Required '{call.permission}' permission for '{target}'", "forbidden")
    return _error(503, "The service is currently unavailable.", "backendError")


class GcpCloud:
    """The fake behind the fault layer, served on loopback for a test session."""

    def __init__(self) -> None:
        self.fake = GceFake()
        self.faults = FaultInjector(self.fake, render_gcp, hold_s=1.2)
        self.server = LoopbackServer(self.faults)
        self._clients: dict[str, Any] = {}

    def client(self, factory: Any) -> Any:
        """A real compute client of class ``factory``, pointed at the fake over plain HTTP."""
        if factory.__name__ not in self._clients:
            self._clients[factory.__name__] = factory(
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.server.url},
                transport="rest",
            )
        return self._clients[factory.__name__]

    def provider(self, pool: PoolModel, *, retrier: Retrier) -> NodePoolProvider:
        regional = not pool.zone
        managers = (
            compute_v1.RegionInstanceGroupManagersClient
            if regional
            else compute_v1.InstanceGroupManagersClient
        )
        operations = (
            compute_v1.RegionOperationsClient if regional else compute_v1.ZoneOperationsClient
        )
        return build_provider(
            pool,
            instance_group_managers=self.client(managers),
            operations=self.client(operations),
            retrier=retrier,
        )


class GcpHarness(ContractHarness):
    scheme = "gce"
    group_prefix = "mig"

    def __init__(self, cloud: GcpCloud, *, regional: bool = False) -> None:
        self.cloud = cloud
        self.regional = regional
        where = {"region": REGION} if regional else {"zone": ZONE, "region": REGION}
        self.pool = contract_pool(
            "gcp",
            instanceType="a2-highgpu-8g",
            gcp={"project": PROJECT, "requestTimeoutSeconds": 1.0},
            **where,
        )

    def create_group(self, name: str, *, target: int) -> None:
        self.cloud.fake.create(name, region=self.regional, target=target)

    def settle(self, provider: NodePoolProvider) -> None:
        self.cloud.fake.settle()


def gcp_truth(harness: GcpHarness, provider: NodePoolProvider) -> tuple[int, list[str]]:
    """Target size and live instances, read from the fake's state (no faults)."""
    fake = harness.cloud.fake
    with fake._lock:
        mig = next(m for m in fake.migs.values() if m.name == provider.group_id)
        live = [f"gce://{mig.project}/{vm.zone}/{vm.name}" for vm in mig.live()]
        return mig.target, sorted(live)
