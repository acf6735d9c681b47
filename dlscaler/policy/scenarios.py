"""Room for the gangs that will arrive within one boot: sampled arrival scenarios.

A forecast of *total* GPU demand says how many GPUs will be wanted, not in what shape: 40
free GPUs spread one or two per node hold forty 1-GPU jobs but not one 2x8-GPU gang. And
a new gang waits for a boot exactly when the free capacity cannot hold it. So the
predictive policy also keeps room for *arrivals*, in their shapes.

The forecast carries ``arrival_scenarios``: the sets of gangs that arrived in recent past
windows as long as the lead time (the same time of day on earlier days, and the last few
hours). For each, :class:`ArrivalRoom` counts the nodes the pools would have to add to place
those gangs on the free GPUs they will have (ready and in-flight nodes, after the pending
gangs), workers best-fit as the scheduler places them. The policy provisions for the
``quantile`` of those counts: at 0.9, the arrivals of nine windows in ten would find room
without waiting for a boot.

Where an arriving gang goes, with several pools:

- on free capacity, into the first pool that takes it (GPU type and worker size) and holds
  all its workers, in the scheduler's order (:func:`dlscaler.placement.admission_key`:
  cheapest per GPU first), so a dearer pool's free nodes are room for a gang that would
  rather run in a cheaper one; capacity one gang took is gone for the next (nothing is
  counted twice);
- otherwise onto fresh nodes of its *home*: the first pool in expander order that takes it,
  where the policy grows room (its free GPUs are used first, worker by worker).

Gangs that the fewest pools take go first, then the largest workers (:func:`plan_runs`).
With one pool this is plain best-fit placement of all the workers, largest first
(:func:`extra_nodes`).

Free capacity is kept as a histogram (nodes by free GPUs) and workers of one size are
placed in bulk, so a scenario costs a few operations per gang shape whatever the cluster
size.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from operator import attrgetter
from typing import NamedTuple

from dlscaler.model import Gang, PoolSpec
from dlscaler.placement import admission_key


def free_histogram(free: Sequence[int], gpus_per_node: int) -> list[int]:
    """``hist[f]`` = how many nodes have ``f`` free GPUs (``0 <= f <= gpus_per_node``)."""
    hist = [0] * (gpus_per_node + 1)
    for f in free:
        hist[min(max(f, 0), gpus_per_node)] += 1
    return hist


def _place(hist: list[int], gpus: int, workers: int) -> int:
    """Place ``workers`` workers of ``gpus`` GPUs on ``hist`` (changed in place), each on
    the node with the fewest free GPUs that holds it; returns how many found no node.

    Best fit one worker at a time fills the tightest node until it holds no more, then the
    next: a node with ``f`` free GPUs takes ``f // gpus`` workers in a row, because every
    node between ``gpus`` and ``f`` free GPUs is already full. So all the nodes of one
    histogram bin are filled at once."""
    for f in range(gpus, len(hist)):
        nodes = hist[f]
        if not nodes:
            continue
        per_node = f // gpus
        filled = min(nodes, workers // per_node)
        if filled:
            hist[f] -= filled
            hist[f - per_node * gpus] += filled
            workers -= filled * per_node
        if not workers:
            return 0
        if hist[f]:  # fewer workers left than one node holds
            hist[f] -= 1
            hist[f - workers * gpus] += 1
            return 0
    return workers


def _holds(hist: Sequence[int], gpus: int, workers: int) -> bool:
    """Whether best fit places all ``workers`` on ``hist`` (each node holds ``f // gpus``)."""
    room = 0
    for f in range(gpus, len(hist)):
        room += hist[f] * (f // gpus)
        if room >= workers:
            return True
    return False


def _grow(hist: list[int], gpus: int, workers: int) -> int:
    """Place the workers best fit, opening fresh nodes for those that find none; returns
    the fresh nodes (filled one after the other, as best fit does)."""
    left = _place(hist, gpus, workers)
    if not left:
        return 0
    size = len(hist) - 1
    per_node = size // gpus
    fresh, rest = divmod(left, per_node)
    hist[size - per_node * gpus] += fresh
    if rest:
        hist[size - rest * gpus] += 1
        fresh += 1
    return fresh


def extra_nodes(hist: Sequence[int], gangs: Sequence[Gang], gpus_per_node: int) -> int:
    """Fresh nodes needed to place every worker of ``gangs`` on top of ``hist``.

    Workers go largest first, each to the node with the least free GPUs that holds it
    (best fit, as :func:`dlscaler.placement.place_workers`); a worker that fits nowhere
    opens a fresh node. Workers larger than a node are ignored (no pool node holds them).
    """
    workers_by_size: dict[int, int] = {}
    for g in gangs:
        if 0 < g.gpus_per_worker <= gpus_per_node:
            size = g.gpus_per_worker
            workers_by_size[size] = workers_by_size.get(size, 0) + g.workers
    h = list(hist)
    return sum(_grow(h, size, n) for size, n in sorted(workers_by_size.items(), reverse=True))


class Run(NamedTuple):
    """Arrivals of one shape, placed together."""

    gpus: int
    """GPUs per worker."""
    workers: int
    """Workers per gang when ``gangs`` > 0; else all the workers of the run."""
    gangs: int
    """How many gangs alike, each of several workers that must land in one pool (0: the
    workers are poured through the pools in turn, as single-worker gangs are placed one
    after the other, each in the first pool with room; also gangs only one pool takes)."""
    pools: tuple[int, ...]
    """The pools that take them, in the scheduler's order."""
    home: int
    """The pool grown for them when they find no room."""


def _place_runs(hists: Sequence[Sequence[int]], runs: Sequence[Run]) -> list[int]:
    """Fresh nodes per pool for ``runs`` on free capacity ``hists`` (per pool)."""
    if not runs:
        return [0] * len(hists)
    h = [list(x) for x in hists]
    fresh = [0] * len(h)
    for gpus, workers, gangs, pools, home in runs:
        for _ in range(gangs):
            for p in pools:
                if _holds(h[p], gpus, workers):
                    _place(h[p], gpus, workers)
                    break
            else:
                fresh[home] += _grow(h[home], gpus, workers)
        if gangs:
            continue
        left = workers
        for p in pools:
            left = _place(h[p], gpus, left)
            if not left:
                break
        if left:
            fresh[home] += _grow(h[home], gpus, left)
    return fresh


Shape = tuple[int, int, str]
"""A gang's shape: GPUs per worker, workers, GPU type."""

_SHAPE = attrgetter("gpus_per_worker", "workers", "gpu_type")

Takers = dict[tuple[int, str], tuple[tuple[int, ...], int] | None]
"""(GPUs per worker, GPU type) -> the pools that take such workers in the scheduler's order
and their home pool (``None``: no pool takes them)."""


def plan_runs(
    specs: Sequence[PoolSpec], shapes: Mapping[Shape, int], takers: Takers | None = None
) -> list[Run]:
    """The runs of one scenario, given as how many gangs of each shape it holds, for pools
    ``specs`` in expander order (a gang's home is the first that takes it); gangs no pool
    takes, or that need no GPU, are left out. ``takers``: filled in and reused across the
    scenarios of the same pools.

    Gangs that the fewest pools take go first (so the free capacity of a pool that alone
    takes a gang is not counted as room for one that could run elsewhere), then the largest
    workers, the most workers, and by GPU type; gangs of one shape are alike, so their order
    among themselves does not matter."""
    if takers is None:
        takers = {}
    ordered = []
    for (gpus, workers, gpu_type), count in shapes.items():
        if (gpus, gpu_type) not in takers:
            takers[gpus, gpu_type] = _takers(specs, gpus, gpu_type)
        where = takers[gpus, gpu_type]
        if where is not None:
            ordered.append((len(where[0]), -gpus, -workers, gpu_type, count, where))
    runs: list[Run] = []
    for _, minus_gpus, minus_workers, _, count, (pools, home) in sorted(
        ordered, key=lambda s: s[:4]
    ):
        gpus, workers = -minus_gpus, -minus_workers
        if workers > 1 and len(pools) > 1:
            runs.append(Run(gpus, workers, count, pools, home))
            continue
        last = runs[-1] if runs else None
        if last and not last.gangs and last.gpus == gpus and last.pools == pools:
            runs[-1] = last._replace(workers=last.workers + workers * count)
        else:
            runs.append(Run(gpus, workers * count, 0, pools, home))
    return runs


def _takers(
    specs: Sequence[PoolSpec], gpus: int, gpu_type: str
) -> tuple[tuple[int, ...], int] | None:
    if gpus <= 0:
        return None  # needs no GPU node
    probe = Gang("", 0.0, 1, gpus, gpu_type=gpu_type)
    order = sorted(range(len(specs)), key=lambda i: admission_key(specs[i]))
    pools = tuple(i for i in order if specs[i].accepts(probe))
    if not pools:
        return None
    return pools, next(i for i, s in enumerate(specs) if s.accepts(probe))


BURST_QUANTILE = 0.99
"""The rarest windows a budget may pay room for: one in a hundred."""


def pick_outcome(outcomes: Sequence[tuple[float, int]], q: float, budget_nodes: int) -> int:
    """Which scenario outcome to provision for, given ``(cost, nodes)`` per scenario sorted
    by cost: the ``q``-quantile one, or a rarer one (up to :data:`BURST_QUANTILE`) whose
    nodes still fit in ``budget_nodes``: a large cluster can afford room for the bursts of
    a few windows in a hundred for a few percent of its nodes, a small one cannot. Returns
    an index into ``outcomes``."""
    n = len(outcomes)
    base = min(n, max(1, math.ceil(q * n))) - 1
    top = min(n, max(1, math.ceil(BURST_QUANTILE * n))) - 1
    for k in range(top, base, -1):
        if outcomes[k][1] <= budget_nodes:
            return k
    return base


class ArrivalRoom:
    """The room the arrival scenarios need from a fixed list of pools, within one decision.

    A scenario's *room* is what it needs beyond the pools' fragments (the free GPUs of
    partly used nodes): whole free nodes, or fresh ones. The quantile (and the budget for
    rarer bursts) is taken over that room, not over what is still missing, so room already
    held never makes a rarer scenario look affordable. The chosen scenario is then placed
    on the fragments *and* the whole free nodes, and the fresh nodes it still needs are the
    shortfall, per home pool.

    The room of every scenario depends on the fragments only: it is computed once for them
    and reused while only the whole free nodes change (idle nodes removed or put back), and
    once for scenarios of the same shapes (quiet windows are often alike, or empty).
    """

    def __init__(self, specs: Sequence[PoolSpec], scenarios: Sequence[Sequence[Gang]]) -> None:
        """``specs`` in expander order."""
        self.specs = tuple(specs)
        self.windows = len(scenarios)
        # Most windows are empty or hold a few gangs: a sorted tuple is the cheap key for
        # those, counts for the large ones.
        keys: list[Hashable] = []
        counts: list[Counter[Shape] | None] = []
        for scenario in scenarios:
            if len(scenario) <= 16:
                keys.append(tuple(sorted(map(_SHAPE, scenario))))
                counts.append(None)
            else:
                shapes = Counter(map(_SHAPE, scenario))
                keys.append(frozenset(shapes.items()))
                counts.append(shapes)
        first: dict[Hashable, int] = {}
        self._which = [first.setdefault(key, len(first)) for key in keys]
        """Per scenario, the index of its runs in ``_runs`` (alike scenarios share them)."""
        self._runs: list[list[Run]] = []
        takers: Takers = {}
        for k, i in enumerate(self._which):
            if i == len(self._runs):  # the first of its kind
                shapes = counts[k] or Counter(map(_SHAPE, scenarios[k]))
                self._runs.append(plan_runs(self.specs, shapes, takers))
        self._fragments: tuple[tuple[int, ...], ...] | None = None
        self._ranked: list[tuple[float, int]] = []
        """(cost, nodes) per scenario, cheapest first (stable: ties in scenario order)."""
        self._ranked_ids: list[int] = []
        """The scenario of each entry of ``_ranked``."""

    def _rank(self, fragments: Sequence[Sequence[int]]) -> None:
        key = tuple(tuple(h) for h in fragments)
        if key == self._fragments:
            return
        prices = [s.price_usd_per_hour for s in self.specs]
        distinct = []
        for runs in self._runs:
            fresh = _place_runs(key, runs)
            distinct.append((sum(n * p for n, p in zip(fresh, prices, strict=True)), sum(fresh)))
        room = [distinct[i] for i in self._which]
        self._ranked_ids = sorted(range(len(room)), key=lambda k: room[k][0])
        self._ranked = [room[k] for k in self._ranked_ids]
        self._fragments = key

    def outcomes(self, fragments: Sequence[Sequence[int]]) -> list[tuple[float, int, int]]:
        """Each scenario's room beyond ``fragments`` (a histogram per pool) as (cost,
        nodes, scenario index), cheapest first; computed again only for new fragments."""
        self._rank(fragments)
        return [(*o, k) for o, k in zip(self._ranked, self._ranked_ids, strict=True)]

    def shortfall(
        self, fragments: Sequence[Sequence[int]], whole: Sequence[int], q: float, budget: int
    ) -> dict[str, int]:
        """Fresh nodes each home pool lacks for the chosen scenario, on ``fragments`` plus
        ``whole`` free nodes per pool; pools that lack none are left out."""
        self._rank(fragments)
        if not self._ranked:
            return {}
        k = self._ranked_ids[pick_outcome(self._ranked, q, budget)]
        hists = []
        for hist, nodes in zip(fragments, whole, strict=True):
            h = list(hist)
            h[-1] += nodes
            hists.append(h)
        fresh = _place_runs(hists, self._runs[self._which[k]])
        return {s.name: n for s, n in zip(self.specs, fresh, strict=True) if n}
