"""An in-memory cloud that really keeps instances, and the provider that talks to it.

For tests above the adapters (the controller, the policy's stockout handling) and for
the contract suite. :class:`FakeCloud` behaves the way the real clouds do where it matters:
instances have stable ids, scale-up can run out of capacity part-way, deleting a named
instance lowers the target by one, and failures can be injected either scripted ("the next
scale-up stocks out") or at random rates (seeded, so a run repeats exactly)::

    cloud = FakeCloud(rates=FaultRates(throttle=0.2), seed=1)
    provider = cloud.provider("a100", max_size=10)
    provider.set_target_size(3)
    provider.delete_instances([provider.describe().instances[0].provider_id])
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from dlscaler.config import PoolModel
from dlscaler.pool import (
    ERROR_TYPES,
    CapacityError,
    ErrorKind,
    GroupDescription,
    Instance,
    InstanceState,
    InvalidConfigError,
    NodeTemplate,
    ProviderError,
    ThrottledError,
    TransientError,
)
from providers.base import CloudCall, check_target, delete_until_gone, parse_provider_id
from providers.retry import Retrier
from providers.settings import FakeSettings, parse_settings
from providers.template import build_template

SCHEME = "fake"


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability, per cloud call, of each injected failure (the loopback fakes use the
    same names)."""

    throttle: float = 0.0
    """Refused with a throttling error; nothing happens."""
    server_error: float = 0.0
    """Refused with a 5xx; nothing happens."""
    lost_response: float = 0.0
    """The call takes effect but its reply is a 5xx: a retry must not act twice."""
    timeout: float = 0.0
    """No reply in time; nothing happens."""
    stockout: float = 0.0
    """A scale-up finds no capacity."""
    partial_delete: float = 0.0
    """A multi-instance delete removes some instances, then fails."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"FaultRates.{name} must be in [0, 1], got {rate}")


@dataclass(slots=True)
class _Group:
    name: str
    min_size: int
    max_size: int
    template: NodeTemplate
    target: int = 0
    instances: dict[str, Instance] = field(default_factory=dict)
    next_index: int = 0


@dataclass(slots=True)
class _Scripted:
    operation: str
    fault: str
    """A :class:`FaultRates` field name, or '' to raise ``error``."""
    error: ProviderError | None
    times: int


class FakeCloud:
    """Groups of instances in memory. Thread-safe; every call is counted in ``calls``."""

    def __init__(
        self,
        *,
        rates: FaultRates | None = None,
        seed: int = 0,
        boot_immediately: bool = True,
    ) -> None:
        self.rates = rates or FaultRates()
        self.boot_immediately = boot_immediately
        """New instances start RUNNING; with False they stay PENDING until :meth:`boot`."""
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._groups: dict[str, _Group] = {}
        self._scripted: list[_Scripted] = []
        self._available: dict[str, int] = {}

    # --- set-up and inspection (not cloud calls: never fail, not counted) ---------------

    def add_group(
        self,
        name: str,
        *,
        min_size: int = 0,
        max_size: int = 10,
        target: int = 0,
        template: NodeTemplate | None = None,
    ) -> None:
        with self._lock:
            group = _Group(
                name=name,
                min_size=min_size,
                max_size=max_size,
                template=template
                or NodeTemplate(instance_type="fake-8gpu", gpu_type="", gpus_per_node=8),
            )
            self._groups[name] = group
            self._grow(group, target)

    def has_group(self, name: str) -> bool:
        with self._lock:
            return name in self._groups

    def provider(
        self,
        group: str,
        *,
        min_size: int = 0,
        max_size: int = 10,
        target: int = 0,
        template: NodeTemplate | None = None,
        retrier: Retrier | None = None,
    ) -> FakeProvider:
        """Create the group (unless it exists) and return a provider for it."""
        if not self.has_group(group):
            self.add_group(
                group, min_size=min_size, max_size=max_size, target=target, template=template
            )
        return FakeProvider(self, group, retrier=retrier)

    def snapshot(self, group: str) -> GroupDescription:
        """The group as it is, without going through the (counted, faulty) cloud API."""
        with self._lock:
            g = self._group(group)
            return GroupDescription(
                group_id=group,
                min_size=g.min_size,
                max_size=g.max_size,
                target_size=g.target,
                instances=tuple(g.instances[k] for k in sorted(g.instances)),
            )

    def instance_ids(self, group: str) -> list[str]:
        with self._lock:
            return sorted(self._group(group).instances)

    def boot(self, group: str | None = None) -> int:
        """Make PENDING instances RUNNING (all groups, or one); returns how many."""
        with self._lock:
            booted = 0
            for g in self._groups.values():
                if group is not None and g.name != group:
                    continue
                for pid, inst in g.instances.items():
                    if inst.state is InstanceState.PENDING:
                        g.instances[pid] = Instance(pid, InstanceState.RUNNING, inst.name)
                        booted += 1
            return booted

    def set_available(self, group: str, instances: int | None) -> None:
        """Simulated stockout: at most ``instances`` more can be created (None: unlimited)."""
        with self._lock:
            if instances is None:
                self._available.pop(group, None)
            else:
                self._available[group] = instances

    def fail_next(
        self, operation: str, error: ProviderError | ErrorKind, *, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``operation`` (``describe``, ``set_target``,
        ``delete``, or ``*``) fail with ``error``; a scripted stockout (``CAPACITY``) on
        ``set_target`` creates nothing, like a real one."""
        if isinstance(error, ErrorKind):
            error = ERROR_TYPES[error](f"injected {error.value} error")
        if operation == "set_target" and error.kind is ErrorKind.CAPACITY:
            self.inject("stockout", operation, times=times)
            return
        with self._lock:
            self._scripted.append(_Scripted(operation, "", error, times))

    def inject(self, fault: str, operation: str = "*", *, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` meet ``fault``, one of the
        :class:`FaultRates` names (``lost_response``, ``partial_delete``, ``stockout``...)."""
        if fault not in FaultRates.__dataclass_fields__:
            raise ValueError(
                f"unknown fault {fault!r}; one of {sorted(FaultRates.__dataclass_fields__)}"
            )
        with self._lock:
            self._scripted.append(_Scripted(operation, fault, None, times))

    # --- the cloud API -------------------------------------------------------------------

    def describe_group(self, name: str) -> GroupDescription:
        with self._lock:
            self._enter("describe", name)
            group = self._group(name)
            return GroupDescription(
                group_id=name,
                min_size=group.min_size,
                max_size=group.max_size,
                target_size=group.target,
                instances=tuple(group.instances[k] for k in sorted(group.instances)),
            )

    def template(self, name: str) -> NodeTemplate:
        with self._lock:
            self._enter("template", name)
            return self._group(name).template

    def set_target(self, name: str, size: int) -> None:
        with self._lock:
            fault = self._enter("set_target", name)
            group = self._group(name)
            if size > group.max_size or size < group.min_size:
                raise InvalidConfigError(
                    f"size {size} is outside [{group.min_size}, {group.max_size}]"
                )
            if size < group.target:
                self._shrink(group, size)
            elif size > group.target:
                wanted = size - group.target
                can = self._available.get(name, wanted)
                if fault == "stockout":
                    can = 0
                created = self._grow(group, min(wanted, can))
                if name in self._available:
                    self._available[name] -= created
                if created < wanted:
                    raise CapacityError(
                        f"stockout: created {created} of {wanted} requested instances",
                        code="FakeStockout",
                    )
            if fault == "lost_response":
                raise TransientError("injected 503 after the change was made", code="503")

    def delete(self, name: str, provider_ids: Sequence[str]) -> None:
        with self._lock:
            fault = self._enter("delete", name)
            group = self._group(name)
            ids = list(provider_ids)
            if fault == "partial_delete" and len(ids) > 1:
                ids = ids[: len(ids) // 2]
            for pid in ids:
                if pid in group.instances:
                    del group.instances[pid]
                    group.target -= 1
            if fault == "partial_delete" and len(ids) < len(provider_ids):
                raise TransientError(
                    f"deleted {len(ids)} of {len(provider_ids)} instances, then failed",
                    code="500",
                )
            if fault == "lost_response":
                raise TransientError("injected 503 after the change was made", code="503")

    # --- internals -----------------------------------------------------------------------

    def _group(self, name: str) -> _Group:
        try:
            return self._groups[name]
        except KeyError:
            raise InvalidConfigError(f"no fake group named {name!r}") from None

    def _enter(self, operation: str, group: str) -> str:
        """Count the call; raise a scripted or random refusal, or return the fault to apply
        after the change ('' when none)."""
        self.calls[operation] += 1
        for s in self._scripted:
            if s.operation in (operation, "*") and s.times > 0:
                s.times -= 1
                if s.error is not None:
                    self.faults[s.error.kind.value] += 1
                    raise _copy(s.error)
                return self._apply(s.fault, operation)
        r = self.rates
        draws: list[tuple[str, float]] = [
            ("throttle", r.throttle),
            ("server_error", r.server_error),
            ("timeout", r.timeout),
            ("lost_response", r.lost_response if operation != "describe" else 0.0),
            ("stockout", r.stockout if operation == "set_target" else 0.0),
            ("partial_delete", r.partial_delete if operation == "delete" else 0.0),
        ]
        for fault, rate in draws:
            if rate and self._rng.random() < rate:
                return self._apply(fault, operation)
        return ""

    def _apply(self, fault: str, operation: str) -> str:
        self.faults[fault] += 1
        if fault == "throttle":
            raise ThrottledError("injected throttling", code="429", retry_after_s=1.0)
        if fault == "server_error":
            raise TransientError("injected 503", code="503")
        if fault == "timeout":
            raise TransientError("injected timeout", code="timeout")
        return fault

    def _grow(self, group: _Group, count: int) -> int:
        state = InstanceState.RUNNING if self.boot_immediately else InstanceState.PENDING
        for _ in range(count):
            group.next_index += 1
            name = f"{group.name}-{group.next_index:05d}"
            pid = f"{SCHEME}://{group.name}/{name}"
            group.instances[pid] = Instance(pid, state, name)
        group.target += count
        return count

    def _shrink(self, group: _Group, size: int) -> None:
        # Like the clouds: pending instances go first, then the newest.
        order = sorted(
            group.instances.values(),
            key=lambda i: (i.state is InstanceState.RUNNING, i.name),
        )
        for inst in order[: max(0, len(group.instances) - size)]:
            del group.instances[inst.provider_id]
        group.target = size


def _copy(err: ProviderError) -> ProviderError:
    return type(err)(
        err.message, code=err.code, permission=err.permission, retry_after_s=err.retry_after_s
    )


class FakeProvider:
    """:class:`~dlscaler.pool.NodePoolProvider` for one :class:`FakeCloud` group."""

    def __init__(
        self,
        cloud: FakeCloud,
        group: str,
        *,
        pool: str = "",
        retrier: Retrier | None = None,
    ) -> None:
        self.cloud = cloud
        self._group = group
        self._pool = pool or group
        self._call = CloudCall(pool=self._pool, retrier=retrier or Retrier(), map_error=_no_vendor)

    @property
    def group_id(self) -> str:
        return self._group

    @property
    def retrier(self) -> Retrier:
        return self._call.retrier

    def describe(self) -> GroupDescription:
        return self._call("describe", lambda: self.cloud.describe_group(self._group))

    def set_target_size(self, size: int) -> None:
        desc = self.describe()
        check_target(size, desc, pool=self._pool, bounds_from="the fake group's")
        if size != desc.target_size:
            self._call("set_target", lambda: self.cloud.set_target(self._group, size))

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        for pid in provider_ids:
            parse_provider_id(pid, SCHEME, pool=self._pool)

        def present() -> dict[str, Instance]:
            desc = self._call.once("describe", lambda: self.cloud.describe_group(self._group))
            return {i.provider_id: i for i in desc.instances}

        def delete(batch: Sequence[str]) -> None:
            self._call.once("delete", lambda: self.cloud.delete(self._group, batch))

        delete_until_gone(
            provider_ids,
            list_instances=present,
            delete=delete,
            retrier=self._call.retrier,
            pool=self._pool,
        )

    def node_template(self) -> NodeTemplate:
        return self._call("template", lambda: self.cloud.template(self._group))


def _no_vendor(_exc: BaseException, _permission: str) -> ProviderError | None:
    # The fake cloud raises dlscaler's own errors; anything else is a bug to surface.
    return None


def from_pool(pool: PoolModel, *, retrier: Retrier, cloud: FakeCloud | None = None) -> FakeProvider:
    """A provider for ``pool`` in ``cloud`` (a new cloud when none is given), creating the
    group from the pool's bounds and template if the cloud does not have it yet."""
    parse_settings(pool, "fake", FakeSettings)
    cloud = cloud if cloud is not None else FakeCloud()
    group = pool.group_id or pool.name
    if not cloud.has_group(group):
        cloud.add_group(
            group,
            min_size=pool.min_nodes,
            max_size=pool.max_nodes,
            target=pool.min_nodes,
            template=build_template(pool, instance_type=pool.instance_type or "fake-gpu-node"),
        )
    return FakeProvider(cloud, group, pool=pool.name, retrier=retrier)
