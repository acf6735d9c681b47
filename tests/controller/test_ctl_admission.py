"""Admission: queue order, cheapest pool first, all-or-nothing, elastic sizes."""

from __future__ import annotations

from ctl_objects import T0, dljob

from controller.admission import admit, with_admissions
from controller.dljob import parse_dljob
from dlscaler.config import PolicyConfig
from dlscaler.model import NodePhase, NodeState, PoolSpec, PoolState


def pool(name, free, *, price=8.0, gpu_type="", in_flight=0):
    nodes = [
        NodeState(f"{name}-{i}", NodePhase.READY, 8, used_gpus=8 - f) for i, f in enumerate(free)
    ]
    nodes += [NodeState(f"{name}-f{i}", NodePhase.IN_FLIGHT, 8) for i in range(in_flight)]
    spec = PoolSpec(
        name=name, gpus_per_node=8, max_nodes=10, price_usd_per_hour=price, gpu_type=gpu_type
    )
    return PoolState(spec=spec, nodes=tuple(nodes))


def job(name, **kw):
    return parse_dljob(dljob(name, **kw))


def names(admissions):
    return [(a.job.name, a.pool, a.nodes) for a in admissions]


def test_a_gang_is_admitted_on_ready_nodes_only_all_or_nothing():
    pools = [pool("a", [8], in_flight=1)]
    out = admit(jobs=[job("j", workers=2)], pools=pools, running=[], config=PolicyConfig())
    assert out == []  # one ready node; the in-flight one cannot take a worker yet
    pools = [pool("a", [8, 8])]
    out = admit(jobs=[job("j", workers=2)], pools=pools, running=[], config=PolicyConfig())
    assert names(out) == [("j", "a", ("a-0", "a-1"))]


def test_the_cheapest_pool_per_gpu_is_tried_first():
    pools = [pool("dear", [8, 8], price=20.0), pool("cheap", [8, 8], price=10.0)]
    out = admit(jobs=[job("j", workers=1)], pools=pools, running=[], config=PolicyConfig())
    assert names(out) == [("j", "cheap", ("cheap-0",))]


def test_fifo_with_backfill_lets_a_small_later_gang_start():
    jobs = [job("big", workers=3, created_s=T0), job("small", workers=1, created_s=T0 + 1)]
    out = admit(jobs=jobs, pools=[pool("a", [8, 8])], running=[], config=PolicyConfig())
    assert names(out) == [("small", "a", ("a-0",))]


def test_priority_ordering_admits_the_higher_priority_gang_first():
    jobs = [
        job("low", workers=2, created_s=T0),
        job("high", workers=2, priority=5, created_s=T0 + 1),
    ]
    config = PolicyConfig(queue_ordering="priority")
    out = admit(jobs=jobs, pools=[pool("a", [8, 8])], running=[], config=config)
    assert [a.job.name for a in out] == ["high"]
    fifo = admit(jobs=jobs, pools=[pool("a", [8, 8])], running=[], config=PolicyConfig())
    assert [a.job.name for a in fifo] == ["low"]


def test_a_gang_only_goes_to_pools_of_its_gpu_type():
    pools = [pool("t4", [8, 8], gpu_type="t4", price=1.0), pool("a100", [8], gpu_type="a100")]
    out = admit(
        jobs=[job("j", workers=1, gpu_type="a100")], pools=pools, running=[], config=PolicyConfig()
    )
    assert names(out) == [("j", "a100", ("a100-0",))]


def test_an_elastic_job_starts_with_as_many_workers_as_fit():
    elastic = job("e", workers=None, min_workers=1, max_workers=4, gpus_per_worker=4)
    out = admit(jobs=[elastic], pools=[pool("a", [8, 4])], running=[], config=PolicyConfig())
    assert len(out) == 1
    assert out[0].workers == 3
    tight = admit(jobs=[elastic], pools=[pool("a", [2])], running=[], config=PolicyConfig())
    assert tight == []


def test_workers_of_admitted_gangs_hold_their_gpus_in_the_pools_the_policy_sees():
    pools = [pool("a", [8, 8, 8])]
    out = admit(jobs=[job("j", workers=2)], pools=pools, running=[], config=PolicyConfig())
    after = with_admissions(pools, out)
    used = {n.name: n.used_gpus for n in after[0].nodes}
    assert sorted(used.values()) == [0, 8, 8]
    assert all(n.idle_since_s is None for n in after[0].nodes if n.used_gpus)
