"""Room for arrivals across several pools: an arriving gang's room is the free capacity of
every pool that takes it (nothing counted twice), grown in its home pool; one lead time for
the demand forecast and the arrival windows; and the bulk room computation, computed once
per decision, against the straightforward one on random inputs."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.config import PoolModel
from dlscaler.model import Forecast, Gang, PoolSpec
from dlscaler.placement import admission_key, place_workers
from dlscaler.policy import decide
from dlscaler.policy.forecast_needs import arrival_window_s, lead_time_s
from dlscaler.policy.scenarios import ArrivalRoom, free_histogram, pick_outcome

NOW = 10_000.0


def g(workers: int, gpus: int, gpu_type: str = "", job: str = "x") -> Gang:
    return Gang(job, 0.0, workers, gpus, gpu_type=gpu_type)


def fc(windows: list[list[Gang]], p90: tuple[float, ...] = (0.0,) * 10) -> Forecast:
    """A trusted forecast asking for ``p90`` GPUs per 60 s step, with these arrival windows."""
    return Forecast(
        start_s=NOW,
        step_s=60.0,
        quantiles=MappingProxyType({0.5: (0.0,) * len(p90), 0.9: p90}),
        model="test",
        recent_error_ratio=0.5,
        arrival_scenarios=tuple(tuple(w) for w in windows),
    )


def plan(snap: Any, pools: Any, forecast: Forecast, **predictive: Any) -> Any:
    return decide(
        now=NOW,
        pools=pools,
        pending=[],
        running=[],
        forecast=forecast,
        config=snap.config("predictive", predictive=predictive),
    )


def busy(snap: Any, prefix: str, n: int, used: int = 8) -> list[Any]:
    return [snap.ready(f"{prefix}{i}", used=used) for i in range(n)]


# --- room in every pool the gang may run in ----------------------------------------------


def test_a_dearer_pools_free_node_is_room_so_the_cheap_pool_does_not_boot(snap: Any) -> None:
    cheap = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2))
    # idle for 100 s: not past the timeout, so it stays either way
    dear = snap.pool(snap.spec("dear", price=30.0), snap.ready("d0", idle_since_s=NOW - 100))
    p = plan(snap, [cheap, dear], fc([[g(1, 8)]] * 10))
    assert p.scale_ups == ()
    assert p.targets == {"cheap": 2, "dear": 1}


def test_one_free_node_is_room_for_one_gang_not_two(snap: Any) -> None:
    cheap = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2))
    dear = snap.pool(snap.spec("dear", price=30.0), snap.ready("d0", idle_since_s=NOW - 100))
    p = plan(snap, [cheap, dear], fc([[g(1, 8, job="a"), g(1, 8, job="b")]] * 10))
    assert [(u.pool, u.added_nodes) for u in p.scale_ups] == [("cheap", 1)]


def test_a_dearer_pools_fragments_are_room_for_the_small_gangs_they_hold(snap: Any) -> None:
    cheap = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2))
    dear = snap.pool(snap.spec("dear", price=30.0), *busy(snap, "d", 2, used=4))
    # two 1x4 gangs fit the dear pool's two half-free nodes; a third does not
    assert plan(snap, [cheap, dear], fc([[g(1, 4), g(1, 4)]] * 10)).scale_ups == ()
    p = plan(snap, [cheap, dear], fc([[g(1, 4), g(1, 4), g(1, 4)]] * 10))
    assert [(u.pool, u.added_nodes) for u in p.scale_ups] == [("cheap", 1)]
    # a 2x4 gang goes whole into one pool: the dear pool holds it, across its two nodes
    assert plan(snap, [cheap, dear], fc([[g(2, 4)]] * 10)).scale_ups == ()


def test_free_capacity_of_a_pool_that_cannot_run_the_gang_is_no_room(snap: Any) -> None:
    idle = snap.ready("o0", idle_since_s=NOW - 100)
    small = snap.ready("o0", idle_since_s=NOW - 100, gpus=4)
    cases = [
        # another GPU type
        (snap.spec("a100", gpu_type="a100", price=1.0), snap.spec("t4", gpu_type="t4"), idle),
        # nodes too small for the worker
        (snap.spec("big", price=1.0), snap.spec("small", gpus_per_node=4, price=0.5), small),
    ]
    for home, other, node in cases:
        pools = [snap.pool(home, *busy(snap, "h", 2)), snap.pool(other, node)]
        gpu_type = home.gpu_type
        p = plan(snap, pools, fc([[g(1, 8, gpu_type)]] * 10))
        assert [(u.pool, u.added_nodes) for u in p.scale_ups] == [(home.name, 1)], home.name


def test_each_gang_takes_the_room_it_fits_so_none_is_counted_twice(snap: Any) -> None:
    """The typed gang can only use the a100 pool's free node; the untyped one could use
    either, and takes the cheaper pool's, so neither pool grows."""
    anyp = snap.pool(snap.spec("any", price=1.0), snap.ready("n0", idle_since_s=NOW - 100))
    a100 = snap.pool(
        snap.spec("a100", gpu_type="a100", price=30.0), snap.ready("a0", idle_since_s=NOW - 100)
    )
    windows = [[g(1, 8, "a100", job="t"), g(1, 8, job="u")]] * 10
    assert plan(snap, [anyp, a100], fc(windows)).scale_ups == ()
    # a second untyped gang finds no room left: its home (the cheap pool) grows
    windows = [[g(1, 8, "a100", job="t"), g(1, 8, job="u"), g(1, 8, job="v")]] * 10
    p = plan(snap, [anyp, a100], fc(windows))
    assert [(u.pool, u.added_nodes) for u in p.scale_ups] == [("any", 1)]


def test_idle_nodes_of_a_dearer_pool_are_replaced_by_the_cheap_pool_in_the_same_plan(
    snap: Any,
) -> None:
    """The dear pool's idle nodes past their timeout were the room: they go (a node of one
    pool is not kept for another pool's arrivals), and the cheap pool grows the room they
    took away in the same plan rather than a decision later."""
    cheap = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2))
    dear = snap.pool(snap.spec("dear", price=30.0), snap.ready("d0"), snap.ready("d1"))
    p = plan(snap, [cheap, dear], fc([[g(1, 8)]] * 10))
    assert sorted(r.node for r in p.removals) == ["d0", "d1"]
    assert [(u.pool, u.added_nodes) for u in p.scale_ups] == [("cheap", 1)]
    assert "in place of idle nodes of other pools removed" in p.scale_ups[0].reason
    assert p.targets == {"cheap": 3, "dear": 0}
    # the plan applied: the cheap pool's node is in flight, and nothing more is asked
    booting = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2), snap.in_flight("c-new"))
    again = plan(snap, [booting, snap.pool(snap.spec("dear", price=30.0))], fc([[g(1, 8)]] * 10))
    assert again.scale_ups == () and again.removals == ()


def test_a_cordon_that_takes_another_pools_room_is_undone(snap: Any) -> None:
    """Consolidation would cordon the dear pool's half-used node (its job ends soon), but
    its 4 free GPUs are the room for the 1x4 gangs whose home is the full cheap pool; a plan
    that cordons grows nothing, so the cordon is undone."""
    cheap = snap.pool(snap.spec("cheap", price=1.0), *busy(snap, "c", 2))
    dear = snap.pool(snap.spec("dear", price=30.0), snap.ready("d0", used=4))
    running = [
        snap.running(snap.gang("long-0"), "cheap", "c0"),
        snap.running(snap.gang("long-1"), "cheap", "c1"),
        snap.running(snap.gang("soon", gpus=4), "dear", "d0", end_s=NOW + 600),
    ]

    def cordons(windows: list[list[Gang]]) -> list[str]:
        p = decide(
            now=NOW,
            pools=[cheap, dear],
            pending=[],
            running=running,
            forecast=fc(windows),
            config=snap.config(
                "predictive", predictive={"consolidate_within_s": 3_600.0, "hysteresis_nodes": 0}
            ),
        )
        assert p.scale_ups == ()
        return [c.node for c in p.cordons]

    assert cordons([[]] * 10) == ["d0"]
    assert cordons([[g(1, 4)]] * 10) == []


# --- one lead time ------------------------------------------------------------------------


def test_the_demand_lead_time_is_the_arrival_windows_one_the_slowest_pools(snap: Any) -> None:
    """An untyped pool that boots in 180 s and an A100 pool in 420 s: the forecast's demand
    is looked at over 420 s, as long as the arrival windows the forecasters build."""
    fast = snap.spec("any", delay_s=180.0, max_nodes=100)
    slow = snap.spec("a100", gpu_type="a100", delay_s=420.0, max_nodes=100)
    models = [
        PoolModel.model_validate(
            {"name": s.name, "gpuType": s.gpu_type, "gpusPerNode": 8, "maxNodes": 100,
             "pricePerHour": 8.0, "provisioningDelaySeconds": s.provisioning_delay_s}
        )
        for s in (fast, slow)
    ]  # fmt: skip
    config = snap.config("predictive")
    assert lead_time_s(config, models) == lead_time_s(config, [fast, slow]) == 420.0
    assert arrival_window_s(lead_time_s(config, models)) == 420.0
    # demand rises to 64 GPUs 300 s from now: within 420 s, not within 180 s
    rising = fc([[]] * 10, p90=(0.0,) * 5 + (64.0,) * 5)
    p = plan(snap, [snap.pool(fast), snap.pool(slow)], rising)
    assert [(u.pool, u.to_nodes) for u in p.scale_ups] == [("any", 8)]
    assert "within 420s" in p.scale_ups[0].reason


# --- the bulk computation against the straightforward one ---------------------------------


def straightforward_fresh(
    specs: list[PoolSpec], free: list[list[int]], gangs: list[Gang]
) -> list[int]:
    """Fresh nodes per pool, gang by gang and worker by worker on explicit node lists with
    :func:`place_workers`. Gangs the fewest pools take first, then the largest workers, the
    most workers, by GPU type. A gang goes whole into the first pool (cheapest per GPU) that
    holds it; if none does, or only one pool takes it, its home pool (the first in ``specs``
    that takes it) places it worker by worker, best fit, on a fresh node when none holds
    the worker."""
    nodes = [list(f) for f in free]
    fresh = [0] * len(specs)
    order = sorted(range(len(specs)), key=lambda i: admission_key(specs[i]))

    def put(p: int, chosen: list[int], gpus: int) -> None:
        for i in chosen:
            nodes[p][i] -= gpus

    def grow(p: int, workers: int, gpus: int) -> None:
        for _ in range(workers):
            chosen = place_workers(nodes[p], 1, gpus)
            if chosen is None:
                nodes[p].append(specs[p].gpus_per_node)
                fresh[p] += 1
                chosen = [len(nodes[p]) - 1]
            put(p, chosen, gpus)

    def takers(gang: Gang) -> list[int]:
        return [i for i in order if specs[i].accepts(gang)]

    for gang in sorted(
        gangs, key=lambda x: (len(takers(x)), -x.gpus_per_worker, -x.workers, x.gpu_type)
    ):
        gpus = gang.gpus_per_worker
        if gpus <= 0 or not takers(gang):
            continue
        home = next(i for i, s in enumerate(specs) if s.accepts(gang))
        if len(takers(gang)) == 1:
            grow(home, gang.workers, gpus)
            continue
        for p in takers(gang):
            chosen = place_workers(nodes[p], gang.workers, gpus)
            if chosen is not None:
                put(p, chosen, gpus)
                break
        else:
            grow(home, gang.workers, gpus)
    return fresh


def straightforward_shortfall(
    specs: list[PoolSpec],
    free: list[list[int]],
    windows: list[list[Gang]],
    q: float,
    budget: int,
) -> dict[str, int]:
    """Every scenario placed again on the fragments alone, the chosen one on the fragments
    and the whole free nodes."""
    fragments = [[f for f in fs if f < s.gpus_per_node] for fs, s in zip(free, specs, strict=True)]
    outcomes = []
    for k, window in enumerate(windows):
        n = straightforward_fresh(specs, fragments, window)
        cost = sum(x * s.price_usd_per_hour for x, s in zip(n, specs, strict=True))
        outcomes.append((cost, sum(n), k))
    outcomes.sort(key=lambda o: o[0])
    k = outcomes[pick_outcome([(c, n) for c, n, _ in outcomes], q, budget)][2]
    n = straightforward_fresh(specs, free, windows[k])
    return {s.name: x for s, x in zip(specs, n, strict=True) if x}


def per_worker_extra_nodes(hist: list[int], gangs: list[Gang], size: int) -> int:
    """The single-pool computation as it was: every worker, largest first, best fit on the
    histogram, a fresh node when none holds it."""
    h = list(hist)
    added = 0
    for gpus in sorted((x.gpus_per_worker for x in gangs for _ in range(x.workers)), reverse=True):
        if gpus <= 0 or gpus > size:
            continue
        for f in range(gpus, size + 1):
            if h[f]:
                h[f] -= 1
                h[f - gpus] += 1
                break
        else:
            added += 1
            h[size - gpus] += 1
    return added


def split(free: list[int], size: int) -> tuple[list[int], int]:
    return free_histogram([f for f in free if f < size], size), sum(f >= size for f in free)


POOLS = st.lists(
    st.tuples(
        st.sampled_from([4, 8]),  # GPUs per node
        st.sampled_from(["", "", "a100"]),
        st.sampled_from([1.0, 2.0, 3.0]),  # price per node-hour
    ),
    min_size=1,
    max_size=3,
)
GANG = st.builds(
    g,
    st.integers(1, 4),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(["", "", "a100"]),
)


@settings(max_examples=300, deadline=None)
@given(
    pools=POOLS,
    data=st.data(),
    windows=st.lists(st.lists(GANG, max_size=8), min_size=1, max_size=12),
    q=st.sampled_from([0.5, 0.85, 0.9]),
    budget=st.integers(0, 4),
)
def test_bulk_room_equals_the_straightforward_placement(
    pools: list[tuple[int, str, float]],
    data: st.DataObject,
    windows: list[list[Gang]],
    q: float,
    budget: int,
) -> None:
    """Within one decision the scenarios' room is computed once for the fragments and reused
    while whole free nodes are removed or put back; the shortfall after each change equals
    everything placed again from scratch, gang by gang."""
    specs = [
        PoolSpec(f"p{i}", size, 100, price, gpu_type=gpu_type)
        for i, (size, gpu_type, price) in enumerate(pools)
    ]
    free = [data.draw(st.lists(st.integers(0, s.gpus_per_node), max_size=6)) for s in specs]
    room = ArrivalRoom(specs, windows)
    for _ in range(4):  # whole nodes removed or put back, fragments as they were
        parts = [split(f, s.gpus_per_node) for f, s in zip(free, specs, strict=True)]
        got = room.shortfall([h for h, _ in parts], [w for _, w in parts], q, budget)
        assert got == straightforward_shortfall(specs, free, windows, q, budget)
        p = data.draw(st.integers(0, len(specs) - 1))
        size = specs[p].gpus_per_node
        if data.draw(st.booleans()):
            free[p] = [f for f in free[p] if f < size] + [size] * data.draw(st.integers(0, 3))
        else:  # a busy node cordoned: the fragments change too
            free[p] = free[p][1:]


@settings(max_examples=300, deadline=None)
@given(
    free=st.lists(st.integers(0, 8), max_size=10),
    windows=st.lists(
        st.lists(st.builds(g, st.integers(1, 4), st.sampled_from([1, 2, 4, 8])), max_size=8),
        min_size=1,
        max_size=12,
    ),
    q=st.sampled_from([0.5, 0.85, 0.9]),
    budget=st.integers(0, 4),
)
def test_with_one_pool_the_room_is_as_before(
    free: list[int], windows: list[list[Gang]], q: float, budget: int
) -> None:
    """One pool: each scenario's room is every worker placed largest first on the
    fragments, and the shortfall what the chosen one needs beyond the whole free nodes."""
    spec = PoolSpec("default", 8, 100, 32.77)
    hist, whole = split(free, 8)
    needs = [per_worker_extra_nodes(hist, w, 8) for w in windows]
    outcomes = sorted(((n * spec.price_usd_per_hour, n) for n in needs), key=lambda o: o[0])
    n = outcomes[pick_outcome(outcomes, q, budget)][1]
    want = {"default": n - whole} if n > whole else {}
    assert ArrivalRoom([spec], windows).shortfall([hist], [whole], q, budget) == want


def test_room_is_priced_per_pool_and_the_budget_counts_nodes() -> None:
    """Hand-checked: the cheap pool is full; windows bring nothing, one 8-GPU gang, or two.
    At p50 nothing is kept; a budget of one node buys the one-gang window (p99 is the
    rarest a budget may pay for)."""
    specs = [PoolSpec("cheap", 8, 10, 1.0), PoolSpec("dear", 8, 10, 3.0, gpu_type="a100")]
    windows = [[]] * 3 + [[g(1, 8)]] + [[g(1, 8), g(1, 8, "a100")]]
    room = ArrivalRoom(specs, windows)
    full = free_histogram([0, 0], 8)
    empty = free_histogram([], 8)
    assert [(c, n) for c, n, _ in room.outcomes([full, empty])] == [
        (0.0, 0),
        (0.0, 0),
        (0.0, 0),
        (1.0, 1),
        (4.0, 2),
    ]
    assert room.shortfall([full, empty], [0, 0], 0.5, 0) == {}
    assert room.shortfall([full, empty], [0, 0], 0.5, 1) == {"cheap": 1}
    assert room.shortfall([full, empty], [0, 0], 0.5, 2) == {"cheap": 1, "dear": 1}
    # a whole free node of the a100 pool is room for the untyped gang, not for both
    assert room.shortfall([full, empty], [0, 1], 0.5, 2) == {"cheap": 1}
    assert math.isclose(sum(c for c, _, _ in room.outcomes([full, empty])), 5.0)
