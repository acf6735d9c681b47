"""AWS on loopback: moto in server mode, behind a fault-injecting proxy, and the harness.

moto keeps the Auto Scaling groups and EC2 instances; :class:`MotoProxy` forwards to it and
acts out what moto cannot: a launch that fails for want of capacity or quota. Real AWS
accepts the new desired capacity, launches nothing, and records a failed scaling activity.
The proxy does the same: it answers ``SetDesiredCapacity`` with success without passing it
on, reports the accepted desired capacity in ``DescribeAutoScalingGroups`` while moto keeps
the instances it has, and serves the failed activity from then on.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from prov_faults import FaultInjector
from prov_harness import ContractHarness, contract_pool
from prov_loopback import Call, LoopbackServer, Request, Response

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider
from providers import build_provider
from providers.contract import Fault, Target
from providers.retry import Retrier

REGION = "us-east-1"
ZONE = "us-east-1a"
ACCOUNT_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
AS_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

STOCKOUT_MESSAGE = (
    "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you "
    "requested (us-east-1a). Our system will be working on provisioning additional "
    "capacity. You can currently get p4d.24xlarge capacity by not specifying an "
    "Availability Zone in your request or choosing us-east-1b. Launching EC2 instance failed."
)
QUOTA_MESSAGE = (
    "You have requested more vCPU capacity than your current vCPU limit of 96 allows for "
    "the instance bucket that the specified instance type belongs to. Please visit "
    "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. "
    "Launching EC2 instance failed."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """``moto_server`` as a subprocess on a free loopback port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def service_of(request: Request) -> str:
    match = re.search(
        r"Credential=[^/]+/\d+/[^/]+/([^/]+)/", request.headers.get("authorization", "")
    )
    return match.group(1) if match else ""


_NODEGROUP = r"^/clusters/[^/]+/node-groups/[^/]+"
_EKS_ROUTES = [
    ("GET", re.compile(_NODEGROUP + "$"), "DescribeNodegroup", "read"),
    ("POST", re.compile(_NODEGROUP + "/update-config$"), "UpdateNodegroupConfig", "scale"),
]
_KINDS = {
    "SetDesiredCapacity": "scale",
    "TerminateInstanceInAutoScalingGroup": "delete",
    "UpdateNodegroupConfig": "scale",
}


def action_of(request: Request) -> tuple[str, str]:
    """(service, API action) of a request."""
    service = service_of(request)
    if service == "eks":
        for method, pattern, action, _kind in _EKS_ROUTES:
            if request.method == method and pattern.match(request.path):
                return service, action
        return service, "Other"
    return service, request.form().get("Action", "Other")


class MotoProxy:
    """Forwards to moto; acts out failed launches (stockout, quota) as AWS records them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self._lock = threading.Lock()
        self.failed_activities: dict[str, list[dict[str, str]]] = {}
        self.accepted_desired: dict[str, int] = {}
        """Desired capacities AWS accepted but could not launch, by group."""

    def classify(self, request: Request) -> Call:
        service, action = action_of(request)
        kind = _KINDS.get(action) or ("read" if action.startswith("Describe") else "other")
        return Call(
            kind=kind, permission=f"{service}:{action}", instances=1 if kind == "delete" else 0
        )

    def forward(self, request: Request) -> Response:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {
                k: v for k, v in request.headers.items() if k not in ("host", "content-length")
            }
            conn.request(request.method, request.target, body=request.body, headers=headers)
            reply = conn.getresponse()
            body = reply.read()
            keep = {
                k: v
                for k, v in reply.getheaders()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return Response(reply.status, body, keep)
        finally:
            conn.close()

    def fail_launches(self, group: str, desired: int, fault: str) -> None:
        """AWS accepted ``desired`` for ``group`` and its launches failed with ``fault``."""
        with self._lock:
            self.accepted_desired[group] = desired
        self._record_failure(group, fault)

    def handle(self, request: Request) -> Response:
        _service, action = action_of(request)
        form = request.form() if action != "Other" and request.method == "POST" else {}
        if action == "SetDesiredCapacity":
            group, desired = form["AutoScalingGroupName"], int(form["DesiredCapacity"])
            if request.fault in ("stockout", "quota") and desired > self._desired(request, group):
                self.fail_launches(group, desired, request.fault)
                return _xml_ok("SetDesiredCapacity", "")
            with self._lock:
                self.accepted_desired.pop(group, None)
        if action == "DescribeScalingActivities":
            group = form.get("AutoScalingGroupName", "")
            with self._lock:
                failed = list(self.failed_activities.get(group, []))
            if failed:
                return _xml_ok("DescribeScalingActivities", _activities_xml(failed))
        response = self.forward(request)
        group = form.get("AutoScalingGroupNames.member.1", "")
        if action == "DescribeAutoScalingGroups" and "AutoScalingGroupNames.member.2" not in form:
            with self._lock:
                accepted = self.accepted_desired.get(group)
            if accepted is not None:
                response.body = re.sub(
                    rb"<DesiredCapacity>\d+</DesiredCapacity>",
                    f"<DesiredCapacity>{accepted}</DesiredCapacity>".encode(),
                    response.body,
                )
        return response

    def _desired(self, request: Request, group: str) -> int:
        with self._lock:
            if group in self.accepted_desired:
                return self.accepted_desired[group]
        probe = Request(
            method="POST",
            target="/",
            headers=request.headers,
            body=urllib.parse.urlencode(
                {
                    "Action": "DescribeAutoScalingGroups",
                    "Version": "2011-01-01",
                    "AutoScalingGroupNames.member.1": group,
                }
            ).encode(),
        )
        found = re.search(rb"<DesiredCapacity>(\d+)</DesiredCapacity>", self.forward(probe).body)
        return int(found.group(1)) if found else 0

    def _record_failure(self, group: str, fault: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        message = STOCKOUT_MESSAGE if fault == "stockout" else QUOTA_MESSAGE
        with self._lock:
            self.failed_activities.setdefault(group, []).insert(
                0,
                {
                    "ActivityId": str(uuid.uuid4()),
                    "AutoScalingGroupName": group,
                    "Description": f"Launching a new EC2 instance.  Status Reason: {message}",
                    "Cause": f"At {now} an instance was started in response to a difference "
                    "between desired and actual capacity.",
                    "StartTime": now,
                    "EndTime": now,
                    "StatusCode": "Failed",
                    "StatusMessage": message,
                    "Progress": "100",
                },
            )


def _xml_ok(action: str, result: str) -> Response:
    inner = f"<{action}Result>{result}</{action}Result>" if result else ""
    body = (
        f'<{action}Response xmlns="{AS_NS}">{inner}'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return Response(200, body.encode(), {"Content-Type": "text/xml"})


def _activities_xml(activities: list[dict[str, str]]) -> str:
    members = "".join(
        "<member>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in a.items()) + "</member>"
        for a in activities
    )
    return f"<Activities>{members}</Activities>"


_REFUSALS = {
    "throttle": (400, 429, "Throttling", "ThrottlingException", "Rate exceeded"),
    "server_error": (500, 500, "InternalFailure", "InternalFailure", "An internal error occurred."),
}


def render_aws(fault: str, call: Call, request: Request) -> Response:
    """A refusal in the wire format of the service the request went to."""
    service = service_of(request)
    if fault == "permission":
        message = (
            "User: arn:aws:sts::123456789012:assumed-role/dlscaler-controller/botocore-session "
            f"is not authorized to perform: {call.permission} because no identity-based "
            f"policy allows the {call.permission} action"
        )
        query_status, json_status, code, json_code = (
            403,
            403,
            "AccessDenied",
            "AccessDeniedException",
        )
    else:
        query_status, json_status, code, json_code, message = _REFUSALS[fault]
    if service == "eks":
        return Response.json(json_status, {"message": message}, {"x-amzn-ErrorType": json_code})
    if service == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
        )
        return Response(
            503 if fault == "throttle" else query_status,
            body.encode(),
            {"Content-Type": "text/xml"},
        )
    body = (
        f'<ErrorResponse xmlns="{AS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Response(query_status, body.encode(), {"Content-Type": "text/xml"})


def clients(endpoint: str, *, read_timeout: float = 30) -> dict[str, object]:
    """Real boto3 clients pointed at ``endpoint``, with botocore's own retries off."""
    session = boto3.session.Session(region_name=REGION, **ACCOUNT_KEYS)
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=read_timeout,
        connect_timeout=5,
    )
    return {
        name: session.client(name, endpoint_url=endpoint, config=config)
        for name in ("autoscaling", "ec2", "eks")
    }


class AwsCloud:
    """moto + proxy + fault layer for one test session."""

    LAUNCH_TEMPLATE = "dlscaler-gpu"

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.proxy = MotoProxy(moto_url)
        self.faults = FaultInjector(self.proxy, render_aws, hold_s=1.2)
        self.server = LoopbackServer(self.faults)
        self.admin = clients(moto_url)
        self._clients: dict[str, object] | None = None
        self.admin["ec2"].create_launch_template(  # type: ignore[attr-defined]
            LaunchTemplateName=self.LAUNCH_TEMPLATE,
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "p4d.24xlarge"},
        )

    def create_asg(self, name: str, *, min_size: int, max_size: int, desired: int) -> None:
        self.admin["autoscaling"].create_auto_scaling_group(  # type: ignore[attr-defined]
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": self.LAUNCH_TEMPLATE},
            MinSize=min_size,
            MaxSize=max_size,
            DesiredCapacity=desired,
            AvailabilityZones=[ZONE],
        )

    def provider(self, pool: PoolModel, *, retrier: Retrier) -> NodePoolProvider:
        # Clients are thread-safe and slow to build: one set, with a read timeout shorter
        # than the fault layer's hold so an injected timeout is a client-side timeout.
        if self._clients is None:
            self._clients = clients(self.server.url, read_timeout=1.0)
        c = self._clients
        return build_provider(
            pool, autoscaling=c["autoscaling"], ec2=c["ec2"], eks=c["eks"], retrier=retrier
        )


class AwsHarness(ContractHarness):
    scheme = "aws"
    group_prefix = "asg"

    def __init__(self, cloud: AwsCloud) -> None:
        self.cloud = cloud
        self.pool = contract_pool("aws", region=REGION)

    def create_group(self, name: str, *, target: int) -> None:
        self.cloud.create_asg(
            name, min_size=self.pool.min_nodes, max_size=self.pool.max_nodes, desired=target
        )

    def inject(self, fault: Fault, target: Target, *, times: int = 1) -> None:
        if fault == "partial_delete":
            # AWS terminates one instance per call: a multi-instance delete that fails part
            # way is some of those calls failing (one after acting, one before).
            self.cloud.faults.inject("lost_response", "delete", times=times)
            self.cloud.faults.inject("server_error", "delete", times=times)
            return
        super().inject(fault, target, times=times)

    def settle(self, provider: NodePoolProvider) -> None:
        """moto launches and terminates synchronously."""


def aws_truth(harness: AwsHarness, provider: NodePoolProvider) -> tuple[int, list[str]]:
    """Desired capacity and live instances, read from moto directly (no faults)."""
    group = harness.cloud.admin["autoscaling"].describe_auto_scaling_groups(  # type: ignore[attr-defined]
        AutoScalingGroupNames=[provider.group_id]
    )["AutoScalingGroups"][0]
    live = [
        f"aws:///{i['AvailabilityZone']}/{i['InstanceId']}"
        for i in group["Instances"]
        if not i["LifecycleState"].startswith(("Terminat", "Detach"))
    ]
    return int(group["DesiredCapacity"]), sorted(live)
