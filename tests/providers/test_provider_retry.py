"""The one retry layer: bounded, jittered, counted, and only for what is worth retrying."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from dlscaler.pool import (
    CapacityError,
    Instance,
    InstanceState,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ThrottledError,
    TransientError,
)
from providers.base import delete_until_gone
from providers.retry import Retrier, RetryPolicy


class Sleeps:
    """Records the delays it is asked to wait, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Flaky:
    """A call that fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def retrier(sleeps: Sleeps, *, attempts: int = 5, seed: int = 1) -> Retrier:
    policy = RetryPolicy(max_attempts=attempts, base_delay_s=0.5, max_delay_s=4.0)
    return Retrier(policy, sleep=sleeps, rng=random.Random(seed))


def test_retryable_errors_are_retried_until_success_and_counted() -> None:
    sleeps = Sleeps()
    r = retrier(sleeps)
    call = Flaky(ThrottledError("slow down"), TransientError("503"))
    assert r.call(call) == "ok"
    assert call.calls == 3
    assert len(sleeps.delays) == 2
    assert r.stats.snapshot() == {
        "calls": 1,
        "attempts": 3,
        "retries": 2,
        "gave_up": 0,
        "retries_by_kind": {"throttled": 1, "transient": 1},
        "slept_s": pytest.approx(sum(sleeps.delays)),
    }


@pytest.mark.parametrize(
    "error", [CapacityError("stockout"), PermissionDeniedError("no"), NotFoundError("gone")]
)
def test_other_errors_are_not_retried(error: ProviderError) -> None:
    sleeps = Sleeps()
    r = retrier(sleeps)
    call = Flaky(error)
    with pytest.raises(type(error)):
        r.call(call)
    assert call.calls == 1 and sleeps.delays == [] and r.stats.retries == 0


def test_attempts_are_bounded_and_giving_up_is_counted() -> None:
    sleeps = Sleeps()
    r = retrier(sleeps, attempts=3)
    call = Flaky(*[ThrottledError("slow down") for _ in range(10)])
    with pytest.raises(ThrottledError, match="gave up after 3 attempts"):
        r.call(call)
    assert call.calls == 3 and len(sleeps.delays) == 2
    assert r.stats.gave_up == 1


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    r = retrier(Sleeps(), seed=7)
    err = TransientError("503")
    for retry_number, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [r.backoff_s(retry_number, err) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Jitter spreads the delays over the whole range, not around one value.
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling


def test_backoff_repeats_with_the_same_seed() -> None:
    err = TransientError("503")
    first = [retrier(Sleeps(), seed=3).backoff_s(n, err) for n in range(1, 6)]
    again = [retrier(Sleeps(), seed=3).backoff_s(n, err) for n in range(1, 6)]
    assert first == again


def test_backoff_waits_at_least_what_the_cloud_asked_but_never_beyond_the_cap() -> None:
    r = retrier(Sleeps())
    assert r.backoff_s(1, ThrottledError("slow", retry_after_s=3.0)) >= 3.0
    assert r.backoff_s(1, ThrottledError("slow", retry_after_s=600.0)) == 4.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=5.0, max_delay_s=1.0)


class Group:
    """A tiny cloud group for the delete loop: a dict of instances and a scripted delete."""

    def __init__(self, n: int) -> None:
        self.instances = {
            f"x://g/{i}": Instance(f"x://g/{i}", InstanceState.RUNNING) for i in range(n)
        }
        self.delete_calls: list[list[str]] = []
        self.script: list[str] = []

    def list(self) -> dict[str, Instance]:
        return dict(self.instances)

    def delete(self, batch: list[str]) -> None:
        self.delete_calls.append(list(batch))
        step = self.script.pop(0) if self.script else "ok"
        if step == "refuse":
            raise TransientError("503 before acting")
        if step == "not-found":
            raise NotFoundError("one of them is gone")
        done = batch[: len(batch) // 2] if step == "partial" else batch
        for pid in done:
            del self.instances[pid]
        if step in ("partial", "lost"):
            raise TransientError("500 after acting")

    def delete_until_gone(
        self,
        provider_ids: list[str],
        *,
        r: Retrier | None = None,
        delete: Callable[[list[str]], None] | None = None,
    ) -> None:
        """The delete loop under test, on this group (its own ``delete`` unless given)."""
        delete_until_gone(
            provider_ids,
            list_instances=self.list,
            delete=delete or self.delete,
            retrier=r or retrier(Sleeps()),
            pool="p",
        )


def test_delete_loop_finishes_a_partial_delete_without_deleting_twice() -> None:
    g = Group(5)
    g.script = ["partial", "lost"]
    g.delete_until_gone(["x://g/0", "x://g/1", "x://g/2", "x://g/3"])
    assert list(g.instances) == ["x://g/4"]
    # Each round asks only for what is still there.
    assert g.delete_calls == [
        ["x://g/0", "x://g/1", "x://g/2", "x://g/3"],
        ["x://g/2", "x://g/3"],
    ]


def test_delete_loop_rechecks_after_a_batch_refused_as_not_found() -> None:
    g = Group(3)
    g.script = ["not-found"]
    g.delete_until_gone(["x://g/0", "x://g/1"])
    assert list(g.instances) == ["x://g/2"]
    assert len(g.delete_calls) == 2


def test_delete_loop_gives_up_after_rounds_without_progress() -> None:
    g = Group(2)
    g.script = ["refuse"] * 20
    sleeps = Sleeps()
    r = retrier(sleeps, attempts=3)
    with pytest.raises(TransientError, match="without progress"):
        g.delete_until_gone(["x://g/0"], r=r)
    assert len(g.delete_calls) == 3 and r.stats.gave_up == 1 and len(sleeps.delays) == 2


def test_delete_loop_does_not_retry_a_permission_error() -> None:
    g = Group(2)

    def denied(batch: list[str]) -> None:
        raise PermissionDeniedError("no", permission="x.delete")

    with pytest.raises(PermissionDeniedError):
        g.delete_until_gone(["x://g/0"], delete=denied)


def test_delete_loop_skips_instances_already_on_their_way_out() -> None:
    g = Group(2)
    g.instances["x://g/0"] = Instance("x://g/0", InstanceState.DELETING)
    g.delete_until_gone(["x://g/0", "x://g/9"])
    assert g.delete_calls == []
