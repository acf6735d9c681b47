"""Running gangs' expected ends in the controller: the job-runtime regression, trained on the
DLJobs that have finished.

- **Training data.** Each DLJob seen ``Succeeded`` is recorded once: its shape (workers, GPUs
  per worker, GPU type, priority, queue), framework, namespace (as the user), the optional
  ``spec.hints`` (``datasetSizeGb``, ``epochs``, ``modelParameters``) and its run time, from
  ``status.startTime`` (else ``admittedTime``) to ``completionTime``. Finished DLJobs are
  deleted by their TTL and by people, so the records are kept in their own ConfigMap (the
  state ConfigMap's name plus ``-runtimes``, key ``finished``): the latest ``max_jobs``, as
  compact JSON, deflated and base64-encoded, written at most every ``persist_every_s``.
- **Refits** run in a background thread every ``refit_every_s`` when jobs have finished since
  the last one: fitting takes a second or more, and the scaling loop never waits for it. A
  pass uses the latest model there is; before any, the regressor's documented fallback (the
  median of the jobs recorded so far, else one hour).
- **Estimates.** For every running gang the snapshot gives ``decide()``:
  ``expected_end_s = now + remaining`` where ``remaining`` is the median remaining run time
  given how long it has run. The model is asked once per job between refits (a model call
  costs milliseconds); the rest is arithmetic.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from controller.clock import parse_time
from controller.configmap_store import ConfigMapBacked
from controller.dljob import SUCCEEDED, JobView
from controller.kube import ApiError
from dlscaler.model import Gang, RunningGang
from predictors.runtime import RuntimeRegressor

log = logging.getLogger("dlscaler.runtimes")

SUFFIX = "-runtimes"
"""The ConfigMap is the state ConfigMap's name plus this (``dlscaler-state-runtimes``)."""
KEY = "finished"
FORMAT_VERSION = 1
HINTS = ("datasetSizeGb", "epochs", "modelParameters")
"""The DLJob's ``spec.hints`` the regressor reads (see ``predictors.runtime.HINTS``)."""


def job_features(job: JobView, workers: int | None = None) -> Gang:
    """The gang as the regressor sees it: shape, framework, namespace (as the user) and
    hints (``workers``: as admitted; default the job's minimum)."""
    attributes = {"framework": job.framework, "user": job.namespace}
    hints = (job.obj.get("spec") or {}).get("hints") or {}
    if isinstance(hints, Mapping):
        for key in HINTS:
            value = hints.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[key] = repr(value)
    return replace(job.gang(workers), attributes=MappingProxyType(attributes))


@dataclass(frozen=True, slots=True)
class FinishedJob:
    uid: str
    finished_s: float
    run_s: float
    gang: Gang
    """Features (``duration_s`` holds ``run_s``)."""

    def to_json(self) -> dict[str, Any]:
        g = self.gang
        return {
            "uid": self.uid,
            "id": g.job_id,
            "sub": round(g.submit_s, 3),
            "end": round(self.finished_s, 3),
            "run": round(self.run_s, 3),
            "w": g.workers,
            "gpw": g.gpus_per_worker,
            "type": g.gpu_type,
            "prio": g.priority,
            "queue": g.queue,
            "attr": dict(g.attributes),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FinishedJob:
        run_s = float(doc["run"])
        gang = Gang(
            job_id=str(doc["id"]),
            submit_s=float(doc.get("sub", 0.0)),
            workers=int(doc["w"]),
            gpus_per_worker=int(doc["gpw"]),
            gpu_type=str(doc.get("type", "")),
            priority=int(doc.get("prio", 0)),
            queue=str(doc.get("queue", "default")),
            duration_s=run_s,
            attributes=MappingProxyType({str(k): str(v) for k, v in doc.get("attr", {}).items()}),
        )
        return cls(str(doc["uid"]), float(doc["end"]), run_s, gang)


def finished_record(job: JobView) -> FinishedJob | None:
    """The training record of a DLJob that succeeded (``None`` for any other, or when its
    times are missing or make no sense)."""
    if job.phase != SUCCEEDED:
        return None
    status = job.status
    started = parse_time(status.get("startTime")) or parse_time(status.get("admittedTime"))
    ended = parse_time(status.get("completionTime"))
    if started is None or ended is None or ended < started:
        return None
    gang = replace(job_features(job, job.admitted_workers), duration_s=ended - started)
    return FinishedJob(job.uid, ended, ended - started, gang)


def encode(jobs: Sequence[FinishedJob]) -> str:
    rows = json.dumps([j.to_json() for j in jobs], separators=(",", ":")).encode()
    packed = base64.b64encode(zlib.compress(rows, 9)).decode("ascii")
    return json.dumps({"version": FORMAT_VERSION, "jobs": len(jobs), "jsonDeflateBase64": packed})


def decode(text: str) -> list[FinishedJob]:
    doc = json.loads(text)
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"finished-jobs format {doc.get('version')!r} is not supported")
    rows = json.loads(zlib.decompress(base64.b64decode(doc["jsonDeflateBase64"])))
    return [FinishedJob.from_json(r) for r in rows]


class FinishedJobStore(ConfigMapBacked):
    """Reads and writes the finished-jobs ConfigMap (leader only)."""

    def load(self) -> list[FinishedJob]:
        text = self.configmap.load().get(KEY)
        if not text:
            return []
        try:
            return decode(text)
        except (ValueError, KeyError, TypeError, zlib.error) as err:
            log.warning(
                "ignoring unreadable finished jobs in ConfigMap %s/%s: %s",
                self.namespace,
                self.name,
                err,
            )
            return []

    def save(self, jobs: Sequence[FinishedJob]) -> None:
        """Write the records, as :class:`controller.state.StateStore` writes its history
        (:class:`controller.configmap_store.ConfigMapStore`: a 409 when someone else wrote
        in between)."""
        self.configmap.save({KEY: encode(jobs)})


class RuntimeEstimates:
    def __init__(
        self,
        *,
        store: FinishedJobStore | None = None,
        max_jobs: int = 2_000,
        refit_every_s: float = 3_600.0,
        persist_every_s: float = 300.0,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        regressor_factory: Callable[[], RuntimeRegressor] = RuntimeRegressor,
    ) -> None:
        """``clock``: for the refit and persist schedules (a pass's ``now`` is separate).
        ``background=False`` refits inline (tests)."""
        self.store = store
        self.max_jobs = max_jobs
        self.refit_every_s = refit_every_s
        self.persist_every_s = persist_every_s
        self.clock = clock
        self._factory = regressor_factory
        self.regressor = regressor_factory()
        self._finished: dict[str, FinishedJob] = {}
        self._loaded = store is None
        self._dirty = False
        self._new_since_fit = 0
        self._fitted_at = -math.inf
        self._saved_at = -math.inf
        self._lock = threading.Lock()
        self._medians: dict[str, float] = {}
        self._refit: Future[None] | None = None
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtimes") if background else None
        )
        self.fits = 0

    @property
    def finished(self) -> list[FinishedJob]:
        return sorted(self._finished.values(), key=lambda j: (j.finished_s, j.uid))

    # --- training data -------------------------------------------------------------------

    def observe(self, jobs: Sequence[JobView]) -> None:
        """Record the DLJobs that have succeeded (once each); start a refit if one is due;
        persist the records if it is time."""
        self._load()
        for job in jobs:
            if job.uid in self._finished or job.phase != SUCCEEDED:
                continue
            record = finished_record(job)
            if record is not None:
                self._finished[job.uid] = record
                self._new_since_fit += 1
                self._dirty = True
        if len(self._finished) > self.max_jobs:
            for old in self.finished[: len(self._finished) - self.max_jobs]:
                del self._finished[old.uid]
        self._maybe_refit()
        self._maybe_save()

    def _load(self) -> None:
        if self._loaded or self.store is None:
            return
        try:
            jobs = self.store.load()
        except ApiError as err:
            if not self._forbidden(err):
                log.warning("could not read the finished jobs (starting empty): %s", err)
            return
        self._loaded = True
        for job in jobs[-self.max_jobs :]:
            self._finished.setdefault(job.uid, job)
        self._new_since_fit += len(jobs)
        log.info("runtime regression: %d finished jobs from ConfigMap", len(jobs))

    def _maybe_save(self, *, force: bool = False) -> None:
        now = self.clock()
        if self.store is None or not self._dirty:
            return
        if not force and now - self._saved_at < self.persist_every_s:
            return
        try:
            self.store.save(self.finished)
            self._dirty = False
            self._saved_at = now
        except ApiError as err:
            if not self._forbidden(err):
                log.warning("could not save the finished jobs: %s", err)

    def _forbidden(self, err: ApiError) -> bool:
        """A 403 will not go away by retrying: say once what to grant, keep the records in
        memory only."""
        if err.status != 403 or self.store is None:
            return False
        log.warning(
            "finished jobs kept in memory only: %s (grant get and patch on ConfigMap %s/%s)",
            err,
            self.store.namespace,
            self.store.name,
        )
        self.store = None
        return True

    def close(self) -> None:
        self._maybe_save(force=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- refits ----------------------------------------------------------------------------

    def _maybe_refit(self) -> None:
        if not self._new_since_fit:
            return
        if self._refit is not None and not self._refit.done():
            return
        now = self.clock()
        if now - self._fitted_at < self.refit_every_s:
            return
        self._fitted_at = now
        self._new_since_fit = 0
        training = [j.gang for j in self.finished]
        if self._executor is None:
            self._fit(training)
        else:
            self._refit = self._executor.submit(self._fit, training)

    def _fit(self, training: list[Gang]) -> None:
        started = time.perf_counter()
        try:
            regressor = self._factory().fit(training)
        except Exception:  # a failed fit keeps the previous model
            log.exception("runtime regression refit failed; keeping the previous model")
            return
        with self._lock:
            self.regressor = regressor
            self._medians = {}
            self.fits += 1
        log.debug(
            "runtime regression refit on %d jobs in %.2f s",
            len(training),
            time.perf_counter() - started,
        )

    # --- estimates -------------------------------------------------------------------------

    def expected_ends(
        self, running: Sequence[RunningGang], jobs: Sequence[JobView], now_s: float
    ) -> list[RunningGang]:
        """``running`` with ``expected_end_s`` set (gangs whose DLJob is not in ``jobs`` are
        left as they are)."""
        by_id = {j.job_id: j for j in jobs}
        known = [
            (i, r, by_id[r.gang.job_id]) for i, r in enumerate(running) if r.gang.job_id in by_id
        ]
        out = list(running)
        if not known:
            return out
        with self._lock:
            regressor, medians = self.regressor, self._medians
        missing = [(r, job) for _, r, job in known if job.uid not in medians]
        if missing:
            gangs = [job_features(job, r.gang.workers) for r, job in missing]
            try:
                predicted = regressor.predict_s(gangs)
            except Exception:  # never let the estimate stop a pass
                log.exception("runtime regression predict failed; ends stay unknown")
                return out
            for (_, job), median in zip(missing, predicted.tolist(), strict=True):
                medians[job.uid] = float(median)
        ages = [max(0.0, now_s - r.started_s) for _, r, _ in known]
        remaining = regressor.remaining_given_median_s(
            [medians[job.uid] for _, _, job in known], ages
        )
        for (i, r, _), left in zip(known, remaining.tolist(), strict=True):
            out[i] = replace(r, expected_end_s=now_s + left)
        running_uids = {job.uid for _, _, job in known}
        for uid in [u for u in medians if u not in running_uids]:
            del medians[uid]  # finished or gone
        return out
