"""The domain types dlscaler's policy reasons about.

All of them are frozen: a snapshot is built once (by the controller from the API server,
or by the simulator from its model) and handed to ``decide()``, which never mutates it.
Times are seconds on one clock chosen by the caller (the simulator's clock starts at the
trace start; the controller's is the Unix epoch) and are always passed in, never read.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ANY_GPU_TYPE = ""
"""A gang whose ``gpu_type`` is empty runs on any GPU type; a pool whose ``gpu_type`` is
empty offers an unspecified type and accepts only such gangs."""

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Gang:
    """A job that starts all at once or not at all: ``workers`` pods of ``gpus_per_worker``.

    ``duration_s`` is known to the simulator (it comes from the trace) and unknown to the
    controller (``None``); policies other than ``oracle`` never read it.
    """

    job_id: str
    submit_s: float
    workers: int
    gpus_per_worker: int
    gpu_type: str = ANY_GPU_TYPE
    priority: int = 0
    queue: str = "default"
    duration_s: float | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"gang {self.job_id}: workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(
                f"gang {self.job_id}: gpus_per_worker must be >= 0, got {self.gpus_per_worker}"
            )

    @property
    def total_gpus(self) -> int:
        return self.workers * self.gpus_per_worker

    def fits_gpu_type(self, pool_gpu_type: str) -> bool:
        return self.gpu_type in (ANY_GPU_TYPE, pool_gpu_type)


def split_into_workers(num_gpus: int, max_gpus_per_worker: int) -> tuple[int, int]:
    """Split a job of ``num_gpus`` into equal workers of at most ``max_gpus_per_worker``.

    Trace rows give a GPU count, not a gang shape. We choose the fewest workers that divide
    the count evenly, so GPU-hours are conserved exactly (12 GPUs on 8-GPU nodes become
    2 x 6, not 2 x 8).
    """
    if num_gpus <= max_gpus_per_worker:
        return 1, num_gpus
    workers = math.ceil(num_gpus / max_gpus_per_worker)
    while num_gpus % workers:
        workers += 1
    return workers, num_gpus // workers


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A node group as the ``NodePool`` resource describes it."""

    name: str
    gpus_per_node: int
    max_nodes: int
    price_usd_per_hour: float
    provider: str = "fake"
    gpu_type: str = ANY_GPU_TYPE
    min_nodes: int = 0
    spot: bool = False
    provisioning_delay_s: float = 300.0
    idle_timeout_s: float | None = None
    """Per-pool override of the policy's idle timeout (``None``: use the policy's)."""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    taints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1:
            raise ValueError(f"pool {self.name}: gpus_per_node must be >= 1")
        if not 0 <= self.min_nodes <= self.max_nodes:
            raise ValueError(
                f"pool {self.name}: need 0 <= min_nodes <= max_nodes, "
                f"got min {self.min_nodes}, max {self.max_nodes}"
            )
        if self.price_usd_per_hour < 0:
            raise ValueError(f"pool {self.name}: price_usd_per_hour must be >= 0")

    def accepts(self, gang: Gang) -> bool:
        """Whether a gang could ever run here (type and per-worker size)."""
        return gang.fits_gpu_type(self.gpu_type) and gang.gpus_per_worker <= self.gpus_per_node

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.price_usd_per_hour / self.gpus_per_node


class NodePhase(enum.Enum):
    IN_FLIGHT = "in-flight"
    """Requested from the cloud, GPUs not yet allocatable. Counts towards capacity."""
    READY = "ready"
    DRAINING = "draining"
    """Chosen for removal: takes no new work, still bills until it is gone."""


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    phase: NodePhase
    gpus: int
    used_gpus: int = 0
    created_s: float = 0.0
    idle_since_s: float | None = None
    """When the node last became empty of GPU work (``None`` while it runs something)."""
    expected_ready_s: float | None = None
    """For in-flight nodes, when the caller expects them ready (``None``: unknown)."""

    @property
    def free_gpus(self) -> int:
        return 0 if self.phase is NodePhase.DRAINING else self.gpus - self.used_gpus


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool's spec plus what it has right now."""

    spec: PoolSpec
    nodes: tuple[NodeState, ...] = ()
    target_nodes: int | None = None
    """The target last asked of the provider (``None``: the number of live nodes)."""
    unavailable_until_s: float | None = None
    """Set after a capacity, quota or permanent error: the policy prefers other pools
    until then, and never grows this one."""
    _counts: Mapping[NodePhase, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Counted once: the policy asks for these many times per decision.
        ready = in_flight = 0
        for n in self.nodes:
            if n.phase is NodePhase.READY:
                ready += 1
            elif n.phase is NodePhase.IN_FLIGHT:
                in_flight += 1
        counts = {
            NodePhase.READY: ready,
            NodePhase.IN_FLIGHT: in_flight,
            NodePhase.DRAINING: len(self.nodes) - ready - in_flight,
        }
        object.__setattr__(self, "_counts", counts)

    @property
    def name(self) -> str:
        return self.spec.name

    def count(self, phase: NodePhase) -> int:
        return self._counts[phase]

    @property
    def ready_nodes(self) -> int:
        return self.count(NodePhase.READY)

    @property
    def in_flight_nodes(self) -> int:
        """Nodes asked for and not yet ready. A target above the listed nodes counts too:
        a cloud may accept a new target before it reports the instances."""
        listed = self.count(NodePhase.IN_FLIGHT)
        live = len(self.nodes) - self.count(NodePhase.DRAINING)
        unlisted = max(0, (self.target_nodes or 0) - live)
        return listed + unlisted

    @property
    def draining_nodes(self) -> int:
        return self.count(NodePhase.DRAINING)

    @property
    def live_nodes(self) -> int:
        """Ready plus in flight: what the pool will have once everything asked for arrives."""
        return self.ready_nodes + self.in_flight_nodes

    def available(self, now_s: float) -> bool:
        return self.unavailable_until_s is None or now_s >= self.unavailable_until_s


@dataclass(frozen=True, slots=True)
class RunningGang:
    gang: Gang
    started_s: float
    pool: str
    nodes: tuple[str, ...]
    expected_end_s: float | None = None
    """When the job is expected to finish (``None``: unknown). For ``oracle`` the simulator
    gives the true end. Otherwise it is the runtime regression's estimate (start + age +
    median remaining time given the age; :class:`predictors.runtime.RuntimeRegressor`)
    trained only on jobs finished by then: the simulator's in ``simulator.runtimes``, the
    controller's in ``controller.runtimes`` (finished DLJobs). ``predictive``'s
    consolidation and the queue-time estimate (:mod:`dlscaler.estimate`) read it."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """Quantiles of total GPU demand for the next ``len(values)`` steps of ``step_s``.

    ``quantiles[q][i]`` is the q-quantile of demanded GPUs over
    ``[start_s + i*step_s, start_s + (i+1)*step_s)``.
    """

    start_s: float
    step_s: float
    quantiles: Mapping[float, tuple[float, ...]]
    model: str = ""
    recent_error_ratio: float | None = None
    """Recent out-of-sample error of this model relative to the naive baseline (1.0 =
    no better than last value). The predictive policy ignores a forecast above its limit."""
    arrivals: tuple[Gang, ...] = ()
    """Perfect foresight (``oracle`` only): gangs that will be submitted in the horizon."""
    arrival_scenarios: tuple[tuple[Gang, ...], ...] = ()
    """Plausible sets of arrivals within the lead time: the gangs that arrived in past
    windows of that length (same time of day on earlier days, and the last hours). The
    predictive policy keeps room for a quantile of them (:mod:`dlscaler.policy.scenarios`)."""

    def horizon_s(self) -> float:
        lengths = [len(v) for v in self.quantiles.values()]
        return self.step_s * (min(lengths) if lengths else 0)

    def quantile_max(self, q: float, until_s: float) -> float:
        """Highest q-quantile of demand over ``[start_s, until_s)`` (0 when unknown)."""
        values = self.quantiles.get(q)
        if not values:
            return 0.0
        steps = max(1, math.ceil((until_s - self.start_s) / self.step_s))
        return max(values[:steps])


EMPTY_FORECAST = Forecast(start_s=0.0, step_s=1.0, quantiles=MappingProxyType({}))
