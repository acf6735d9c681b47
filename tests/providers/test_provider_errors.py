"""Each vendor's exceptions map to one dlscaler error kind, built from the vendors' own classes."""

from __future__ import annotations

import pytest
import requests
from azure.core import exceptions as ax
from azure.core.pipeline.transport import RequestsTransportResponse
from azure.core.rest import HttpRequest
from azure.identity import CredentialUnavailableError
from botocore import exceptions as bx
from google.api_core import exceptions as gx
from google.auth import exceptions as ga

from dlscaler.pool import ErrorKind
from providers.aws_errors import classify_launch_failure, map_aws_error
from providers.azure_errors import map_azure_error
from providers.gcp_errors import map_gcp_error


def client_error(code: str, message: str, status: int) -> bx.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "SetDesiredCapacity")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling", 400, ErrorKind.THROTTLED),
        ("RequestLimitExceeded", 503, ErrorKind.THROTTLED),
        ("InsufficientInstanceCapacity", 500, ErrorKind.CAPACITY),
        ("SpotMaxPriceTooLow", 400, ErrorKind.CAPACITY),
        ("VcpuLimitExceeded", 400, ErrorKind.QUOTA),
        ("LimitExceeded", 400, ErrorKind.QUOTA),
        ("AccessDenied", 403, ErrorKind.PERMISSION),
        ("UnauthorizedOperation", 403, ErrorKind.PERMISSION),
        ("ExpiredToken", 403, ErrorKind.PERMISSION),
        ("ResourceNotFoundException", 404, ErrorKind.NOT_FOUND),
        ("InternalFailure", 500, ErrorKind.TRANSIENT),
        ("ResourceInUseException", 409, ErrorKind.TRANSIENT),
        ("SomethingNew", 502, ErrorKind.TRANSIENT),
        ("ValidationError", 400, ErrorKind.INVALID_CONFIG),
    ],
)
def test_aws_error_codes(code: str, status: int, kind: ErrorKind) -> None:
    mapped = map_aws_error(client_error(code, "it went wrong", status), "autoscaling:X")
    assert mapped is not None and mapped.kind is kind and mapped.code == code


def test_aws_instance_not_in_group_is_not_found() -> None:
    err = client_error(
        "ValidationError",
        "Instance Id not found - No managed instance found for instance ID: i-1",
        400,
    )
    mapped = map_aws_error(err, "autoscaling:TerminateInstanceInAutoScalingGroup")
    assert mapped is not None and mapped.kind is ErrorKind.NOT_FOUND


def test_aws_permission_error_names_the_action_from_the_message() -> None:
    err = client_error(
        "AccessDenied",
        "User: arn:aws:sts::1:assumed-role/dlscaler/x is not authorized to perform: "
        "autoscaling:TerminateInstanceInAutoScalingGroup on resource: arn:aws:autoscaling:...",
        403,
    )
    mapped = map_aws_error(err, "autoscaling:SetDesiredCapacity")
    assert mapped is not None
    assert mapped.permission == "autoscaling:TerminateInstanceInAutoScalingGroup"


def test_aws_permission_error_falls_back_to_the_action_called() -> None:
    mapped = map_aws_error(
        client_error("AccessDenied", "Access denied", 403), "eks:DescribeNodegroup"
    )
    assert mapped is not None and mapped.permission == "eks:DescribeNodegroup"
    assert "eks:DescribeNodegroup" in str(mapped)


def test_aws_missing_credentials_say_where_they_come_from() -> None:
    mapped = map_aws_error(bx.NoCredentialsError(), "autoscaling:DescribeAutoScalingGroups")
    assert mapped is not None and mapped.kind is ErrorKind.PERMISSION
    assert "IRSA" in mapped.message and "Pod Identity" in mapped.message


def test_aws_connection_failures_are_transient() -> None:
    for exc in (
        bx.EndpointConnectionError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com"),
        bx.ReadTimeoutError(endpoint_url="https://x"),
        bx.ConnectTimeoutError(endpoint_url="https://x"),
    ):
        mapped = map_aws_error(exc, "")
        assert mapped is not None and mapped.kind is ErrorKind.TRANSIENT


def test_aws_unrelated_exceptions_are_not_mapped() -> None:
    assert map_aws_error(KeyError("bug"), "") is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (
            "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone "
            "you requested (us-east-1a). Launching EC2 instance failed.",
            ErrorKind.CAPACITY,
        ),
        ("AsgInstanceLaunchFailures: InsufficientInstanceCapacity - ...", ErrorKind.CAPACITY),
        (
            "You have requested more vCPU capacity than your current vCPU limit of 96 allows",
            ErrorKind.QUOTA,
        ),
    ],
)
def test_aws_launch_failures(text: str, kind: ErrorKind) -> None:
    error = classify_launch_failure(text)
    assert error is not None and error.kind is kind


def test_aws_other_launch_failures_are_not_a_reason_to_move_on() -> None:
    assert classify_launch_failure("The image id '[ami-1]' does not exist") is None


def gce_error(status: int, reason: str, message: str = "failed") -> gx.GoogleAPICallError:
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return gx.from_http_status(status, message, errors=errors)  # type: ignore[no-untyped-call,no-any-return]


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (429, "rateLimitExceeded", ErrorKind.THROTTLED),
        (403, "rateLimitExceeded", ErrorKind.THROTTLED),
        (403, "quotaExceeded", ErrorKind.QUOTA),
        (403, "forbidden", ErrorKind.PERMISSION),
        (401, "authError", ErrorKind.PERMISSION),
        (404, "notFound", ErrorKind.NOT_FOUND),
        (409, "resourceNotReady", ErrorKind.TRANSIENT),
        (503, "backendError", ErrorKind.TRANSIENT),
        (400, "invalid", ErrorKind.INVALID_CONFIG),
        (500, "ZONE_RESOURCE_POOL_EXHAUSTED", ErrorKind.CAPACITY),
    ],
)
def test_gcp_errors(status: int, reason: str, kind: ErrorKind) -> None:
    mapped = map_gcp_error(gce_error(status, reason), "compute.instanceGroupManagers.update")
    assert mapped is not None and mapped.kind is kind


def test_gcp_permission_error_names_the_permission_from_the_message() -> None:
    err = gce_error(
        403,
        "forbidden",
        "Required 'compute.instanceGroupManagers.update' permission for "
        "'projects/p/zones/z/instanceGroupManagers/m'",
    )
    mapped = map_gcp_error(err, "compute.instanceGroupManagers.get")
    assert mapped is not None and mapped.permission == "compute.instanceGroupManagers.update"


def test_gcp_credentials_and_connections() -> None:
    missing = map_gcp_error(ga.DefaultCredentialsError("no ADC"), "x")
    assert missing is not None and missing.kind is ErrorKind.PERMISSION
    assert "Workload Identity" in missing.message
    for exc in (
        requests.ConnectionError("reset"),
        requests.Timeout("slow"),
        ga.TransportError("x"),
    ):
        mapped = map_gcp_error(exc, "")
        assert mapped is not None and mapped.kind is ErrorKind.TRANSIENT
    assert map_gcp_error(ValueError("bug"), "") is None


def arm_error(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> ax.HttpResponseError:
    """An HttpResponseError around a real (unsent) requests response, as azure-core builds it."""
    raw = requests.Response()
    raw.status_code = status
    raw._content = body
    raw.headers.update({"Content-Type": "application/json", **(headers or {})})
    request = HttpRequest("PATCH", "https://management.azure.com/subscriptions/s")
    response = RequestsTransportResponse(request, raw)  # type: ignore[arg-type]
    return ax.HttpResponseError(response=response)


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (429, "TooManyRequests", "throttled", ErrorKind.THROTTLED),
        (200, "AllocationFailed", "Allocation failed.", ErrorKind.CAPACITY),
        (200, "ZonalAllocationFailed", "Allocation failed.", ErrorKind.CAPACITY),
        (409, "SkuNotAvailable", "not available", ErrorKind.CAPACITY),
        (409, "OperationNotAllowed", "exceeding approved Cores quota", ErrorKind.QUOTA),
        (403, "AuthorizationFailed", "no", ErrorKind.PERMISSION),
        (404, "ResourceNotFound", "gone", ErrorKind.NOT_FOUND),
        (
            400,
            "InvalidParameter",
            "instanceId 7 is not an active Virtual Machine Scale Set VM instanceId.",
            ErrorKind.NOT_FOUND,
        ),
        (500, "InternalServerError", "oops", ErrorKind.TRANSIENT),
        (409, "Conflict", "an operation is in progress", ErrorKind.TRANSIENT),
        (400, "InvalidParameter", "sku.name is wrong", ErrorKind.INVALID_CONFIG),
    ],
)
def test_azure_errors(status: int, code: str, message: str, kind: ErrorKind) -> None:
    body = f'{{"error": {{"code": "{code}", "message": "{message}"}}}}'.encode()
    mapped = map_azure_error(
        arm_error(status, body), "Microsoft.Compute/virtualMachineScaleSets/write"
    )
    assert mapped is not None and mapped.kind is kind and mapped.code == code


def test_azure_throttling_keeps_retry_after() -> None:
    body = b'{"error": {"code": "TooManyRequests", "message": "slow down"}}'
    mapped = map_azure_error(arm_error(429, body, {"Retry-After": "7"}), "")
    assert mapped is not None and mapped.retry_after_s == 7.0


def test_azure_permission_error_names_the_action() -> None:
    body = (
        b'{"error": {"code": "AuthorizationFailed", "message": "The client \'c\' with object id '
        b"'o' does not have authorization to perform action "
        b"'Microsoft.Compute/virtualMachineScaleSets/delete/action' over scope '/s'.\"}}"
    )
    mapped = map_azure_error(
        arm_error(403, body), "Microsoft.Compute/virtualMachineScaleSets/write"
    )
    assert mapped is not None
    assert mapped.permission == "Microsoft.Compute/virtualMachineScaleSets/delete/action"


def test_azure_credentials_and_connections() -> None:
    missing = map_azure_error(CredentialUnavailableError("nothing configured"), "x")
    assert missing is not None and missing.kind is ErrorKind.PERMISSION
    assert "workload identity" in missing.message and not missing.permission
    rejected = map_azure_error(ax.ClientAuthenticationError("AADSTS700016: bad app\nmore"), "x")
    assert rejected is not None and rejected.kind is ErrorKind.PERMISSION
    assert "AADSTS700016" in rejected.message and "more" not in rejected.message
    for exc in (ax.ServiceRequestError("refused"), ax.ServiceResponseError("reset")):
        mapped = map_azure_error(exc, "")
        assert mapped is not None and mapped.kind is ErrorKind.TRANSIENT
    assert map_azure_error(ValueError("bug"), "") is None
