"""Kubernetes timestamps (RFC 3339, UTC) to and from the epoch seconds the policy uses."""

from __future__ import annotations

import datetime as dt


def parse_time(value: object) -> float | None:
    """``2024-05-01T12:00:00Z`` (or with fractional seconds / an offset) -> epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def format_time(epoch_s: float) -> str:
    """Epoch seconds -> ``2024-05-01T12:00:00Z`` (whole seconds, as the API server writes)."""
    stamp = dt.datetime.fromtimestamp(int(epoch_s), tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(epoch_s: float) -> str:
    """Epoch seconds -> RFC 3339 with microseconds (metav1.MicroTime, used by Leases)."""
    stamp = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
