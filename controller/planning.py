"""The deciding half of a pass, without I/O: cluster objects in, what to do out.

Karpenter's split: :func:`plan_pass` computes everything that should change from one
snapshot (job transitions, admissions, the policy's Plan), and
:class:`controller.reconcile.Reconciler` performs it. Being pure, it can be fed the same
snapshot as the simulator and must reach the same decision (tests/controller).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from controller import lifecycle
from controller.admission import Admission, admit, running_gang, with_admissions
from controller.clock import parse_time
from controller.dljob import ADMITTED, QUEUED, RUNNING, JobView, PodView
from controller.snapshot import ClusterView, NodeView, PoolInput, build_view
from dlscaler.config import PolicyConfig
from dlscaler.model import EMPTY_FORECAST, Forecast, Gang, PoolState, RunningGang
from dlscaler.plan import Plan
from dlscaler.policy import decide

BackOff = Callable[[str, str], "float | None"]
"""``(pool, reason) -> unavailable_until_s``: back a pool off (the pool manager's)."""


@dataclass(frozen=True, slots=True)
class PassPlan:
    view: ClusterView
    steps: Mapping[str, lifecycle.JobStep]
    """Per DLJob uid."""
    admissions: tuple[Admission, ...]
    waiting: tuple[JobView, ...]
    """Queued gangs not admitted this pass: the policy's pending."""
    running: tuple[RunningGang, ...]
    pools: tuple[PoolState, ...]
    """The pools the policy saw (admitted workers already placed)."""
    plan: Plan
    decide_s: float = 0.0


def pods_by_job(pods: Sequence[PodView]) -> dict[str, list[PodView]]:
    out: dict[str, list[PodView]] = defaultdict(list)
    for pod in pods:
        if pod.job_uid:
            out[pod.job_uid].append(pod)
    return out


def plan_pass(
    *,
    now_s: float,
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    nodes: Sequence[NodeView],
    pools: Sequence[PoolInput],
    idle_since: Mapping[str, float],
    config: PolicyConfig,
    forecast: Forecast = EMPTY_FORECAST,
    max_provisioning_s: float = 900.0,
    back_off: BackOff | None = None,
    timer: Callable[[], float] | None = None,
    extra_pending: Sequence[Gang] = (),
    unschedulable_after_s: float = 300.0,
    restart_backoff: lifecycle.RestartBackoff = lifecycle.DEFAULT_BACKOFF,
    expected_ends: Callable[[Sequence[RunningGang]], Sequence[RunningGang]] | None = None,
) -> PassPlan:
    """``extra_pending``: other waiting demand the policy provisions for but the controller
    does not admit (DLService replicas the scheduler could not place). ``expected_ends``:
    gives running gangs their ``expected_end_s`` (the runtime regression's,
    :mod:`controller.runtimes`)."""
    by_job = pods_by_job(pods)
    node_names = frozenset(n.name for n in nodes)
    steps = {
        j.uid: lifecycle.step(
            j,
            by_job.get(j.uid, []),
            now_s,
            existing_nodes=node_names,
            unschedulable_after_s=unschedulable_after_s,
            backoff=restart_backoff,
        )
        for j in jobs
    }
    view = build_view(
        now_s=now_s,
        pools=pools,
        nodes=nodes,
        pods=pods,
        idle_since=idle_since,
        max_provisioning_s=max_provisioning_s,
    )
    view = _back_off_stuck(view, max_provisioning_s, back_off)

    pending: list[JobView] = []
    admissible: list[JobView] = []
    running: list[RunningGang] = []
    for job in jobs:
        phase = str(steps[job.uid].status.get("phase", job.phase))
        job_pods = by_job.get(job.uid, [])
        if phase == QUEUED and lifecycle.backing_off(job, steps[job.uid], now_s):
            continue  # a restarted gang waiting out its backoff asks for no GPUs yet
        if phase == QUEUED and not job.suspend:
            pending.append(job)
            if not any(p.active for p in job_pods):
                admissible.append(job)
        elif phase in (ADMITTED, RUNNING):
            running.append(_running(job, job_pods, view, now_s))
    admissions = admit(jobs=admissible, pools=view.pools, running=running, config=config)
    admitted = {a.job.job_id for a in admissions}
    pools_now = with_admissions(view.pools, admissions)
    waiting = [j for j in pending if j.job_id not in admitted]
    running += [running_gang(a.job, a.pool, now_s, a.nodes) for a in admissions]
    if expected_ends is not None:
        running = list(expected_ends(running))
    started = timer() if timer else 0.0
    plan = decide(
        now=now_s,
        pools=pools_now,
        pending=[*(j.gang() for j in waiting), *extra_pending],
        running=running,
        forecast=forecast,
        config=config,
    )
    took = (timer() - started) if timer else 0.0
    return PassPlan(
        view, steps, tuple(admissions), tuple(waiting), tuple(running), pools_now, plan, took
    )


def _back_off_stuck(
    view: ClusterView, max_provisioning_s: float, back_off: BackOff | None
) -> ClusterView:
    """Nodes that never became ready: back their pool off before the policy looks at it,
    so the gang goes to the next fitting pool in this very pass."""
    stuck = {name: obs for name, obs in view.observations.items() if obs.stuck}
    if not stuck or back_off is None:
        return view
    until: dict[str, float | None] = {}
    for name, obs in stuck.items():
        reason = (
            f"capacity: {obs.stuck} nodes not ready within {max_provisioning_s:.0f} s "
            "(max provisioning time)"
        )
        until[name] = back_off(name, reason)
    pools = tuple(
        replace(p, unavailable_until_s=until[p.name]) if p.name in until else p for p in view.pools
    )
    return replace(view, pools=pools)


def _running(job: JobView, pods: Sequence[PodView], view: ClusterView, now_s: float) -> RunningGang:
    current = [p for p in pods if p.attempt == job.attempt and p.active]
    nodes = [p.holds_node for p in current if p.holds_node] or list(job.worker_nodes().values())
    pool = next((view.node_pool[n] for n in nodes if n in view.node_pool), "")
    started = parse_time(job.status.get("admittedTime")) or now_s
    return running_gang(job, pool, started, nodes)
