"""The behaviour every :class:`~dlscaler.pool.NodePoolProvider` must show, as runnable checks.

One suite for every provider (fake, kwok, aws, gcp, azure), in the way sktime's
``check_estimator`` holds every forecaster to one contract: a test module supplies a
:class:`Harness` for its backend (a fresh group, a way to inject a fault on the next calls)
and runs each check in :data:`CHECKS`. A backend that cannot produce some fault (kwok has no
quota) lists only the faults it can in ``Harness.faults``; the check for the others is
reported as not applicable rather than silently passing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, get_args

from dlscaler.config import PoolModel
from dlscaler.pool import (
    CapacityError,
    GroupDescription,
    InstanceState,
    InvalidConfigError,
    NodePoolProvider,
    PermissionDeniedError,
    ProviderError,
    QuotaError,
    ThrottledError,
)
from providers.base import live
from providers.retry import RetryStats

Fault = Literal[
    "stockout",
    "quota",
    "throttle",
    "server_error",
    "timeout",
    "lost_response",
    "partial_delete",
    "permission",
]
ALL_FAULTS: frozenset[str] = frozenset(get_args(Fault))
"""Every fault the contract knows: ``Harness.faults`` of a backend that can produce them all."""
Target = Literal["read", "scale", "delete", "any"]
"""Which calls a fault hits: reads (describe/list), scale (resize/update), deletes."""


class NotApplicable(Exception):
    """The backend cannot produce this situation; the check does not apply to it."""


class Harness(Protocol):
    pool: PoolModel
    """The pool the providers are built from (labels, taints, GPUs for the template)."""
    scheme: str
    """The provider-id scheme (``aws``, ``gce``, ``azure``, ``kwok``, ``fake``)."""
    faults: frozenset[str]
    """The faults :meth:`inject` can produce."""
    max_attempts: int
    """The retry policy's attempts per call, in the providers this harness builds."""

    def group(self, *, target: int = 0) -> NodePoolProvider:
        """A new, empty-or-``target``-sized group with bounds ``[pool.min_nodes,
        pool.max_nodes]``, and a provider for it (backoff sleeps are no-ops)."""

    def missing_group(self) -> NodePoolProvider:
        """A provider for a group that does not exist in the cloud."""

    def inject(self, fault: Fault, target: Target, *, times: int = 1) -> None:
        """Make the next ``times`` matching cloud calls meet ``fault``."""

    def stats(self, provider: NodePoolProvider) -> RetryStats: ...

    def settle(self, provider: NodePoolProvider) -> None:
        """Let asynchronous cloud work finish (instances boot); a no-op where it is synchronous."""


def _ids(desc: GroupDescription) -> list[str]:
    return sorted(i.provider_id for i in live(desc.instances))


def _assert_consistent(desc: GroupDescription, scheme: str) -> None:
    ids = [i.provider_id for i in desc.instances]
    assert len(ids) == len(set(ids)), f"duplicated instance ids: {ids}"
    assert all(pid.startswith(f"{scheme}://") for pid in ids), ids
    assert len(live(desc.instances)) == desc.target_size, (
        f"target {desc.target_size} but {len(live(desc.instances))} live instances: {desc}"
    )


def _require(h: Harness, *faults: str) -> None:
    missing = [f for f in faults if f not in h.faults]
    if missing:
        raise NotApplicable(f"this backend cannot inject {', '.join(missing)}")


# --- scaling ----------------------------------------------------------------------------


def check_describe_new_group(h: Harness) -> None:
    p = h.group()
    d = p.describe()
    assert d.target_size == 0 and _ids(d) == []
    assert (d.min_size, d.max_size) == (h.pool.min_nodes, h.pool.max_nodes), d
    assert d.group_id == p.group_id and p.group_id


def check_scale_up_creates_instances(h: Harness) -> None:
    p = h.group()
    p.set_target_size(3)
    h.settle(p)
    d = p.describe()
    assert d.target_size == 3
    _assert_consistent(d, h.scheme)


def check_scale_up_keeps_existing_instances(h: Harness) -> None:
    p = h.group(target=2)
    before = _ids(p.describe())
    p.set_target_size(4)
    h.settle(p)
    after = p.describe()
    _assert_consistent(after, h.scheme)
    assert set(before) <= set(_ids(after)), (before, _ids(after))


def check_repeated_target_is_idempotent(h: Harness) -> None:
    p = h.group()
    p.set_target_size(2)
    h.settle(p)
    first = _ids(p.describe())
    p.set_target_size(2)
    h.settle(p)
    again = p.describe()
    assert _ids(again) == first
    _assert_consistent(again, h.scheme)


def check_delete_named_instances(h: Harness) -> None:
    p = h.group(target=4)
    ids = _ids(p.describe())
    doomed, kept = ids[1:3], [ids[0], ids[3]]
    p.delete_instances(doomed)
    h.settle(p)
    d = p.describe()
    assert _ids(d) == sorted(kept), (_ids(d), kept)
    assert d.target_size == 2
    _assert_consistent(d, h.scheme)


def check_delete_already_gone_succeeds(h: Harness) -> None:
    p = h.group(target=2)
    doomed = _ids(p.describe())[:1]
    p.delete_instances(doomed)
    h.settle(p)
    p.delete_instances(doomed)
    h.settle(p)
    d = p.describe()
    assert d.target_size == 1 and doomed[0] not in _ids(d)
    p.delete_instances([])
    assert p.describe().target_size == 1


def check_scale_down_by_target(h: Harness) -> None:
    p = h.group(target=3)
    before = set(_ids(p.describe()))
    p.set_target_size(1)
    h.settle(p)
    d = p.describe()
    _assert_consistent(d, h.scheme)
    assert len(_ids(d)) == 1 and set(_ids(d)) <= before


def check_target_outside_bounds_is_refused(h: Harness) -> None:
    p = h.group(target=1)
    for size in (h.pool.max_nodes + 1, h.pool.min_nodes - 1):
        try:
            p.set_target_size(size)
        except InvalidConfigError as err:
            assert str(size) in str(err)
        else:
            raise AssertionError(f"target {size} outside the bounds was accepted")
    assert p.describe().target_size == 1


def check_foreign_provider_id_is_refused(h: Harness) -> None:
    p = h.group(target=1)
    other = "gce" if h.scheme != "gce" else "aws"
    try:
        p.delete_instances([f"{other}://somewhere/else"])
    except InvalidConfigError as err:
        assert other in str(err)
    else:
        raise AssertionError("a provider id of another cloud was accepted")
    assert p.describe().target_size == 1


def check_template_from_zero(h: Harness) -> None:
    p = h.group()
    assert p.describe().target_size == 0
    t = p.node_template()
    assert t.gpus_per_node == h.pool.gpus_per_node
    assert t.instance_type, t
    if h.pool.gpu_type:
        assert t.gpu_type == h.pool.gpu_type
    for key, value in h.pool.labels.items():
        assert t.labels.get(key) == value, (key, t.labels)
    assert set(h.pool.taints) <= set(t.taints), t.taints


# --- errors ------------------------------------------------------------------------------


def check_stockout_is_capacity_error(h: Harness) -> None:
    _require(h, "stockout")
    p = h.group(target=1)
    before = _ids(p.describe())
    h.inject("stockout", "scale")
    try:
        p.set_target_size(3)
    except CapacityError as err:
        assert err.kind.value == "capacity" and not err.kind.retryable
    else:
        raise AssertionError("a scale-up into a stockout did not raise CapacityError")
    h.settle(p)
    d = p.describe()
    # What was asked and could not be had is taken back: the pool does not grow later on
    # its own, after the policy has placed the gang elsewhere.
    _assert_consistent(d, h.scheme)
    assert set(before) <= set(_ids(d)) and d.target_size < 3, d


def check_quota_is_quota_error(h: Harness) -> None:
    _require(h, "quota")
    p = h.group(target=1)
    h.inject("quota", "scale")
    try:
        p.set_target_size(3)
    except QuotaError:
        pass
    else:
        raise AssertionError("a scale-up beyond quota did not raise QuotaError")
    h.settle(p)
    d = p.describe()
    _assert_consistent(d, h.scheme)
    assert d.target_size < 3


def check_brief_throttling_is_retried(h: Harness) -> None:
    _require(h, "throttle")
    p = h.group()
    stats = h.stats(p)
    retries = stats.retries
    h.inject("throttle", "scale", times=min(2, h.max_attempts - 1))
    p.set_target_size(2)
    h.settle(p)
    assert p.describe().target_size == 2
    assert stats.retries - retries >= min(2, h.max_attempts - 1)
    assert stats.retries_by_kind["throttled"] >= 1


def check_persistent_throttling_gives_up(h: Harness) -> None:
    _require(h, "throttle")
    p = h.group()
    stats = h.stats(p)
    attempts, gave_up = stats.attempts, stats.gave_up
    h.inject("throttle", "read", times=h.max_attempts)
    try:
        p.describe()
    except ThrottledError:
        pass
    else:
        raise AssertionError("throttling on every attempt did not raise ThrottledError")
    assert stats.attempts - attempts == h.max_attempts, "retries must be bounded"
    assert stats.gave_up == gave_up + 1
    assert p.describe().target_size == 0


def _delete_through_fault(
    h: Harness, fault: Fault, *, size: int, doomed: int
) -> tuple[NodePoolProvider, list[str]]:
    """Delete the first ``doomed`` of ``size`` instances while ``fault`` hits the delete:
    exactly the others must be left, and the target must say so. Returns the provider and
    the instance ids it started with."""
    _require(h, fault)
    p = h.group(target=size)
    ids = _ids(p.describe())
    h.inject(fault, "delete")
    p.delete_instances(ids[:doomed])
    h.settle(p)
    d = p.describe()
    assert _ids(d) == ids[doomed:] and d.target_size == size - doomed, d
    return p, ids


def check_server_error_is_retried(h: Harness) -> None:
    _delete_through_fault(h, "server_error", size=2, doomed=1)


def check_lost_response_does_not_act_twice(h: Harness) -> None:
    p, ids = _delete_through_fault(h, "lost_response", size=3, doomed=1)
    h.inject("lost_response", "scale")
    p.set_target_size(4)
    h.settle(p)
    d = p.describe()
    _assert_consistent(d, h.scheme)
    assert d.target_size == 4 and set(ids[1:]) <= set(_ids(d))


def check_partial_delete_finishes(h: Harness) -> None:
    _delete_through_fault(h, "partial_delete", size=5, doomed=4)


def check_timeout_is_retried(h: Harness) -> None:
    _require(h, "timeout")
    p = h.group()
    h.inject("timeout", "scale")
    p.set_target_size(1)
    h.settle(p)
    assert p.describe().target_size == 1


def check_permission_error_names_the_permission(h: Harness) -> None:
    _require(h, "permission")
    p = h.group()
    stats = h.stats(p)
    attempts = stats.attempts
    h.inject("permission", "read")
    try:
        p.describe()
    except PermissionDeniedError as err:
        assert err.permission, "the missing permission must be named"
        assert err.permission in str(err)
        assert err.kind.permanent
    else:
        raise AssertionError("a permission failure did not raise PermissionDeniedError")
    assert stats.attempts - attempts == 1, "permission errors are not retried"


def check_missing_group_is_invalid_config(h: Harness) -> None:
    p = h.missing_group()
    try:
        p.describe()
    except InvalidConfigError as err:
        assert p.group_id in str(err), str(err)
        assert err.kind.permanent
    else:
        raise AssertionError("describing a group that does not exist did not fail")


def check_errors_carry_pool_and_operation(h: Harness) -> None:
    if "permission" in h.faults:
        p = h.group()
        h.inject("permission", "scale")
        call = "set_target_size"
    else:
        p, call = h.missing_group(), "describe"
    try:
        if call == "set_target_size":
            p.set_target_size(1)
        else:
            p.describe()
    except ProviderError as err:
        assert err.pool and err.operation, (err.pool, err.operation)
        assert err.pool in str(err) and err.operation in str(err)
    else:
        raise AssertionError("a call that the cloud refused did not raise")


def check_pending_instances_count_toward_target(h: Harness) -> None:
    p = h.group()
    p.set_target_size(2)
    d = p.describe()
    # Before anything boots: requested nodes are listed as in flight, not missing.
    assert d.target_size == 2 and len(live(d.instances)) == 2, d
    states = {i.state for i in live(d.instances)}
    assert states <= {InstanceState.PENDING, InstanceState.RUNNING}, states


CHECKS: dict[str, Callable[[Harness], None]] = {
    name.removeprefix("check_"): fn
    for name, fn in sorted(globals().items())
    if name.startswith("check_") and callable(fn)
}
"""Every check by name; test modules parametrise over this."""
