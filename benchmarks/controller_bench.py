"""Controller benchmark: 1,000 DLJobs and 50 NodePools in a real API server.

A throwaway control plane (etcd + kube-apiserver from ``hack/control-plane.sh build``) with
the CRDs; 50 kwok NodePools, each of its own GPU type; ``dlscaler run`` (the real command,
in its own process, kwok provider) watching them; then 1,000 DLJobs of one 8-GPU worker,
spread round-robin over the pools. No
kwok process runs, so the nodes asked for stay in flight: every job is a pending gang and
every one of them must lead to exactly one more node.

Two phases: first the bulk of the jobs is created as fast as one client can (``--bulk-rate``)
and the controller catches up; then, with ~1,000 DLJobs in the API server, the last
``--probes`` jobs arrive at ``--rate`` per second, like a busy cluster's steady flow, and
their latency is the result (the bulk phase's is reported too).

Measured:

* ``decide_p99_ms``: ``dlscaler.policy.decide`` inside the controller, every pass of the
  run (up to 1,000 pending gangs x 50 pools);
* ``create_to_provider_p95_s``: for the probe jobs, from a DLJob's creation (the API
  server's reply) to the start of the provider call that asks for its node (the first
  ``set_target_size`` of its pool whose size covers it: pools grow one node per job, in
  creation order);
* ``rss_mb``: the controller process's peak resident memory (VmHWM).

Targets (issue 6): decide p99 < 200 ms, creation to provider call p95 < 2 s, RSS < 300 MB.

    python benchmarks/controller_bench.py [--jobs 1000] [--pools 50] [--probes 100] [--rate 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

ROOT = Path(__file__).resolve().parent.parent


# --- inside the controller process (``--serve``) ------------------------------------------


def serve(record: Path, argv: list[str]) -> None:
    """``dlscaler run`` with the provider calls and ``decide()`` timed into ``record``."""
    import controller.operator as operator
    import controller.planning as planning
    from controller.settings import ControllerSettings
    from dlscaler.config import PoolModel
    from dlscaler.pool import NodePoolProvider

    lock = threading.Lock()
    out = record.open("a", buffering=1)

    def write(doc: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(doc) + "\n")

    real_factory = operator.default_provider_factory

    class Timed:
        def __init__(self, pool: str, inner: NodePoolProvider) -> None:
            self.pool, self.inner = pool, inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def set_target_size(self, size: int) -> None:
            write({"call": "set_target_size", "pool": self.pool, "size": size, "t": time.time()})
            self.inner.set_target_size(size)

    def factory(settings: ControllerSettings) -> Any:
        build = real_factory(settings)
        return lambda model: Timed(model.name, build(model))

    real_decide = planning.decide

    def timed_decide(**kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        plan = real_decide(**kwargs)
        write(
            {
                "t": time.time(),
                "decide_s": time.perf_counter() - started,
                "decide_cpu_s": time.thread_time() - cpu,
                "pending": len(kwargs["pending"]),
            }
        )
        return plan

    import gc

    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started.append(time.perf_counter())
        elif gc_started:
            took = time.perf_counter() - gc_started.pop()
            if took > 0.02:
                write({"gc_s": took, "generation": info.get("generation"), "t": time.time()})

    gc.callbacks.append(on_gc)
    operator.default_provider_factory = factory
    planning.decide = timed_decide
    del PoolModel
    from dlscaler.cli import app

    app(["run", *argv])


# --- the driver ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def served(
    record: Path | None = None,
    created: list[tuple[float, int]] | None = None,
    *,
    record_docs: list[dict[str, Any]] | None = None,
) -> list[float | None]:
    """Per created job (in order), seconds to the provider call that covers it, or None.

    Pools grow one node per job in creation order, so the r-th job of a pool is covered by
    the first ``set_target_size`` of that pool to a size of at least r."""
    if record_docs is None:
        assert record is not None
        text = record.read_text() if record.exists() else ""
        record_docs = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    calls: dict[str, list[tuple[float, int]]] = {}
    for d in record_docs:
        if d.get("call") == "set_target_size":
            calls.setdefault(d["pool"], []).append((d["t"], d["size"]))
    rank: dict[int, int] = {}
    out: list[float | None] = []
    for t_created, pool in created or []:
        rank[pool] = rank.get(pool, 0) + 1
        times = [t for t, size in calls.get(f"pool-{pool:02d}", []) if size >= rank[pool]]
        out.append(min(times) - t_created if times else None)
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--probes", type=int, default=100, help="jobs whose latency is measured")
    parser.add_argument("--rate", type=float, default=2.0, help="probe jobs created per second")
    parser.add_argument("--bulk-rate", type=float, default=50.0, help="bulk jobs per second")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last job")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        serve(args.serve, rest)
        return

    from controller.devcluster import DevCluster
    from controller.kube import Kube, custom_path
    from controller.names import API_VERSION, DLJOBS, NODEPOOLS

    per_pool = -(-args.jobs // args.pools)
    with (
        tempfile.TemporaryDirectory(prefix="dlscaler-bench-") as tmp,
        DevCluster.temporary(components=("etcd", "kube-apiserver")) as cluster,
    ):
        cluster.install_crds()
        kube = Kube.connect(str(cluster.kubeconfig))
        for i in range(args.pools):
            kube.create(
                custom_path(NODEPOOLS),
                {
                    "apiVersion": API_VERSION,
                    "kind": "NodePool",
                    "metadata": {"name": f"pool-{i:02d}"},
                    "spec": {
                        "provider": "kwok",
                        "gpuType": f"gpu-{i:02d}",
                        "gpusPerNode": 8,
                        "maxNodes": per_pool + 5,
                        "pricePerHour": 10.0 + i,
                        "provisioningDelaySeconds": 300,
                    },
                },
            )
        record = Path(tmp) / "record.jsonl"
        log_path = Path(tmp) / "controller.log"
        argv = [
            sys.executable,
            __file__,
            f"--serve={record}",
            f"--kubeconfig={cluster.kubeconfig}",
            "--listen=127.0.0.1:0",
            "--no-leader-elect",
            "--log-level=warning",
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            time.sleep(3.0)  # watches established, first pass done
            created: list[tuple[float, int]] = []

            def create(j: int) -> None:
                pool = j % args.pools
                body = {
                    "apiVersion": API_VERSION,
                    "kind": "DLJob",
                    "metadata": {"name": f"job-{j:04d}", "namespace": "default"},
                    "spec": {
                        "framework": "pytorch",
                        "workers": 1,
                        "gpusPerWorker": 8,
                        "gpuType": f"gpu-{pool:02d}",
                        "template": {"spec": {"containers": [{"name": "t", "image": "t:1"}]}},
                    },
                }
                kube.create(custom_path(DLJOBS, "default"), body)
                created.append((time.time(), pool))

            def paced(first: int, last: int, rate: float) -> None:
                next_at = time.monotonic()
                for j in range(first, last):
                    create(j)
                    next_at += 1.0 / rate
                    time.sleep(max(0.0, next_at - time.monotonic()))

            bulk = args.jobs - args.probes
            paced(0, bulk, args.bulk_rate)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # until the controller has caught up
                done = served(record, created)
                if all(latency is not None for latency in done):
                    break
                time.sleep(1.0)
            time.sleep(5.0)
            probe_start = time.time()
            paced(bulk, args.jobs, args.rate)
            time.sleep(args.settle)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            rss_mb = vm_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        docs = [json.loads(line) for line in record.read_text().splitlines()]

    decides = [d["decide_s"] for d in docs if "decide_s" in d]
    decide_cpu = [d["decide_cpu_s"] for d in docs if "decide_cpu_s" in d]
    # Passes of the probe phase: 900-1,000 jobs in the cluster, new ones arriving steadily.
    steady = [d["decide_s"] for d in docs if "decide_s" in d and d.get("t", 0) >= probe_start]
    busiest = max((d["pending"] for d in docs if "pending" in d), default=0)
    latencies_all = served(record_docs=docs, created=created)
    bulk_lat = [x for x in latencies_all[: args.jobs - args.probes] if x is not None]
    latencies = [x for x in latencies_all[args.jobs - args.probes :] if x is not None]
    unserved = sum(1 for x in latencies_all if x is None)
    result = {
        "dljobs": args.jobs,
        "pools": args.pools,
        "probe_jobs": args.probes,
        "probe_rate_per_s": args.rate,
        "bulk_rate_per_s": args.bulk_rate,
        "decide_p50_ms": round(statistics.median(decides) * 1000, 2),
        "decide_p99_ms": round(percentile(decides, 99) * 1000, 2),
        "decide_cpu_p99_ms": round(percentile(decide_cpu, 99) * 1000, 2),
        "decide_steady_p99_ms": round(percentile(steady, 99) * 1000, 2),
        "decide_calls": len(decides),
        "gc_pauses_over_20ms": sorted(
            (round(d["gc_s"] * 1000), d["generation"]) for d in docs if "gc_s" in d
        )[-10:],
        "max_pending_gangs_in_one_decide": busiest,
        "create_to_provider_p50_s": round(percentile(latencies, 50), 3),
        "create_to_provider_p95_s": round(percentile(latencies, 95), 3),
        "create_to_provider_max_s": round(max(latencies), 3) if latencies else None,
        "bulk_create_to_provider_p50_s": round(percentile(bulk_lat, 50), 3),
        "bulk_create_to_provider_p95_s": round(percentile(bulk_lat, 95), 3),
        "jobs_without_provider_call": unserved,
        "rss_mb": round(rss_mb, 1),
        "provider": "kwok (Node objects in the API server; no kwok process: nodes stay in flight)",
        "targets": {"decide_p99_ms": 200, "create_to_provider_p95_s": 2.0, "rss_mb": 300},
    }
    print(json.dumps(result, indent=2))
    write_result("controller.json", result)


if __name__ == "__main__":
    main()
