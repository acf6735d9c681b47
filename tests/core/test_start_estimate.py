"""Estimated start of waiting gangs: the earliest of capacity freed by running gangs' expected
ends (the scheduler's rule replayed, in queue order) and a node boot. Each expected value is
worked out by hand in the test. Defaults: 8-GPU nodes, 300 s boot, now = 1000."""

from __future__ import annotations

from typing import Any

from dlscaler.estimate import estimated_starts

NOW = 1000.0


def starts(snap: Any, pools: list[Any], running: list[Any], waiting: list[Any], **kw: Any) -> Any:
    return estimated_starts(now_s=NOW, pools=pools, running=running, waiting=waiting, **kw)


def test_a_gang_that_fits_on_a_free_ready_node_starts_now(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("a", used=4))
    assert starts(snap, [pool], [], [snap.gang("g", gpus=4)]) == {"g": NOW}


def test_with_no_capacity_a_gang_waits_one_boot(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("a", used=8))
    # The running gang's end is unknown: only a new node can take the gang, at 1000 + 300.
    busy = snap.running(snap.gang("r"), "pool", "a")
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": 1300.0}


def test_a_release_before_the_boot_wins(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("a", used=8))
    # r frees node a at 1120, before a new node would be ready (1300).
    busy = snap.running(snap.gang("r"), "pool", "a", end_s=1120.0)
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": 1120.0}


def test_a_boot_before_the_release_wins(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("a", used=8))
    busy = snap.running(snap.gang("r"), "pool", "a", end_s=5000.0)
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": 1300.0}


def test_at_max_nodes_only_releases_count(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=1), snap.ready("a", used=8))
    busy = snap.running(snap.gang("r"), "pool", "a", end_s=5000.0)
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": 5000.0}


def test_an_unknown_release_at_max_nodes_gives_no_estimate(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=1), snap.ready("a", used=8))
    busy = snap.running(snap.gang("r"), "pool", "a")
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": None}


def test_gangs_take_released_capacity_in_queue_order(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=2), snap.ready("a", used=8), snap.ready("b", used=8))
    running = [
        snap.running(snap.gang("r1"), "pool", "a", end_s=1100.0),
        snap.running(snap.gang("r2"), "pool", "b", end_s=1500.0),
    ]
    # Both need a whole node; g1 was submitted first, so it takes a (1100), g2 waits for b.
    waiting = [snap.gang("g2", submit_s=20.0), snap.gang("g1", submit_s=10.0)]
    assert starts(snap, [pool], running, waiting) == {"g1": 1100.0, "g2": 1500.0}


def test_priority_order_puts_the_urgent_gang_first(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=2), snap.ready("a", used=8), snap.ready("b", used=8))
    running = [
        snap.running(snap.gang("r1"), "pool", "a", end_s=1100.0),
        snap.running(snap.gang("r2"), "pool", "b", end_s=1500.0),
    ]
    waiting = [snap.gang("old", submit_s=10.0), snap.gang("urgent", submit_s=20.0, priority=5)]
    got = starts(snap, [pool], running, waiting, ordering="priority")
    assert got == {"urgent": 1100.0, "old": 1500.0}


def test_a_small_gang_backfills_without_delaying_the_one_ahead(snap: Any) -> None:
    # Node a has 4 GPUs free now and frees 4 more at 2000; node b frees 8 at 1200.
    # big (8 GPUs, first in the queue) takes b at 1200 (a is whole only at 2000).
    # small (4 GPUs) fits on a's 4 free GPUs now: nobody ahead needs them.
    pool = snap.pool(snap.spec(max_nodes=2), snap.ready("a", used=4), snap.ready("b", used=8))
    running = [
        snap.running(snap.gang("r1", gpus=4), "pool", "a", end_s=2000.0),
        snap.running(snap.gang("r2"), "pool", "b", end_s=1200.0),
    ]
    waiting = [snap.gang("big", submit_s=1.0), snap.gang("small", gpus=4, submit_s=2.0)]
    assert starts(snap, [pool], running, waiting) == {"big": 1200.0, "small": NOW}


def test_a_backfilled_gang_holds_its_gpus_so_the_one_ahead_waits_on(snap: Any) -> None:
    # a has 4 GPUs free now and frees 4 more at 1500. first (8 GPUs) does not fit now;
    # second (4 GPUs) does and is admitted now, as the scheduler would. At 1500 a has 4 free
    # again, second's end is not known, and the pool is at max: first has no estimate.
    pool = snap.pool(snap.spec(max_nodes=1), snap.ready("a", used=4))
    running = [snap.running(snap.gang("r", gpus=4), "pool", "a", end_s=1500.0)]
    waiting = [snap.gang("first", submit_s=1.0), snap.gang("second", gpus=4, submit_s=2.0)]
    assert starts(snap, [pool], running, waiting) == {"first": None, "second": NOW}


def test_a_gang_fits_on_an_in_flight_node_when_it_is_expected_ready(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.in_flight("n", ready_s=1200.0))
    assert starts(snap, [pool], [], [snap.gang("g")]) == {"g": 1200.0}


def test_nodes_asked_for_but_not_listed_arrive_one_boot_from_now(snap: Any) -> None:
    # The cloud's target is one node above what is listed: that node counts, ready at 1300,
    # and the pool is at max, so no further boot is possible.
    pool = snap.pool(snap.spec(max_nodes=1), target_nodes=1)
    assert starts(snap, [pool], [], [snap.gang("g")]) == {"g": 1300.0}


def test_boots_for_gangs_ahead_use_up_the_pool_s_headroom(snap: Any) -> None:
    # One more node may be booted (max 2, one live): g1 gets it at 1300, g2 has none left
    # and waits for the release at 4000.
    pool = snap.pool(snap.spec(max_nodes=2), snap.ready("a", used=8))
    running = [snap.running(snap.gang("r"), "pool", "a", end_s=4000.0)]
    waiting = [snap.gang("g1", submit_s=1.0), snap.gang("g2", submit_s=2.0)]
    assert starts(snap, [pool], running, waiting) == {"g1": 1300.0, "g2": 4000.0}


def test_a_backed_off_pool_boots_only_after_its_back_off(snap: Any) -> None:
    pool = snap.pool(snap.spec(), unavailable_until_s=1600.0)
    assert starts(snap, [pool], [], [snap.gang("g")]) == {"g": 1900.0}


def test_a_boot_goes_to_the_cheapest_pool_that_can_grow(snap: Any) -> None:
    # The cheap pool boots in 900 s, the dear one in 120 s; the cheap one is full.
    cheap = snap.pool(snap.spec("cheap", price=4.0, delay_s=900.0, max_nodes=0))
    dear = snap.pool(snap.spec("dear", price=16.0, delay_s=120.0))
    assert starts(snap, [cheap, dear], [], [snap.gang("g")]) == {"g": 1120.0}
    # With room in the cheap pool, that is where the nodes are asked for.
    cheap = snap.pool(snap.spec("cheap", price=4.0, delay_s=900.0))
    assert starts(snap, [cheap, dear], [], [snap.gang("g")]) == {"g": 1900.0}


def test_capacity_in_a_dearer_pool_is_used_when_it_frees_first(snap: Any) -> None:
    cheap = snap.pool(snap.spec("cheap", price=4.0, max_nodes=1), snap.ready("c", used=8))
    dear = snap.pool(snap.spec("dear", price=16.0, max_nodes=1), snap.ready("d", used=8))
    running = [
        snap.running(snap.gang("r1"), "cheap", "c", end_s=3000.0),
        snap.running(snap.gang("r2"), "dear", "d", end_s=1400.0),
    ]
    assert starts(snap, [cheap, dear], running, [snap.gang("g")]) == {"g": 1400.0}


def test_a_draining_node_takes_no_new_gang(snap: Any) -> None:
    # Its 8 GPUs are not offered; it is not live either, so one node may be booted.
    pool = snap.pool(snap.spec(max_nodes=1), snap.draining("d"))
    assert starts(snap, [pool], [], [snap.gang("g")]) == {"g": 1300.0}


def test_a_gang_no_pool_accepts_has_no_estimate(snap: Any) -> None:
    pool = snap.pool(snap.spec(gpu_type="a100"), snap.ready("a"))
    assert starts(snap, [pool], [], [snap.gang("g", gpu_type="h100")]) == {"g": None}


def test_a_multi_node_gang_needs_every_worker_placed_at_once(snap: Any) -> None:
    # 2 workers x 8: a frees at 1100, b at 1250; the gang starts when both are free (1250),
    # before a boot of two nodes (1300).
    pool = snap.pool(snap.spec(max_nodes=4), snap.ready("a", used=8), snap.ready("b", used=8))
    running = [
        snap.running(snap.gang("r1"), "pool", "a", end_s=1100.0),
        snap.running(snap.gang("r2"), "pool", "b", end_s=1250.0),
    ]
    assert starts(snap, [pool], running, [snap.gang("g", workers=2)]) == {"g": 1250.0}


def test_a_release_already_overdue_counts_as_now(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=1), snap.ready("a", used=8))
    busy = snap.running(snap.gang("r"), "pool", "a", end_s=900.0)
    assert starts(snap, [pool], [busy], [snap.gang("g")]) == {"g": NOW}


def test_gangs_past_the_limit_get_no_estimate(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("a"))
    waiting = [snap.gang(f"g{i}", gpus=1, submit_s=float(i)) for i in range(3)]
    got = starts(snap, [pool], [], waiting, max_gangs=2)
    assert got == {"g0": NOW, "g1": NOW, "g2": None}
