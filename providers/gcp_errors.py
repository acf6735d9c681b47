"""google-api-core and google-auth exceptions, and GCE error codes, mapped once."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterable
from typing import Any

import requests
from google.api_core import exceptions as gx
from google.auth import exceptions as ga

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
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "REGION_RESOURCE_POOL_EXHAUSTED",
        "STOCKOUT",
    }
)
QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "quotaExceeded", "QUOTA_LIMIT_EXCEEDED"})
THROTTLE_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"}
)
TRANSIENT_CODES = frozenset(
    {"RESOURCE_NOT_READY", "resourceNotReady", "INTERNAL_ERROR", "backendError", "UNAVAILABLE"}
)
_REQUIRED_PERMISSION = re.compile(r"Required '([\w.]+)' permission")


def _codes(errors: Iterable[Any]) -> list[str]:
    """Codes/reasons of an error's details, whether dicts (REST bodies) or protos (operations)."""
    found = []
    for e in errors or ():
        if isinstance(e, dict):
            found += [str(e.get(k)) for k in ("reason", "code") if e.get(k)]
        else:
            code = getattr(e, "code", "")
            if code:
                found.append(str(code))
    return found


def classify_instance_error(code: str, message: str) -> ProviderError | None:
    """A managed instance's ``lastAttempt`` error that is a stockout or a quota."""
    if code in CAPACITY_CODES:
        return CapacityError(message or code, code=code)
    if code in QUOTA_CODES:
        return QuotaError(message or code, code=code)
    return None


def map_gcp_error(exc: BaseException, permission: str) -> ProviderError | None:
    """The one place Google client exceptions become dlscaler errors."""
    if isinstance(exc, gx.GoogleAPICallError):
        status = int(exc.code or 0) if isinstance(exc.code, int) else 0
        codes = _codes(exc.errors)
        if exc.reason:
            codes.append(str(exc.reason))
        message = exc.message or str(exc)
        code = codes[0] if codes else str(status)
        for c in codes:
            if c in CAPACITY_CODES:
                return CapacityError(message, code=c)
        if status == 429 or THROTTLE_REASONS & set(codes):
            return ThrottledError(message, code=code)
        if QUOTA_CODES & set(codes):
            return QuotaError(message, code=code)
        if status in (401, 403):
            named = _REQUIRED_PERMISSION.search(message)
            return PermissionDeniedError(
                message, code=code, permission=named.group(1) if named else permission
            )
        if status == 404:
            return NotFoundError(message, code=code)
        if status >= 500 or status in (408, 409, 412) or TRANSIENT_CODES & set(codes):
            return TransientError(message, code=code)
        return InvalidConfigError(message, code=code)
    if isinstance(exc, ga.DefaultCredentialsError):
        return PermissionDeniedError(
            "no Google credentials found: on GKE bind the controller's Kubernetes service "
            "account to a Google service account (Workload Identity), or set "
            "GOOGLE_APPLICATION_CREDENTIALS",
            code="DefaultCredentialsError",
        )
    if isinstance(exc, ga.RefreshError):
        return PermissionDeniedError(
            f"Google credentials could not be refreshed: {exc}",
            code="RefreshError",
        )
    if isinstance(exc, ga.TransportError | requests.ConnectionError | requests.Timeout):
        return TransientError(f"no answer from GCE: {type(exc).__name__}", code=type(exc).__name__)
    if isinstance(exc, concurrent.futures.TimeoutError):
        return TransientError(f"operation still running: {exc}", code="OperationTimeout")
    return None
