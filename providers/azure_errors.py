"""azure-core and azure-identity exceptions, and ARM error codes, mapped once."""

from __future__ import annotations

import re

from azure.core import exceptions as ax
from azure.identity import CredentialUnavailableError

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

CAPACITY_CODES = frozenset(
    {
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "SkuNotAvailable",
        "AllocationFailedVMSeriesNotAvailable",
        "SpotAllocationFailed",
    }
)
QUOTA_CODES = frozenset({"QuotaExceeded", "LowPriorityQuotaExceeded", "SpotQuotaExceeded"})
THROTTLE_CODES = frozenset({"TooManyRequests", "SubscriptionRequestsThrottled", "Throttled"})
PERMISSION_CODES = frozenset(
    {"AuthorizationFailed", "LinkedAuthorizationFailed", "InvalidAuthenticationToken"}
)
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "NotFound", "ResourceGroupNotFound"})
TRANSIENT_CODES = frozenset(
    {"InternalServerError", "RetryableError", "InternalExecutionError", "OperationPreempted"}
)
_ACTION = re.compile(r"perform action '([^']+)'")
_QUOTA_TEXT = re.compile(r"quota", re.IGNORECASE)
_NOT_AN_INSTANCE = re.compile(r"not an active Virtual Machine Scale Set VM instanceId", re.I)


def _retry_after(exc: ax.HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_azure_error(exc: BaseException, permission: str) -> ProviderError | None:
    """The one place Azure SDK exceptions become dlscaler errors."""
    if isinstance(exc, CredentialUnavailableError):
        return PermissionDeniedError(
            "no Azure credentials found: on AKS enable workload identity for the "
            "controller's service account (AZURE_CLIENT_ID, AZURE_TENANT_ID, "
            "AZURE_FEDERATED_TOKEN_FILE) or give the nodes a managed identity",
            code="CredentialUnavailableError",
        )
    if isinstance(exc, ax.ClientAuthenticationError):
        # DefaultAzureCredential lists every source it tried; the first line says enough.
        first = (exc.message or str(exc)).strip().splitlines()[0]
        return PermissionDeniedError(
            f"Azure did not authenticate dlscaler ({first}). dlscaler uses "
            "DefaultAzureCredential: on AKS enable workload identity for the controller's "
            "service account (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE) "
            "or give the nodes a managed identity",
            code="ClientAuthenticationError",
        )
    if isinstance(exc, ax.HttpResponseError):
        status = int(exc.status_code or 0)
        code = str(exc.error.code) if exc.error and exc.error.code else ""
        message = str(exc.error.message) if exc.error and exc.error.message else exc.message
        if code in CAPACITY_CODES:
            return CapacityError(message, code=code)
        if code in QUOTA_CODES or (code == "OperationNotAllowed" and _QUOTA_TEXT.search(message)):
            return QuotaError(message, code=code)
        if code in THROTTLE_CODES or status == 429:
            return ThrottledError(message, code=code or "429", retry_after_s=_retry_after(exc))
        if code in PERMISSION_CODES or status in (401, 403):
            named = _ACTION.search(message)
            return PermissionDeniedError(
                message, code=code, permission=named.group(1) if named else permission
            )
        if code in NOT_FOUND_CODES or status == 404 or _NOT_AN_INSTANCE.search(message):
            return NotFoundError(message, code=code or "404")
        if code in TRANSIENT_CODES or status >= 500 or status in (408, 409):
            return TransientError(message, code=code or str(status))
        return InvalidConfigError(message, code=code or str(status))
    if isinstance(exc, ax.ServiceRequestError | ax.ServiceResponseError):
        return TransientError(
            f"no answer from Azure: {type(exc).__name__}", code=type(exc).__name__
        )
    return None
