"""Elastic gangs: growing into idle GPUs of the job's pool, shrinking instead of a
scale-up, hysteresis, and the plan without the scale-ups a shrink made unnecessary."""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.elastic import ElasticGang, plan_resizes, without_scale_ups_for
from dlscaler.model import Gang, NodePhase, NodeState, PoolSpec, PoolState
from dlscaler.placement import place_workers
from dlscaler.plan import Plan, ScaleUp

NOW = 10_000.0


def elastic(
    job_id: str,
    *nodes: str,
    pool: str = "pool",
    lo: int = 1,
    hi: int = 4,
    gpus: int = 8,
    priority: int = 0,
    last_resize_s: float | None = None,
) -> ElasticGang:
    return ElasticGang(
        job_id=job_id,
        pool=pool,
        gpus_per_worker=gpus,
        min_workers=lo,
        max_workers=hi,
        nodes=tuple(nodes),
        priority=priority,
        last_resize_s=last_resize_s,
    )


def test_a_running_elastic_job_grows_into_idle_gpus_of_its_pool_up_to_what_fits(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1"), snap.ready("n2"))
    job = elastic("ns/e", "n0", hi=4)
    out = plan_resizes(now_s=NOW, pools=[pool], elastic=[job], pending=[])
    (resize,) = out.resizes
    assert resize.grows and (resize.from_workers, resize.to_workers) == (1, 3)
    assert resize.nodes[0] == "n0" and sorted(resize.nodes[1:]) == ["n1", "n2"]
    assert resize.reason == "grew from 1 to 3 workers into idle GPUs of pool pool"
    assert out.covered == ()


def test_growth_stops_at_max_workers(snap):
    pool = snap.pool(
        snap.spec(), snap.ready("n0", used=8), *(snap.ready(f"m{i}") for i in range(4))
    )
    (resize,) = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[elastic("e", "n0", hi=2)], pending=[]
    ).resizes
    assert resize.to_workers == 2


def test_growth_uses_only_ready_nodes_of_the_jobs_pool_that_are_not_being_removed(snap):
    own = snap.pool(
        snap.spec("own"),
        snap.ready("n0", used=8),
        snap.in_flight("booting"),
        snap.draining("going"),
        snap.ready("idle-but-removed"),
        snap.ready("half", used=4),
    )
    other = snap.pool(snap.spec("other"), snap.ready("elsewhere"))
    job = elastic("e", "n0", pool="own", hi=4, gpus=4)
    out = plan_resizes(
        now_s=NOW,
        pools=[own, other],
        elastic=[job],
        pending=[],
        removing={"idle-but-removed"},
    )
    (resize,) = out.resizes
    assert resize.nodes == ("n0", "half")


def test_no_growth_while_a_gang_the_pool_could_run_waits(snap):
    pool = snap.pool(snap.spec(gpu_type="a100"), snap.ready("n0", used=8), snap.ready("n1"))
    job = elastic("e", "n0")
    waiting = snap.gang("other", gpu_type="a100")
    assert plan_resizes(now_s=NOW, pools=[pool], elastic=[job], pending=[waiting]).resizes == ()
    # A gang no pool of this type could run does not hold the idle GPUs back.
    h100 = snap.gang("h100-job", gpu_type="h100")
    assert plan_resizes(now_s=NOW, pools=[pool], elastic=[job], pending=[h100]).resizes != ()


def test_a_job_resized_less_than_the_minimum_interval_ago_is_left_alone(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1"))
    recent = elastic("e", "n0", last_resize_s=NOW - 299)
    assert plan_resizes(now_s=NOW, pools=[pool], elastic=[recent], pending=[]).resizes == ()
    older = elastic("e", "n0", last_resize_s=NOW - 300)
    assert plan_resizes(now_s=NOW, pools=[pool], elastic=[older], pending=[]).resizes != ()
    quick = plan_resizes(now_s=NOW, pools=[pool], elastic=[recent], pending=[], min_interval_s=10)
    assert quick.resizes != ()


def test_an_elastic_job_shrinks_so_a_waiting_gang_needs_no_new_node(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    job = elastic("ns/e", "n0", "n1", lo=1, hi=2)
    rigid = snap.gang("ns/rigid", workers=1, gpus=8)
    out = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[job], pending=[rigid], scale_up_for={"ns/rigid"}
    )
    (resize,) = out.resizes
    assert not resize.grows and resize.to_workers == 1
    assert resize.nodes == ("n0",)  # rank 0 keeps its node; the last worker goes
    assert resize.made_room_for == ("ns/rigid",)
    assert resize.reason == "shrank from 2 to 1 workers to make room for ns/rigid"
    assert out.covered == ("ns/rigid",)


def test_a_shrink_frees_whole_nodes_by_releasing_workers_that_share_one(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    # Four 4-GPU workers, two per node: one 8-GPU worker needs both workers of one node.
    job = elastic("e", "n0", "n1", "n0", "n1", lo=1, hi=4, gpus=4)
    rigid = snap.gang("rigid", workers=1, gpus=8)
    out = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[job], pending=[rigid], scale_up_for={"rigid"}
    )
    (resize,) = out.resizes
    assert resize.to_workers == 2
    assert len(set(resize.nodes)) == 1  # the other node is entirely free


def test_never_below_min_workers_and_never_for_partial_room(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    at_min = elastic("e", "n0", "n1", lo=2, hi=3)
    rigid = snap.gang("rigid", workers=1, gpus=8)
    out = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[at_min], pending=[rigid], scale_up_for={"rigid"}
    )
    assert out == type(out)()
    # One worker could go, but the gang needs two whole nodes: nothing is released.
    one_spare = elastic("e", "n0", "n1", lo=1, hi=3)
    big = snap.gang("big", workers=2, gpus=8)
    out = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[one_spare], pending=[big], scale_up_for={"big"}
    )
    assert out.resizes == () and out.covered == ()


def test_only_gangs_the_plan_scales_up_for_are_made_room_for(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    job = elastic("e", "n0", "n1", lo=1, hi=2)
    rigid = snap.gang("rigid", workers=1, gpus=8)
    out = plan_resizes(now_s=NOW, pools=[pool], elastic=[job], pending=[rigid], scale_up_for=())
    assert out.resizes == () and out.covered == ()


def test_a_shrink_is_only_in_a_pool_that_can_run_the_waiting_gang(snap):
    a100 = snap.pool(snap.spec("a100", gpu_type="a100"), snap.ready("n0", used=8))
    l4 = snap.pool(
        snap.spec("l4", gpu_type="l4"), snap.ready("m0", used=8), snap.ready("m1", used=8)
    )
    job = elastic("e", "m0", "m1", pool="l4", lo=1, hi=2)
    wants_a100 = snap.gang("rigid", workers=1, gpus=8, gpu_type="a100")
    out = plan_resizes(
        now_s=NOW, pools=[a100, l4], elastic=[job], pending=[wants_a100], scale_up_for={"rigid"}
    )
    assert out.resizes == () and out.covered == ()


def test_only_the_workers_needed_are_released_across_jobs(snap):
    # The low-priority job's workers each share a node with 4 GPUs of something else:
    # releasing one makes no 8-GPU room. The other job then frees n1, and the first
    # release, not needed after all, is given back.
    pool = snap.pool(
        snap.spec(),
        snap.ready("n0", used=8),
        snap.ready("n1", used=8),
        snap.ready("n2", used=8),
        snap.ready("n3", used=8),
    )
    low = elastic("low", "n0", "n3", lo=1, hi=2, gpus=4, priority=0)
    high = elastic("high", "n1", "n1", "n2", lo=1, hi=3, gpus=4, priority=1)
    rigid = snap.gang("rigid", workers=1, gpus=8, priority=1)
    out = plan_resizes(
        now_s=NOW, pools=[pool], elastic=[low, high], pending=[rigid], scale_up_for={"rigid"}
    )
    assert [(r.job_id, r.nodes) for r in out.resizes] == [("high", ("n2",))]
    assert out.covered == ("rigid",)


def test_a_job_never_shrinks_for_a_gang_of_lower_priority(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    job = elastic("ns/e", "n0", "n1", lo=1, hi=2, priority=5)
    for priority, shrinks in ((4, False), (5, True), (6, True)):
        rigid = snap.gang("ns/rigid", workers=1, gpus=8, priority=priority)
        out = plan_resizes(
            now_s=NOW, pools=[pool], elastic=[job], pending=[rigid], scale_up_for={"ns/rigid"}
        )
        assert bool(out.resizes) is shrinks, priority
        assert out.covered == (("ns/rigid",) if shrinks else ())


def test_gpus_released_by_an_earlier_shrink_cover_the_gang_without_another_resize(snap):
    pool = snap.pool(snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8))
    rigid = snap.gang("rigid", workers=1, gpus=8)
    out = plan_resizes(
        now_s=NOW,
        pools=[pool],
        elastic=[],
        pending=[rigid],
        scale_up_for={"rigid"},
        releasing_gpus={"n1": 8},
    )
    assert out.resizes == () and out.covered == ("rigid",)


def test_a_fixed_size_job_is_never_resized(snap):
    pool = snap.pool(
        snap.spec(), snap.ready("n0", used=8), snap.ready("n1", used=8), snap.ready("n2")
    )
    fixed = elastic("fixed", "n0", "n1", lo=2, hi=2)
    rigid = snap.gang("rigid", workers=1, gpus=8)
    for pending, ups in (([], set()), ([rigid], {"rigid"})):
        out = plan_resizes(
            now_s=NOW, pools=[pool], elastic=[fixed], pending=pending, scale_up_for=ups
        )
        assert out.resizes == ()


def test_an_elastic_gang_outside_its_bounds_is_a_clear_error():
    with pytest.raises(ValueError, match=r"runs 3 workers, outside 1\.\.2"):
        elastic("e", "a", "b", "c", lo=1, hi=2)
    with pytest.raises(ValueError, match="min_workers <= max_workers"):
        elastic("e", "a", lo=3, hi=2)


def test_without_scale_ups_for_drops_or_trims_the_covered_gangs_nodes(snap):
    spec = snap.spec("pool")
    pool = snap.pool(spec)
    gangs = [snap.gang("a"), snap.gang("b", workers=2), snap.gang("c")]
    plan = Plan(
        targets=MappingProxyType({"pool": 7, "other": 1}),
        scale_ups=(
            ScaleUp("pool", 2, 3, "for a", ("a",)),
            ScaleUp("pool", 3, 7, "for b and c", ("b", "c")),
            ScaleUp("other", 0, 1, "forecast"),
        ),
    )
    out = without_scale_ups_for(plan, {"a", "c"}, gangs, [pool, snap.pool(snap.spec("other"))])
    assert [(u.pool, u.from_nodes, u.to_nodes, u.job_ids) for u in out.scale_ups] == [
        ("pool", 3, 5, ("b",)),
        ("other", 0, 1, ()),
    ]
    assert dict(out.targets) == {"pool": 4, "other": 1}
    assert without_scale_ups_for(plan, set(), gangs, [pool]) is plan


# --- properties -----------------------------------------------------------------------------


@st.composite
def scenes(draw):
    """Pools of ready 8-GPU nodes, elastic jobs placed on them, other use, waiting gangs."""
    types = ["a100", "l4"]
    pools: list[PoolState] = []
    jobs: list[ElasticGang] = []
    releasing: dict[str, int] = {}
    n_jobs = 0
    for p in range(draw(st.integers(1, 2))):
        name = f"p{p}"
        n_nodes = draw(st.integers(1, 5))
        nodes = [f"{name}-n{i}" for i in range(n_nodes)]
        used = dict.fromkeys(nodes, 0)
        for _ in range(draw(st.integers(0, 3))):
            gpus = draw(st.sampled_from([2, 4, 8]))
            lo = draw(st.integers(1, 3))
            hi = draw(st.integers(lo, 4))
            count = draw(st.integers(lo, hi))
            placed = place_workers([8 - used[n] for n in nodes], count, gpus)
            if placed is None:
                continue
            for i in placed:
                used[nodes[i]] += gpus
            last = draw(st.sampled_from([None, NOW - 10, NOW - 1000]))
            jobs.append(
                ElasticGang(
                    f"e{n_jobs}",
                    name,
                    gpus,
                    lo,
                    hi,
                    tuple(nodes[i] for i in placed),
                    gpu_type=types[p],
                    priority=draw(st.integers(0, 2)),
                    last_resize_s=last,
                )
            )
            n_jobs += 1
        states = []
        for n in nodes:
            other = draw(st.integers(0, 8 - used[n]))
            states.append(NodeState(n, NodePhase.READY, 8, used_gpus=used[n] + other))
            if other and draw(st.booleans()):
                releasing[n] = draw(st.integers(1, other))
        spec = PoolSpec(name, 8, 20, 8.0 + p, gpu_type=types[p])
        pools.append(PoolState(spec, tuple(states)))
    pending = [
        Gang(f"g{i}", 0.0, draw(st.integers(1, 3)), draw(st.sampled_from([4, 8])),
             gpu_type=draw(st.sampled_from(types)), priority=draw(st.integers(0, 2)))
        for i in range(draw(st.integers(0, 3)))
    ]  # fmt: skip
    wanted = {g.job_id for g in pending if draw(st.booleans())}
    return pools, jobs, pending, wanted, releasing


@settings(max_examples=300, deadline=None)
@given(scenes())
def test_resizes_keep_every_invariant(scene):
    pools, jobs, pending, wanted, releasing = scene
    out = plan_resizes(
        now_s=NOW,
        pools=pools,
        elastic=jobs,
        pending=pending,
        scale_up_for=wanted,
        releasing_gpus=releasing,
        min_interval_s=300,
    )
    by_id = {j.job_id: j for j in jobs}
    pool_of = {n.name: p for p in pools for n in p.nodes}
    blocked = {p.name for p in pools for g in pending if p.spec.accepts(g)}
    covered_by_shrink: set[str] = set()
    grown = Counter()
    assert len({r.job_id for r in out.resizes}) == len(out.resizes)
    for r in out.resizes:
        job = by_id[r.job_id]
        assert job.min_workers <= r.to_workers <= job.max_workers
        assert job.min_workers < job.max_workers, "a fixed-size job was resized"
        assert job.last_resize_s is None or NOW - job.last_resize_s >= 300
        assert r.from_workers == job.workers
        if r.grows:
            assert r.nodes[: job.workers] == job.nodes
            assert job.pool not in blocked
            for n in r.nodes[job.workers :]:
                assert pool_of[n].name == job.pool
                grown[n] += job.gpus_per_worker
        else:
            assert r.to_workers < r.from_workers
            assert not Counter(r.nodes) - Counter(job.nodes)
            assert r.made_room_for and set(r.made_room_for) <= wanted
            gangs = {g.job_id: g for g in pending}
            assert all(gangs[g].priority >= job.priority for g in r.made_room_for)
            covered_by_shrink |= set(r.made_room_for)
    for p in pools:
        for n in p.nodes:
            assert grown[n.name] <= n.free_gpus, "grew onto GPUs that are not free"
    assert set(out.covered) <= wanted
    assert covered_by_shrink <= set(out.covered)
    # With one gang to make room for: covered means it fits in a pool that can run it, on
    # free GPUs, GPUs being released and those of the released workers; uncovered means it
    # did not fit on the first two alone (else no room needed making).
    targets = [g for g in pending if g.job_id in wanted]
    if len(targets) != 1:
        return
    (gang,) = targets
    room = {n.name: n.free_gpus + releasing.get(n.name, 0) for p in pools for n in p.nodes}
    for r in out.resizes:
        if not r.grows:
            job = by_id[r.job_id]
            for n, count in (Counter(job.nodes) - Counter(r.nodes)).items():
                room[n] += count * job.gpus_per_worker
    fits_now = [
        p.name
        for p in pools
        if p.spec.accepts(gang)
        and place_workers([room[n.name] for n in p.nodes], gang.workers, gang.gpus_per_worker)
        is not None
    ]
    if gang.job_id in out.covered:
        assert fits_now, "a shrink that does not make the gang fit"
    else:
        assert not covered_by_shrink
        before = {n.name: n.free_gpus + releasing.get(n.name, 0) for p in pools for n in p.nodes}
        assert not any(
            p.spec.accepts(gang)
            and place_workers([before[n.name] for n in p.nodes], gang.workers, gang.gpus_per_worker)
            for p in pools
        )
