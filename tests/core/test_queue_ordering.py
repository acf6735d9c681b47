"""Queue orderings on small hand-checked queues: who is offered capacity first, and
backfill (a gang that does not fit never blocks the ones behind it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.model import Gang
from dlscaler.queueing import iter_ordered, offer_all, ordered


def gang(
    job_id: str, gpus: int, *, submit_s: float = 0.0, priority: int = 0, queue: str = "default"
) -> Gang:
    return Gang(job_id, submit_s, 1, gpus, priority=priority, queue=queue)


class FreeGpus:
    """A stateful stand-in for a cluster: admits a gang if its GPUs fit in what is left."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.offered: list[str] = []

    def offer(self, g: Gang) -> bool:
        self.offered.append(g.job_id)
        if g.total_gpus > self.free:
            return False
        self.free -= g.total_gpus
        return True


def test_fifo_offers_in_submit_order_and_backfills() -> None:
    pending = [
        gang("c", 2, submit_s=30),
        gang("a", 4, submit_s=10),
        gang("b", 4, submit_s=20),
    ]
    cluster = FreeGpus(6)
    admitted = offer_all(pending, "fifo", cluster.offer)
    # a (4 of 6, 2 left); b needs 4 -> passed over; c needs 2 -> backfilled.
    assert cluster.offered == ["a", "b", "c"]
    assert [g.job_id for g in admitted] == ["a", "c"]
    assert cluster.free == 0


def test_fifo_ties_on_submit_time_go_by_job_id() -> None:
    pending = [gang("b", 1, submit_s=5), gang("a", 1, submit_s=5)]
    assert [g.job_id for g in ordered(pending, "fifo")] == ["a", "b"]


def test_priority_offers_highest_first_then_submit_order() -> None:
    pending = [
        gang("low", 4, submit_s=0, priority=0),
        gang("high", 4, submit_s=20, priority=2),
        gang("mid-late", 2, submit_s=15, priority=1),
        gang("mid-early", 2, submit_s=10, priority=1),
    ]
    cluster = FreeGpus(8)
    admitted = offer_all(pending, "priority", cluster.offer)
    # high (4, 4 left), mid-early (2, 2 left), mid-late (2, 0 left), low does not fit.
    assert cluster.offered == ["high", "mid-early", "mid-late", "low"]
    assert [g.job_id for g in admitted] == ["high", "mid-early", "mid-late"]


def test_priority_backfills_a_lower_priority_gang_past_a_blocked_one() -> None:
    pending = [gang("big", 8, priority=5), gang("small", 2, priority=0, submit_s=1)]
    cluster = FreeGpus(4)
    assert [g.job_id for g in offer_all(pending, "priority", cluster.offer)] == ["small"]


def test_greedy_offers_largest_first_and_backfills() -> None:
    pending = [
        gang("two", 2, submit_s=0),
        gang("eight", 8, submit_s=5),
        gang("four", 4, submit_s=1),
        gang("four-late", 4, submit_s=9),
    ]
    cluster = FreeGpus(12)
    admitted = offer_all(pending, "greedy", cluster.offer)
    # eight (4 left), four (0 left), four-late and two do not fit.
    assert cluster.offered == ["eight", "four", "four-late", "two"]
    assert [g.job_id for g in admitted] == ["eight", "four"]
    cluster = FreeGpus(11)
    admitted = offer_all(pending, "greedy", cluster.offer)
    # eight (3 left), four and four-late do not fit, two is backfilled (1 left).
    assert [g.job_id for g in admitted] == ["eight", "two"]


def test_fair_share_serves_the_queue_with_least_usage_per_weight() -> None:
    # prod has weight 2 and 4 GPUs running (share 4/2 = 2); research has weight 1 and
    # nothing running (share 0).
    pending = [
        gang("p1", 2, submit_s=0, queue="prod"),
        gang("p2", 2, submit_s=1, queue="prod"),
        gang("r1", 2, submit_s=2, queue="research"),
        gang("r2", 2, submit_s=3, queue="research"),
    ]
    cluster = FreeGpus(6)
    admitted = offer_all(
        pending,
        "fair-share",
        cluster.offer,
        running_gpus_by_queue={"prod": 4},
        weights={"prod": 2},
    )
    # research (0) -> r1: research 2/1 = 2.  Tie prod 2 vs research 2 -> by name, prod:
    # p1: prod 6/2 = 3.  research (2) -> r2: research 4.  prod (3) -> p2: no GPUs left.
    assert cluster.offered == ["r1", "p1", "r2", "p2"]
    assert [g.job_id for g in admitted] == ["r1", "p1", "r2"]


def test_fair_share_weight_decides_who_goes_next() -> None:
    pending = [gang("a1", 4, queue="a"), gang("b1", 4, queue="b", submit_s=1)]
    # Equal usage (4 GPUs each); b's weight of 4 makes its share 1 against a's 4.
    cluster = FreeGpus(4)
    admitted = offer_all(
        pending,
        "fair-share",
        cluster.offer,
        running_gpus_by_queue={"a": 4, "b": 4},
        weights={"b": 4},
    )
    assert [g.job_id for g in admitted] == ["b1"]
    cluster = FreeGpus(4)
    admitted = offer_all(
        pending, "fair-share", cluster.offer, running_gpus_by_queue={"a": 4, "b": 4}
    )
    assert [g.job_id for g in admitted] == ["a1"]  # equal weights: tie by queue name


def test_fair_share_backfills_within_a_queue() -> None:
    pending = [
        gang("a-big", 8, submit_s=0, queue="a"),
        gang("a-small", 2, submit_s=1, queue="a"),
        gang("b1", 2, submit_s=2, queue="b"),
    ]
    cluster = FreeGpus(4)
    admitted = offer_all(pending, "fair-share", cluster.offer, running_gpus_by_queue={"b": 10})
    # a (share 0): a-big does not fit, a-small does (a: 2).  b (10): b1 fits (0 left).
    assert cluster.offered == ["a-big", "a-small", "b1"]
    assert [g.job_id for g in admitted] == ["a-small", "b1"]


def test_unknown_ordering_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'lifo'"):
        ordered([gang("a", 1)], "lifo")


def test_iter_ordered_shows_fair_share_in_submit_order() -> None:
    pending = [gang("b", 1, submit_s=2), gang("a", 1, submit_s=1)]
    assert [g.job_id for g in iter_ordered(pending, "fair-share")] == ["a", "b"]
    assert [g.job_id for g in iter_ordered(pending, "greedy")] == ["a", "b"]


_GANGS = st.lists(
    st.tuples(
        st.integers(1, 8),  # GPUs
        st.integers(0, 5),  # submit time
        st.integers(0, 2),  # priority
        st.sampled_from(["a", "b", "c"]),  # queue
    ),
    max_size=12,
).map(
    lambda rows: [
        gang(f"j{i}", gpus, submit_s=submit, priority=prio, queue=queue)
        for i, (gpus, submit, prio, queue) in enumerate(rows)
    ]
)


@settings(max_examples=100, deadline=None)
@given(
    _GANGS,
    st.sampled_from(["fifo", "priority", "fair-share", "greedy"]),
    st.integers(0, 30),
)
def test_every_gang_is_offered_exactly_once_and_admitted_ones_fit(
    pending: list[Gang], ordering: str, free: int
) -> None:
    cluster = FreeGpus(free)
    admitted = offer_all(pending, ordering, cluster.offer, weights={"a": 2.0})
    assert sorted(cluster.offered) == sorted(g.job_id for g in pending)
    assert sum(g.total_gpus for g in admitted) == free - cluster.free
    assert cluster.free >= 0
    # Backfill: anything left waiting is too big for what remained when it was offered,
    # so in particular too big for what remains now.
    left = {g.job_id for g in pending} - {g.job_id for g in admitted}
    assert all(g.total_gpus > cluster.free for g in pending if g.job_id in left)
