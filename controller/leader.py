"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Every replica runs the watches; only the Lease holder acts. A candidate takes the Lease
when it is free or when its holder has not renewed it for ``lease_duration_s`` *as seen by
this candidate's own clock* (the time it last saw the record change), so clock skew between
machines does not matter. The leader renews every ``retry_period_s``; if it cannot renew
for ``renew_deadline_s`` (shorter than the lease) it stops acting on its own, before
anyone else may take over. Writes use the Lease's resourceVersion: of two candidates
racing, exactly one wins. On a clean shutdown the leader releases the Lease so the
standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from controller.clock import format_micro_time
from controller.kube import ApiError, Kube, group_path

log = logging.getLogger("dlscaler.leader")

LEASES = "coordination.k8s.io/v1"


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError(
                "need retry period < renew deadline < lease duration, got "
                f"{retry_period_s} / {renew_deadline_s} / {lease_duration_s} s"
            )
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.on_change = on_change
        self.is_leader = threading.Event()
        self.holder = ""
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    @property
    def path(self) -> str:
        return group_path(LEASES, "leases", self.namespace, self.name)

    def _spec(self, now: float, lease: dict[str, Any] | None) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        acquired = old.get("acquireTime")
        if old.get("holderIdentity") != self.identity:
            transitions += 1 if lease else 0
            acquired = format_micro_time(now)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "acquireTime": acquired,
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking). True if this replica holds the Lease afterwards."""
        now = time.time()
        lease = self.kube.get(self.path)
        if lease is None:
            body = {
                "apiVersion": LEASES,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, None),
            }
            try:
                self.kube.create(group_path(LEASES, "leases", self.namespace), body)
            except ApiError as err:
                if err.conflict:
                    return False
                raise
            self.holder = self.identity
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        mono = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, mono
        self.holder = holder
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        if holder and holder != self.identity and mono < self._observed_at + duration:
            return False  # held, and renewed recently as far as we have seen
        lease["spec"] = self._spec(now, lease)
        try:
            self.kube.replace(self.path, lease)
        except ApiError as err:
            if err.conflict:
                return False
            raise
        self.holder = self.identity
        self._observed = (self.identity, lease["spec"]["renewTime"])
        self._observed_at = mono
        return True

    def release(self) -> None:
        """Give the Lease up (clean shutdown): the standby need not wait for it to expire."""
        if not self.is_leader.is_set():
            return
        self._set(False, releasing=True)
        lease = self.kube.get(self.path)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["leaseDurationSeconds"] = 1
        try:
            self.kube.replace(self.path, lease)
        except ApiError as err:
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, err)

    def _set(self, leading: bool, *, releasing: bool = False) -> None:
        if leading == self.is_leader.is_set():
            return
        if leading:
            self.is_leader.set()
            log.info(
                "became leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity
            )
        else:
            self.is_leader.clear()
            log.log(
                logging.INFO if releasing else logging.WARNING,
                "%s leading (Lease %s/%s)",
                "releasing and stopped" if releasing else "lost the Lease: stopped",
                self.namespace,
                self.name,
            )
        if self.on_change is not None:
            self.on_change(leading)

    def step(self) -> None:
        """One round: try, and step down if renewing has failed past the deadline."""
        try:
            ok = self.try_acquire_or_renew()
        except ApiError as err:
            log.warning("Lease %s/%s: %s", self.namespace, self.name, err)
            ok = False
        mono = time.monotonic()
        if ok:
            self._last_renew = mono
            self._set(True)
        elif self.is_leader.is_set() and (
            self.holder not in ("", self.identity)
            or mono - self._last_renew > self.renew_deadline_s
        ):
            self._set(False)

    async def run(self, stop: asyncio.Event, beat: Callable[[], None] | None = None) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.step)
            if beat is not None:
                beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.retry_period_s)
