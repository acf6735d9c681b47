"""What every adapter shares: the guarded cloud call, bounds checks, how a failed launch is
reported, and deleting named nodes.

An adapter makes each SDK call through :class:`CloudCall`, which maps the vendor's exception
into a :class:`~dlscaler.pool.ProviderError` exactly once and retries what is retryable.
:func:`delete_until_gone` is the one scale-down loop: it re-lists the group each round and
deletes only what is still there, so a retry after a lost response (the cloud did delete,
the reply never came) or a partial failure of a multi-instance delete never deletes twice
and never loses track of an instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from dlscaler.pool import (
    GroupDescription,
    Instance,
    InstanceState,
    InvalidConfigError,
    NotFoundError,
    ProviderError,
    TransientError,
)
from providers.retry import Retrier

T = TypeVar("T")

log = logging.getLogger("dlscaler.providers")

ErrorMapper = Callable[[BaseException, str], "ProviderError | None"]
"""``(exception, permission) -> ProviderError``, or ``None`` for exceptions that are not the
cloud's (programming errors propagate unchanged). ``permission`` is the cloud permission the
failed call needs, named in permission errors when the vendor's message does not say."""


class CloudCall:
    """Runs one SDK call for one pool: vendor errors mapped once, retryable ones retried."""

    def __init__(self, *, pool: str, retrier: Retrier, map_error: ErrorMapper) -> None:
        self.pool = pool
        self.retrier = retrier
        self._map_error = map_error

    def once(self, operation: str, fn: Callable[[], T], *, permission: str = "") -> T:
        """One attempt; a vendor exception comes out as a :class:`ProviderError`."""
        try:
            return fn()
        except ProviderError as err:
            err.pool = err.pool or self.pool
            err.operation = err.operation or operation
            raise
        except Exception as exc:
            mapped = self._map_error(exc, permission)
            if mapped is None:
                raise
            mapped.pool = self.pool
            mapped.operation = operation
            if mapped.kind.retryable:
                # Kind and code only: request bodies and headers may carry tokens.
                log.debug("%s %s: %s %s", self.pool, operation, mapped.kind.value, mapped.code)
            raise mapped from exc

    def __call__(self, operation: str, fn: Callable[[], T], *, permission: str = "") -> T:
        """The call, retried with backoff while it fails with a retryable error."""
        return self.retrier.call(lambda: self.once(operation, fn, permission=permission))


def check_target(size: int, desc: GroupDescription, *, pool: str, bounds_from: str) -> None:
    """Refuse a target outside the group's bounds before asking the cloud."""
    if size < desc.min_size or size > desc.max_size:
        raise InvalidConfigError(
            f"target size {size} is outside {bounds_from} bounds "
            f"[{desc.min_size}, {desc.max_size}]; change the bounds or ask for a size inside them",
            pool=pool,
            operation="set_target_size",
        )


def check_delete(desc: GroupDescription, provider_ids: Sequence[str], *, pool: str) -> None:
    """Refuse a delete that would take the group below its minimum size."""
    present = {i.provider_id for i in live(desc.instances)}
    going = len(set(provider_ids) & present)
    if going and desc.target_size - going < desc.min_size:
        raise InvalidConfigError(
            f"deleting {going} instances would take the group from {desc.target_size} below "
            f"its minimum size {desc.min_size}; lower the minimum or delete fewer",
            pool=pool,
            operation="delete_instances",
        )


def with_scale_up_error(
    desc: GroupDescription, error: ProviderError | None, *, pool: str
) -> GroupDescription:
    """``desc`` with the launch failure (stockout, quota) that keeps the group below its
    target, found while describing it; ``desc`` as it is when there is none."""
    if error is None:
        return desc
    error.pool, error.operation = pool, "describe"
    return replace(desc, scale_up_error=error)


def live(instances: Iterable[Instance]) -> list[Instance]:
    """Instances that count toward the target: not on their way out."""
    return [i for i in instances if i.state is not InstanceState.DELETING]


def delete_until_gone(
    provider_ids: Sequence[str],
    *,
    list_instances: Callable[[], Mapping[str, Instance]],
    delete: Callable[[Sequence[str]], None],
    retrier: Retrier,
    pool: str,
    batch_size: int = 0,
) -> None:
    """Delete exactly ``provider_ids`` (those still present), round by round.

    Each round lists the group, keeps the requested instances that are still live, and
    deletes them in batches (``batch_size`` 0: all in one call). ``list_instances`` and
    ``delete`` are single attempts that raise :class:`ProviderError`. A round that fails with
    a retryable error is followed by a backoff and a new round; the loop gives up after
    ``retrier.policy.max_attempts`` rounds that made no progress. Not-found means an
    instance is already gone, which is what was asked; the next round checks the rest.
    """
    wanted = list(dict.fromkeys(provider_ids))
    if not wanted:
        return
    stalled_rounds = 0
    remaining_before: int | None = None
    retrier.stats.record(calls=1)
    while True:
        retrier.stats.record(attempts=1)
        error: ProviderError | None = None
        # A batch refused as not-found (one of its instances is gone, and some clouds then
        # refuse the whole batch) says nothing about the others: look again.
        recheck = False
        try:
            present = list_instances()
            remaining = [
                pid
                for pid in wanted
                if pid in present and present[pid].state is not InstanceState.DELETING
            ]
            if not remaining:
                return
            progressed = remaining_before is not None and len(remaining) < remaining_before
            remaining_before = len(remaining)
            step = batch_size or len(remaining)
            for start in range(0, len(remaining), step):
                batch = remaining[start : start + step]
                try:
                    delete(batch)
                except NotFoundError:
                    recheck = True
                except ProviderError as err:
                    if not err.kind.retryable:
                        raise
                    error = err
            if error is None and not recheck:
                return
        except ProviderError as err:
            if not err.kind.retryable:
                raise
            error, progressed = err, False
        stalled_rounds = 0 if progressed else stalled_rounds + 1
        if stalled_rounds >= retrier.policy.max_attempts:
            retrier.stats.record(gave_up=1)
            why = error.message if error else "the cloud says they are gone but still lists them"
            raise TransientError(
                f"could not delete {remaining_before or len(wanted)} of {len(wanted)} "
                f"instances after {stalled_rounds} rounds without progress: {why}",
                pool=pool,
                operation="delete_instances",
                code=error.code if error else "",
            ) from error
        if error is None:
            continue
        delay = retrier.backoff_s(stalled_rounds + 1, error)
        retrier.stats.record_retry(error.kind.value, delay)
        retrier.sleep(delay)


def parse_provider_id(provider_id: str, scheme: str, *, pool: str) -> str:
    """The part after ``scheme://``; a foreign id is a caller's mistake, said plainly."""
    prefix = f"{scheme}://"
    if not provider_id.startswith(prefix):
        raise InvalidConfigError(
            f"provider id {provider_id!r} does not belong to this {scheme} pool "
            f"(expected {prefix}...)",
            pool=pool,
            operation="delete_instances",
        )
    return provider_id[len(prefix) :]
