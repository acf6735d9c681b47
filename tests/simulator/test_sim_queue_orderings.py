"""Each queue ordering in whole simulated runs on small hand-checked traces: one 8-GPU node
(min = max = 1, ready at once), so who starts when is decided by the ordering alone."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace
from simulator.runner import simulate

TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]

# job: (submit_s, duration_s, num_gpus, priority, queue)
CONTENDED = [
    (0, 100, 8, 0, "q1"),  # j0 "blocker": holds the node 0..100
    (10, 50, 4, 0, "q1"),  # j1 "a"
    (20, 50, 8, 2, "q2"),  # j2 "b"
    (30, 50, 2, 1, "q1"),  # j3 "c"
    (40, 50, 4, 0, "q2"),  # j4 "d"
]


def starts(trace: Trace, pool: PoolModel, ordering: str, **config: Any) -> dict[str, float | None]:
    result = simulate(
        trace, [pool], PolicyConfig(policy="reactive", queue_ordering=ordering, **config)
    )
    return {r.gang.job_id: r.start_s for r in result.jobs}


@pytest.fixture
def one_node(pool_of: PoolOf) -> PoolModel:
    return pool_of(minNodes=1, maxNodes=1, provisioningDelaySeconds=0)


@pytest.fixture
def contended(trace_of: TraceOf) -> Trace:
    return trace_of(CONTENDED, columns="priority,queue")


def test_fifo_starts_in_submit_order_and_backfills(contended: Trace, one_node: PoolModel) -> None:
    # t=100, 8 free: a (4, 4 left); b (8) does not fit and is passed over; c (2, 2 left)
    # is backfilled; d (4) does not fit.  t=150: a and c end, 8 free: b.  t=200: d.
    assert starts(contended, one_node, "fifo") == {
        "j0": 0.0,
        "j1": 100.0,
        "j2": 150.0,
        "j3": 100.0,
        "j4": 200.0,
    }


def test_priority_starts_the_highest_first(contended: Trace, one_node: PoolModel) -> None:
    # t=100: b (priority 2, all 8).  t=150: c (priority 1, 2), then a (0, submitted
    # before d; 4), d does not fit.  t=200: d.
    assert starts(contended, one_node, "priority") == {
        "j0": 0.0,
        "j1": 150.0,
        "j2": 100.0,
        "j3": 150.0,
        "j4": 200.0,
    }


def test_greedy_starts_the_largest_first(contended: Trace, one_node: PoolModel) -> None:
    # t=100: b (8).  t=150: a and d (4 each, by submit time), c (2) does not fit.  t=200: c.
    assert starts(contended, one_node, "greedy") == {
        "j0": 0.0,
        "j1": 150.0,
        "j2": 100.0,
        "j3": 200.0,
        "j4": 150.0,
    }


# Fair share: q1 runs 4 GPUs and q2 2 GPUs until t=1000; a 2-GPU q2 job ends at t=100,
# leaving 2 GPUs for one of x (q1) and y (q2).
SHARED = [
    (0, 1000, 4, 0, "q1"),  # j0
    (0, 1000, 2, 0, "q2"),  # j1
    (0, 100, 2, 0, "q2"),  # j2
    (10, 50, 2, 0, "q1"),  # j3 "x"
    (20, 50, 2, 0, "q2"),  # j4 "y"
]


def test_fair_share_serves_the_queue_with_least_usage_per_weight(
    trace_of: TraceOf, one_node: PoolModel
) -> None:
    trace = trace_of(SHARED, columns="priority,queue")
    # Equal weights at t=100: q1 uses 4, q2 uses 2: q2 goes first, y starts; x waits for
    # the next free GPUs, when y ends at 150.
    got = starts(trace, one_node, "fair-share")
    assert (got["j3"], got["j4"]) == (150.0, 100.0)
    # q1 weighted 4: q1's share is 4 / 4 = 1 against q2's 2 / 1 = 2: x goes first.
    got = starts(trace, one_node, "fair-share", fair_share_weights=MappingProxyType({"q1": 4}))
    assert (got["j3"], got["j4"]) == (100.0, 150.0)
    # fifo, for contrast, takes x (submitted first) whatever the usage.
    got = starts(trace, one_node, "fifo")
    assert (got["j3"], got["j4"]) == (100.0, 150.0)
