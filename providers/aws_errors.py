"""botocore exceptions and AWS error codes, mapped once into dlscaler's error kinds."""

from __future__ import annotations

import re

from botocore import exceptions as bx

from dlscaler.pool import (
    CapacityError,
    InvalidConfigError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaError,
    ThrottledError,
    TransientError,
)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
    }
)
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacityOnOutpost",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
    }
)
QUOTA_CODES = frozenset(
    {
        "LimitExceeded",
        "LimitExceededException",
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "ServiceQuotaExceededException",
        "ResourceLimitExceeded",
        "Ec2SpotInstanceLimitExceeded",
    }
)
PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "AuthFailure",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "OptInRequired",
    }
)
NOT_FOUND_CODES = frozenset(
    {"ResourceNotFoundException", "InvalidInstanceID.NotFound", "NotFoundException"}
)
TRANSIENT_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
        "ResourceContention",
        "ResourceInUseException",
        "ScalingActivityInProgress",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    }
)

# AWS's own words when a launch fails for want of machines or of quota (scaling activities,
# EKS node group health issues). Codes appear in the text more often than not.
_CAPACITY_TEXT = re.compile(
    r"InsufficientInstanceCapacity|UnfulfillableCapacity|SpotMaxPriceTooLow"
    r"|do not have sufficient .* capacity|insufficient capacity",
    re.IGNORECASE,
)
_QUOTA_TEXT = re.compile(
    r"VcpuLimitExceeded|InstanceLimitExceeded|MaxSpotInstanceCountExceeded"
    r"|vCPU (capacity|limit)|instance limit|Spot Instance count",
    re.IGNORECASE,
)
_NOT_AUTHORIZED = re.compile(r"not authorized to perform:? ([\w-]+:[\w*]+)")
_INSTANCE_NOT_IN_GROUP = re.compile(
    r"Instance Id not found|No managed instance found|is not part of Auto Scaling group",
    re.IGNORECASE,
)


CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "AuthFailure",
    }
)
"""Codes that mean the credentials themselves are wrong, not that a permission is missing."""


def _permission_error(message: str, code: str, permission: str) -> PermissionDeniedError:
    if code in CREDENTIAL_CODES:
        return PermissionDeniedError(
            f"AWS rejected the credentials ({code}): {message}. dlscaler uses the default "
            "credential chain (IRSA web identity, EKS Pod Identity, instance profile): check "
            "the service account's role annotation or pod identity association",
            code=code,
        )
    named = _NOT_AUTHORIZED.search(message)
    return PermissionDeniedError(
        message, code=code, permission=named.group(1) if named else permission
    )


def classify(code: str, message: str, status: int, permission: str) -> ProviderError:
    """An AWS error code (and HTTP status, for codes not listed) as a dlscaler error."""
    if code in THROTTLING_CODES or status == 429:
        return ThrottledError(message or code, code=code)
    if code in CAPACITY_CODES:
        return CapacityError(message or code, code=code)
    if code in QUOTA_CODES:
        return QuotaError(message or code, code=code)
    if code in PERMISSION_CODES or status in (401, 403):
        return _permission_error(message, code, permission)
    if code in NOT_FOUND_CODES or _INSTANCE_NOT_IN_GROUP.search(message):
        return NotFoundError(message or code, code=code)
    if code in TRANSIENT_CODES or status >= 500 or status == 0:
        return TransientError(message or code or f"HTTP {status}", code=code or str(status))
    if status == 404:
        return NotFoundError(message or code, code=code)
    return InvalidConfigError(message or code, code=code)


def map_aws_error(exc: BaseException, permission: str) -> ProviderError | None:
    """The one place botocore exceptions become dlscaler errors."""
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        return classify(code, message, int(meta.get("HTTPStatusCode", 0) or 0), permission)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return PermissionDeniedError(
            f"no AWS credentials found ({type(exc).__name__}): run with IRSA (a service "
            "account annotated with eks.amazonaws.com/role-arn) or an EKS Pod Identity "
            "association, or give the nodes an instance profile",
            code=type(exc).__name__,
        )
    if isinstance(exc, bx.CredentialRetrievalError | bx.TokenRetrievalError):
        # The credential source exists but did not answer (STS, the pod identity agent).
        return TransientError(f"could not fetch AWS credentials: {exc}", code=type(exc).__name__)
    if isinstance(exc, bx.NoRegionError):
        return InvalidConfigError("no AWS region: set the pool's region", code="NoRegionError")
    if isinstance(exc, bx.ParamValidationError):
        return InvalidConfigError(str(exc), code="ParamValidationError")
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        return TransientError(f"no answer from AWS: {type(exc).__name__}", code=type(exc).__name__)
    return None


def classify_launch_failure(text: str) -> ProviderError | None:
    """A failed launch (scaling activity, node group health issue) that is a stockout or a
    quota, as the error to report; ``None`` for other failures (they are not ours to move
    the gang for)."""
    if _CAPACITY_TEXT.search(text):
        return CapacityError(text, code="InsufficientInstanceCapacity")
    if _QUOTA_TEXT.search(text):
        return QuotaError(text, code="VcpuLimitExceeded")
    return None
