"""What no policy can beat: repacking bounds on provisioned GPU-hours, by longest wait.

**No waits.** If every job starts at its submit time (wait 0) and the scheduler could move
running workers between nodes for free at every instant, a pool of ``G``-GPU nodes needs
``ceil(D(t) / G)`` nodes at time ``t``, where ``D(t)`` is the GPUs of the jobs running
then. Nodes boot instantly and vanish the moment they are not needed. Any real policy
whose jobs all start at submit (so ``D(t)`` is the same) holds at least that many nodes at
every instant: it cannot repack, and its nodes boot and idle. So

    bound(0) = integral of ceil(D(t) / G) * G dt        (GPU-hours)

is a lower bound on the GPU-hours (and, at the cheapest GPU-hour price, the cost) of any
policy with zero waits.

**Waits of at most ``W``.** A job submitted at ``r`` that runs for ``d > W`` and starts
anywhere in ``[r, r + W]`` is running throughout ``[r + W, r + d)`` whatever the policy:
that is its *compulsory part* (as in cumulative scheduling). With ``D_W(t)`` the GPUs of the
compulsory parts running at ``t``, every policy whose longest wait is at most ``W`` holds at
least ``ceil(D_W(t) / G)`` nodes at every instant, and in all at least the jobs' own
GPU-hours, so

    bound(W) = max(integral of ceil(D_W(t) / G) * G dt,  sum of GPUs * run time)

It never rises as ``W`` grows. :func:`wait_needed` turns it around: a ``W`` whose bound is
still above a cost, i.e. a wait that *some* job must exceed in any policy that costs that
little. That is how ``benchmarks/policy_bench.py`` shows whether a cost target on a trace
can be met without holding jobs back.

With pools of different node sizes the ceiling is dropped (``G = 1``): still a bound, but
a loose one. Jobs that no pool can run are left out, as the simulator leaves them out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlscaler.config import PoolModel
from dlscaler.trace import Trace
from simulator.plot import running_level


@dataclass(frozen=True, slots=True)
class Bound:
    gpu_hours: float
    cost_usd: float
    node_gpus: int
    """The ``G`` of the ceiling: the pools' common node size, or 1 if they differ."""
    max_wait_s: float = 0.0
    """The longest wait allowed to the policies bounded (0: every job starts at submit)."""

    def as_dict(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {}
        if self.max_wait_s == 0:
            out["name"] = "no-wait repacking bound"
            policies = "that starts every job at its submit time"
        else:
            out |= {"name": "bounded-wait repacking bound", "max_wait_s": self.max_wait_s}
            policies = f"in which no job waits more than {self.max_wait_s:g} s"
        return out | {
            "gpu_hours": self.gpu_hours,
            "cost_usd": self.cost_usd,
            "node_gpus": self.node_gpus,
            "meaning": f"least GPU-hours of any policy {policies}, even with free live "
            "migration and instant boots",
        }


@dataclass(frozen=True, slots=True)
class _Jobs:
    """The runnable jobs as arrays, and what every bound of one trace and pools shares."""

    submit_s: np.ndarray
    duration_s: np.ndarray
    gpus: np.ndarray
    node_gpus: int
    usd_per_gpu_hour: float

    @property
    def work_gpu_hours(self) -> float:
        return float(np.sum(self.gpus * self.duration_s)) / 3600.0


def _jobs(trace: Trace, pools: Sequence[PoolModel]) -> _Jobs:
    if not pools:
        raise ValueError("a repacking bound needs at least one pool")
    sizes = {p.gpus_per_node for p in pools}
    runnable = [
        j
        for j in trace.jobs
        if any(j.fits_gpu_type(p.gpu_type) and j.gpus_per_worker <= p.gpus_per_node for p in pools)
    ]
    return _Jobs(
        submit_s=np.array([j.submit_s for j in runnable], dtype=float),
        duration_s=np.array([j.duration_s or 0.0 for j in runnable], dtype=float),
        gpus=np.array([j.total_gpus for j in runnable], dtype=float),
        node_gpus=sizes.pop() if len(sizes) == 1 else 1,
        usd_per_gpu_hour=min(p.price_usd_per_hour / p.gpus_per_node for p in pools),
    )


def _bound(jobs: _Jobs, max_wait_s: float) -> Bound:
    # The compulsory part of each job: [submit + W, submit + duration), if not empty.
    begin = jobs.submit_s + max_wait_s
    end = jobs.submit_s + jobs.duration_s
    keep = end > begin
    node_gpu_hours = 0.0
    if keep.any():
        times = np.unique(np.concatenate([begin[keep], end[keep]]))
        # GPUs of compulsory parts running on [times[i], times[i + 1])
        level = running_level(begin[keep], end[keep], jobs.gpus[keep], times[:-1])
        nodes = np.ceil(level / jobs.node_gpus - 1e-9)
        node_gpu_hours = float(np.sum(nodes * jobs.node_gpus * np.diff(times))) / 3600.0
    # The parts outside the compulsory ones still run somewhere (without waits there are
    # none, and whole nodes already hold at least the work).
    gpu_hours = max(node_gpu_hours, jobs.work_gpu_hours)
    return Bound(gpu_hours, gpu_hours * jobs.usd_per_gpu_hour, jobs.node_gpus, max_wait_s)


def no_wait_bound(trace: Trace, pools: Sequence[PoolModel]) -> Bound:
    """The least GPU-hours of any policy that starts every job at its submit time."""
    return _bound(_jobs(trace, pools), 0.0)


def wait_bound(trace: Trace, pools: Sequence[PoolModel], max_wait_s: float) -> Bound:
    """The least GPU-hours of any policy in which no job waits more than ``max_wait_s``."""
    if not max_wait_s >= 0:
        raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
    return _bound(_jobs(trace, pools), float(max_wait_s))


def wait_needed(
    trace: Trace, pools: Sequence[PoolModel], cost_usd: float, *, resolution_s: float = 60.0
) -> float | None:
    """A wait ``W`` (a multiple of ``resolution_s``) that some job must exceed in any policy
    costing at most ``cost_usd``: the bound with longest wait ``W`` is still dearer.
    ``inf`` when not even the jobs' own GPU-hours fit in the cost (no policy can run them
    all for that); ``None`` when the no-wait bound already fits (the bounds then say
    nothing: a policy without waits might cost that little)."""
    # The bisection below stops once its bracket is within the resolution: at 0 or below it
    # never would. A NaN cost fits no bound, and would come back as a wait all the same.
    if not resolution_s > 0:
        raise ValueError(f"resolution_s must be > 0 seconds, got {resolution_s}")
    if math.isnan(cost_usd):
        raise ValueError("cost_usd must be a number of USD, got NaN")
    jobs = _jobs(trace, pools)
    if _bound(jobs, 0.0).cost_usd <= cost_usd:
        return None
    if jobs.work_gpu_hours * jobs.usd_per_gpu_hour > cost_usd:
        return math.inf
    # Past the longest run time nothing is compulsory and the bound is the work itself,
    # which fits: the answer lies below that.
    low, high = 0.0, float(jobs.duration_s.max(initial=0.0))
    while high - low > resolution_s:
        mid = (low + high) / 2
        if _bound(jobs, mid).cost_usd <= cost_usd:
            high = mid
        else:
            low = mid
    return math.floor(low / resolution_s) * resolution_s
