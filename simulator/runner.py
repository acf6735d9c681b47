"""Replays a trace through ``dlscaler.policy.decide`` on simulated pools.

The loop: jobs arrive and finish, nodes boot (or fail to); after each instant's events the
scheduler admits pending gangs that fit on ready nodes (all workers or none, in the
configured queue order), then the policy decides and its Plan is applied to the pools,
exactly as the controller applies it to the cloud. Decisions happen every
``decision_interval_s``, after events (``decide_on_events``) and when a Plan asks to be
woken (``next_decision_s``: an idle timeout expiring, an arrival the oracle knows of).

The simulator shows the policy only what a controller could see at that instant: pending
and running gangs (without their durations), node states, a forecast built from the
demand observed so far, and running gangs' expected ends estimated by a runtime regression
trained on the jobs finished so far (:mod:`simulator.runtimes`). Only the ``oracle`` is
given the future (the true ends and arrivals).
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.model import EMPTY_FORECAST, Forecast, Gang, NodePhase, RunningGang
from dlscaler.placement import admission_key
from dlscaler.plan import Plan
from dlscaler.policy import decide
from dlscaler.policy.reactive import running_gpus_by_queue
from dlscaler.queueing import offer_all
from dlscaler.trace import Trace
from simulator.cluster import SimNode, SimPool
from simulator.engine import Engine
from simulator.runtimes import RuntimeEstimates

FINISH, READY, SUBMIT, WAKE, TICK = range(5)


class ForecastSource(Protocol):
    """What a controller's forecaster sees: the demand history, one point at a time, and
    (if the source has an ``observe_arrival(gang)`` method) each gang as it is submitted,
    its duration hidden."""

    def observe(self, now_s: float, demand_gpus: float) -> None: ...

    def forecast(self, now_s: float) -> Forecast: ...


@dataclass(frozen=True, slots=True)
class SimOptions:
    seed: int = 0
    decision_interval_s: float | None = None
    """``None``: the policy config's ``decision_interval_s``."""
    decide_on_events: bool = True
    sample_step_s: float = 300.0
    oracle_lookahead_s: float | None = None
    """How far ahead the oracle sees arrivals (``None``: the longest provisioning delay
    plus one decision interval)."""
    keep_reasons: int = 200
    warm_start: bool = True
    """The trace's first instant is the cluster as it was when the trace began: the jobs
    submitted then were already running, so the nodes asked for at that instant are ready
    at once (and billed from then). Off: they boot like any other (a cold start, where
    every job of a snapshot-style trace waits one boot)."""
    runtime_estimates: bool | None = None
    """Estimate running gangs' ends with the runtime regression (``oracle`` is given the
    true ends instead). ``None``: for ``predictive``, the policy that reads them (its
    consolidation), and whenever an estimator is passed in; the others never read them, and
    estimating costs a replay of months about half again its time. True: for every
    policy; False: for none (``expected_end_s`` stays unknown)."""


@dataclass(slots=True)
class JobRecord:
    gang: Gang
    start_s: float | None = None
    end_s: float | None = None
    pool: str = ""


@dataclass(slots=True)
class Timeline:
    t_s: list[float] = field(default_factory=list)
    demand_gpus: list[float] = field(default_factory=list)
    running_gpus: list[float] = field(default_factory=list)
    provisioned_gpus: list[float] = field(default_factory=list)
    ready_gpus: list[float] = field(default_factory=list)
    forecast_p50: list[float] = field(default_factory=list)
    forecast_p90: list[float] = field(default_factory=list)


@dataclass(slots=True)
class SimResult:
    policy: str
    config: PolicyConfig
    trace: Trace
    pools: list[SimPool]
    jobs: list[JobRecord]
    end_s: float
    timeline: Timeline
    scale_events: int
    sim_events: int
    decisions: int
    fallbacks: int
    wall_s: float
    reasons: list[str]
    unschedulable: dict[str, str]
    cordons: int = 0
    """Busy nodes the policy cordoned so they would empty and go (``predictive``)."""
    uncordons: int = 0


ProgressFn = Callable[[float], None]


class Simulation:
    def __init__(
        self,
        trace: Trace,
        pools: Sequence[PoolModel],
        config: PolicyConfig,
        *,
        options: SimOptions | None = None,
        forecast_source: ForecastSource | None = None,
        progress: ProgressFn | None = None,
        runtimes: RuntimeEstimates | None = None,
    ) -> None:
        """``runtimes``: the estimator of running gangs' ends (default: a fresh one with the
        default refit schedule, when ``options.runtime_estimates`` asks for one)."""
        self.trace = trace
        self.options = options or SimOptions()
        self._warm_until_s = -math.inf
        self.config = config
        self.pools = [SimPool.of(m, self.options.seed) for m in sorted(pools, key=lambda m: m.name)]
        self.pool_by_name = {p.spec.name: p for p in self.pools}
        # The order in which the scheduler tries pools for a gang: cheapest per GPU first.
        self.admission_order = sorted(self.pools, key=lambda p: admission_key(p.spec))
        self.forecast_source = forecast_source
        self.progress = progress
        self.engine: Engine[tuple[int, object]] = Engine()
        self.records = {g.job_id: JobRecord(g) for g in trace.jobs}
        self.pending: dict[str, Gang] = {}
        self.visible: dict[str, Gang] = {}
        """Pending gangs as the policy sees them: without their run time (but the oracle's)."""
        self.running: dict[str, tuple[RunningGang, list[SimNode]]] = {}
        self.timeline = Timeline()
        self.interval_s = self.options.decision_interval_s or config.decision_interval_s
        self.submit_times = [g.submit_s for g in trace.jobs]
        max_delay = max((p.spec.provisioning_delay_s for p in self.pools), default=0.0)
        self.lookahead_s = self.options.oracle_lookahead_s or (max_delay + self.interval_s)
        self._capacity_epoch = 0
        self._admitted_epoch = -1
        self._new_submits: list[Gang] = []
        self._wakes: set[float] = set()
        self._next_sample_s = 0.0
        self._last_forecast: Forecast = EMPTY_FORECAST
        self.pending_gpus = 0
        self.running_gpus = 0
        self.scale_events = 0
        self.cordons = 0
        self.uncordons = 0
        self._cordoned: set[str] = set()
        """Nodes cordoned and not yet empty (removed as soon as they are)."""
        self.decisions = 0
        self.fallbacks = 0
        self.reasons: list[str] = []
        self.unschedulable: dict[str, str] = {}
        self.runtimes: RuntimeEstimates | None = None
        estimate = self.options.runtime_estimates
        if estimate is None:
            estimate = runtimes is not None or config.policy == "predictive"
        if config.policy != "oracle" and estimate:
            self.runtimes = runtimes or RuntimeEstimates()
        self._unestimated: list[str] = []
        """Gangs started since the last decision: no expected end yet."""
        self._due: list[tuple[float, str]] = []
        """A heap of (expected end, job id): estimates to revisit once they are overdue."""

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> SimResult:
        started = time.perf_counter()
        engine = self.engine
        for gang in self.trace.jobs:
            engine.schedule(gang.submit_s, SUBMIT, (SUBMIT, gang))
        first = self.trace.jobs[0].submit_s if self.trace.jobs else 0.0
        self._warm_until_s = first if self.options.warm_start else -math.inf
        engine.schedule(first, TICK, (TICK, None))
        self._next_sample_s = first
        decide_on_events = self.options.decide_on_events
        # Between events only the forecast (and the oracle's view of arrivals) changes; the
        # other policies state when time alone will change their mind (``next_decision_s``),
        # so for them a tick with nothing new since the last decision is skipped: same result.
        ticks_matter = self.config.policy in ("predictive", "oracle")
        arrival_sink = (
            getattr(self.forecast_source, "observe_arrival", None)
            if self.config.policy == "predictive"
            else None
        )
        dirty = True
        batches = 0
        while len(engine):
            batch = engine.pop_batch()
            now = engine.now_s
            self._sample_until(now)
            changed = ticked = tick = False
            for kind, obj in batch:
                if kind == SUBMIT:
                    assert isinstance(obj, Gang)
                    self.pending[obj.job_id] = obj
                    self.pending_gpus += obj.total_gpus
                    self._new_submits.append(obj)
                    # What a controller sees: a new job, no duration. Under a warm start the
                    # first instant's jobs were already there, not arrivals (on snapshot-style
                    # traces a burst that never happened, echoed at that hour for a week).
                    if arrival_sink is not None and now > self._warm_until_s:
                        arrival_sink(replace(obj, duration_s=None))
                    changed = True
                elif kind == FINISH:
                    assert isinstance(obj, str)
                    self._finish(obj, now)
                    changed = True
                elif kind == READY:
                    assert isinstance(obj, tuple)
                    self._node_ready(obj[0], obj[1], now)
                    changed = True
                elif kind == WAKE:
                    self._wakes.discard(now)
                    ticked = dirty = True
                else:
                    ticked = tick = True
            self._admit(now)
            dirty = dirty or changed
            if (changed and decide_on_events) or (ticked and (dirty or ticks_matter)):
                self._decide(now)
                dirty = False
                if self._capacity_epoch != self._admitted_epoch:
                    self._admit(now)  # the plan put cordoned nodes back in service
            # Only now is it known whether anything is left to happen: this instant's
            # events may have just admitted a gang or asked for nodes.
            if tick and (len(engine) or self.running):
                engine.schedule(now + self.interval_s, TICK, (TICK, None))
            batches += 1
            if self.progress is not None and batches % 2000 == 0:
                self.progress(now)
        end_s = engine.now_s
        self._sample_until(end_s + 1e-9)
        return SimResult(
            policy=self.config.policy,
            config=self.config,
            trace=self.trace,
            pools=self.pools,
            jobs=list(self.records.values()),
            end_s=end_s,
            timeline=self.timeline,
            scale_events=self.scale_events,
            sim_events=engine.processed,
            decisions=self.decisions,
            fallbacks=self.fallbacks,
            wall_s=time.perf_counter() - started,
            reasons=self.reasons,
            unschedulable=self.unschedulable,
            cordons=self.cordons,
            uncordons=self.uncordons,
        )

    # --- events --------------------------------------------------------------------------

    def _finish(self, job_id: str, now: float) -> None:
        running, nodes = self.running.pop(job_id)
        self.pool_by_name[running.pool].release(nodes, running.gang.gpus_per_worker, now)
        self.running_gpus -= running.gang.total_gpus
        self.records[job_id].end_s = now
        if self._cordoned:
            pool = self.pool_by_name[running.pool]
            for node in {n.name: n for n in nodes}.values():
                if node.name in self._cordoned and not node.used_gpus:
                    self._remove(pool, node.name, now, "cordoned, and now empty")
        if self.runtimes is not None:
            self.runtimes.record_finished(running.gang, running.started_s, now)
        self._capacity_epoch += 1

    def _node_ready(self, pool_name: str, node_name: str, now: float) -> None:
        pool = self.pool_by_name[pool_name]
        node = pool.nodes.get(node_name)
        if node is None or node.phase is not NodePhase.IN_FLIGHT:
            return
        if node.fails_boot:
            pool.boot_failures += 1
            pool.remove(node_name, now)
            self._record(now, f"{pool_name}: node {node_name} failed to boot; removed")
            return
        pool.mark_ready(node, now)
        self._capacity_epoch += 1

    # --- scheduling ----------------------------------------------------------------------

    def _admit(self, now: float) -> None:
        if not self.pending:
            self._new_submits.clear()
            return
        if self._capacity_epoch != self._admitted_epoch:
            candidates: Sequence[Gang] = list(self.pending.values())
            self._admitted_epoch = self._capacity_epoch
        else:
            # Capacity has not grown since the last full pass: only new arrivals can fit.
            candidates = [g for g in self._new_submits if g.job_id in self.pending]
        self._new_submits.clear()
        if not candidates:
            return
        usage = (
            running_gpus_by_queue([r for r, _ in self.running.values()])
            if self.config.queue_ordering == "fair-share"
            else None
        )

        def offer(gang: Gang) -> bool:
            for pool in self.admission_order:
                nodes = pool.try_place(gang)
                if nodes is not None:
                    self._start(gang, pool, nodes, now)
                    return True
            return False

        offer_all(
            candidates,
            self.config.queue_ordering,
            offer,
            running_gpus_by_queue=usage,
            weights=self.config.fair_share_weights,
        )

    def _start(self, gang: Gang, pool: SimPool, nodes: list[SimNode], now: float) -> None:
        pool.occupy(nodes, gang.gpus_per_worker)
        self.pending_gpus -= gang.total_gpus
        self.running_gpus += gang.total_gpus
        duration = gang.duration_s or 0.0
        expected_end = now + duration if self.config.policy == "oracle" else None
        running = RunningGang(
            gang=gang if self.config.policy == "oracle" else self._visible(gang),
            started_s=now,
            pool=pool.spec.name,
            nodes=tuple(n.name for n in nodes),
            expected_end_s=expected_end,
        )
        self.running[gang.job_id] = (running, nodes)
        self.visible.pop(gang.job_id, None)
        if self.runtimes is not None:
            self._unestimated.append(gang.job_id)
        del self.pending[gang.job_id]
        record = self.records[gang.job_id]
        record.start_s = now
        record.pool = pool.spec.name
        self.engine.schedule(now + duration, FINISH, (FINISH, gang.job_id))

    # --- deciding ------------------------------------------------------------------------

    def _forecast(self, now: float) -> Forecast:
        if self.config.policy == "oracle":
            lo = bisect.bisect_right(self.submit_times, now)
            hi = bisect.bisect_right(self.submit_times, now + self.lookahead_s)
            return replace(EMPTY_FORECAST, start_s=now, arrivals=self.trace.jobs[lo:hi])
        if self.forecast_source is not None and self.config.policy == "predictive":
            return self.forecast_source.forecast(now)
        return EMPTY_FORECAST

    def _visible(self, gang: Gang) -> Gang:
        """The gang as a controller sees it: without its run time (made once per job)."""
        seen = self.visible.get(gang.job_id)
        if seen is None:
            # Made directly: dataclasses.replace costs several times more, once per job.
            g = gang
            seen = Gang(g.job_id, g.submit_s, g.workers, g.gpus_per_worker, g.gpu_type,
                        g.priority, g.queue, None, g.attributes)  # fmt: skip
            self.visible[gang.job_id] = seen
        return seen

    def _visible_pending(self) -> list[Gang]:
        if self.config.policy == "oracle":
            return list(self.pending.values())
        return [self._visible(g) for g in self.pending.values()]

    def _estimate_ends(self, now: float) -> None:
        """Give running gangs an expected end: those started since the last decision, those
        whose expected end has passed (they get the longer remaining time their age implies),
        and all of them after a refit. A gang keeps its estimate otherwise."""
        runtimes = self.runtimes
        if runtimes is None:
            return
        if runtimes.maybe_refit(now):
            ids = list(self.running)
            self._due.clear()
        else:
            ids = [j for j in self._unestimated if j in self.running]
            while self._due and self._due[0][0] <= now:
                end, job_id = heapq.heappop(self._due)
                entry = self.running.get(job_id)
                if entry is not None and entry[0].expected_end_s == end:
                    ids.append(job_id)
        self._unestimated.clear()
        if not ids:
            return
        entries = [self.running[j] for j in ids]
        remaining = runtimes.remaining_s(
            [r.gang for r, _ in entries], [now - r.started_s for r, _ in entries]
        )
        for job_id, (r, nodes), left in zip(ids, entries, remaining.tolist(), strict=True):
            end = now + left
            # Made directly: dataclasses.replace costs several times more, once per estimate.
            self.running[job_id] = (RunningGang(r.gang, r.started_s, r.pool, r.nodes, end), nodes)
            heapq.heappush(self._due, (end, job_id))

    def _decide(self, now: float) -> None:
        self._estimate_ends(now)
        forecast = self._forecast(now)
        self._last_forecast = forecast
        plan = decide(
            now=now,
            pools=[p.snapshot() for p in self.pools],
            pending=self._visible_pending(),
            running=[r for r, _ in self.running.values()],
            forecast=forecast,
            config=self.config,
        )
        self.decisions += 1
        self.fallbacks += plan.fell_back
        self._apply(plan, now)

    def _apply(self, plan: Plan, now: float) -> None:
        for up in plan.scale_ups:
            pool = self.pool_by_name[up.pool]
            warm = now <= self._warm_until_s  # the cluster the trace began with
            for node in pool.add_nodes(up.added_nodes, now, instant=warm):
                self.engine.schedule(node.ready_s, READY, (READY, (up.pool, node.name)))
            self.scale_events += 1
            self._record(now, f"{up.pool}: {up.from_nodes} -> {up.to_nodes} nodes: {up.reason}")
        for removal in plan.removals:
            pool = self.pool_by_name[removal.pool]
            victim = pool.nodes.get(removal.node)
            if victim is None or victim.used_gpus:
                raise RuntimeError(
                    f"policy {plan.policy} asked to remove {removal.node}, which is "
                    f"{'gone' if victim is None else 'running work'}"
                )
            self._remove(pool, removal.node, now, removal.reason)
        for back in plan.uncordons:
            pool = self.pool_by_name[back.pool]
            held = pool.nodes.get(back.node)
            if held is None or held.phase is not NodePhase.DRAINING:
                raise RuntimeError(
                    f"policy {plan.policy} asked to uncordon {back.node}: not cordoned"
                )
            pool.uncordon(held)
            self._cordoned.discard(held.name)
            self.uncordons += 1
            self._capacity_epoch += 1
            self._record(now, f"{back.pool}: uncordoned {back.node}: {back.reason}")
        for cordon in plan.cordons:
            pool = self.pool_by_name[cordon.pool]
            busy = pool.nodes.get(cordon.node)
            if busy is None or busy.phase is not NodePhase.READY:
                raise RuntimeError(f"policy {plan.policy} asked to cordon {cordon.node}: not ready")
            pool.cordon(busy)
            self._cordoned.add(busy.name)
            self.cordons += 1
            self._record(now, f"{cordon.pool}: cordoned {cordon.node}: {cordon.reason}")
            if not busy.used_gpus:
                self._remove(pool, busy.name, now, "cordoned while empty")
        for note in plan.notes:
            if note.unschedulable and note.job_id not in self.unschedulable:
                self.unschedulable[note.job_id] = note.reason
        wake = plan.next_decision_s
        if wake is not None and wake > now and wake not in self._wakes:
            self._wakes.add(wake)
            self.engine.schedule(wake, WAKE, (WAKE, None))

    def _remove(self, pool: SimPool, name: str, now: float, reason: str) -> None:
        self._cordoned.discard(name)
        pool.remove(name, now)
        pool.removals += 1
        self.scale_events += 1
        self._record(now, f"{pool.spec.name}: removed {name}: {reason}")

    def _record(self, now: float, line: str) -> None:
        if len(self.reasons) < self.options.keep_reasons:
            self.reasons.append(f"t={now:.0f}s {line}")

    # --- sampling ------------------------------------------------------------------------

    def _sample_until(self, now: float) -> None:
        """Record the (piecewise-constant) state at every sample step before ``now``."""
        step = self.options.sample_step_s
        if self._next_sample_s >= now:
            return
        pending, running = self.pending_gpus, self.running_gpus
        provisioned = sum(p.provisioned_gpus for p in self.pools)
        ready = sum(p.ready_gpus for p in self.pools)
        fc = self._last_forecast
        p50 = fc.quantile_max(0.5, fc.start_s + fc.step_s) if fc.quantiles else float("nan")
        p90 = fc.quantile_max(0.9, fc.start_s + fc.step_s) if fc.quantiles else float("nan")
        tl = self.timeline
        while self._next_sample_s < now:
            t = self._next_sample_s
            tl.t_s.append(t)
            tl.demand_gpus.append(pending + running)
            tl.running_gpus.append(running)
            tl.provisioned_gpus.append(provisioned)
            tl.ready_gpus.append(ready)
            tl.forecast_p50.append(p50)
            tl.forecast_p90.append(p90)
            if self.forecast_source is not None:
                self.forecast_source.observe(t, pending + running)
            self._next_sample_s = t + step


def simulate(
    trace: Trace,
    pools: Sequence[PoolModel],
    config: PolicyConfig,
    *,
    options: SimOptions | None = None,
    forecast_source: ForecastSource | None = None,
    progress: ProgressFn | None = None,
    runtimes: RuntimeEstimates | None = None,
) -> SimResult:
    return Simulation(
        trace,
        pools,
        config,
        options=options,
        forecast_source=forecast_source,
        progress=progress,
        runtimes=runtimes,
    ).run()
