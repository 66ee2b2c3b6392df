"""Leader election on a coordination.k8s.io/v1 Lease: only the holder reconciles.

client-go's algorithm (the rules are in ``perennial.domain.lease``): a candidate takes
the Lease when it is free or its holder has not renewed it for ``lease_duration`` (by the
candidate's own clock); every write carries the resourceVersion it read, so of two
candidates only one wins. The leader renews every ``retry_period``; if no renewal
succeeds for ``renew_deadline`` (shorter than the lease duration) it stops leading
before anyone else may start. At shutdown it releases the Lease, so a rolling update
hands over at once.

Why not ``kubernetes.aio.leaderelection`` (37.0.2), and why not kopf's peering:
- the library sends each Lease request without a deadline, so a renewal that hangs on a
  dead connection keeps the old leader reconciling for up to the client's 5-minute
  timeout, long after another replica took over; here each attempt is bounded by what
  is left of the renew deadline;
- its candidates poll every retry period after the lease expired, so a takeover comes up
  to lease duration + 2 retry periods after the leader died; here a candidate wakes
  when the lease it saw expires;
- it writes local time marked as UTC into the Lease, and never releases it;
- kopf's peering is a liveness notice, not a lock: two operators may run at once until
  each sees the other's KopfPeering (and it needs its own CRD and cluster-wide RBAC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from perennial.adapters import metrics
from perennial.adapters.kube import ApiError, KubeClient, Resource
from perennial.domain.lease import LeaseRecord, claimed, released, seconds_until_free

logger = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float

    @staticmethod
    def unique_identity(name: str) -> str:
        """``name`` (the pod's) plus a random suffix, as client-go: a restarted process is a new candidate."""
        return f"{name}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """Campaigns for the Lease, leads while it holds it, and campaigns again after losing it.

    ``lead`` is awaited when the Lease is won; ``follow`` when it is lost or at shutdown,
    before the Lease is released. Neither may raise.
    """

    def __init__(
        self,
        client: KubeClient,
        config: LeaseConfig,
        *,
        lead: Callable[[], Awaitable[None]],
        follow: Callable[[], Awaitable[None]],
    ) -> None:
        self.client = client
        self.config = config
        self._lead = lead
        self._follow = follow
        self._lease: dict[str, Any] | None = None  # the last Lease read or written
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic: when the current record was first seen
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    @property
    def observed_holder(self) -> str | None:
        """Who held the Lease at this candidate's last look (itself while it leads)."""
        return self._observed.holder if self._observed is not None else None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        metrics.LEADER.set(0)
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop leading (``follow``), release the Lease if held, stop campaigning."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        config = self.config
        try:
            while True:
                await self._campaign()
                logger.info("leading as %s (Lease %s/%s)", config.identity, config.namespace, config.name)
                self._set_leading(True)
                await self._lead()
                try:
                    await self._hold()
                finally:
                    self._set_leading(False)
                    await self._follow()
                logger.warning("lost the Lease %s/%s: stopped reconciling", config.namespace, config.name)
        except asyncio.CancelledError:
            if self.leading:
                self._set_leading(False)
                await self._follow()
            await self._release()
            raise

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)
        metrics.LEADER_TRANSITIONS.labels(transition="started" if leading else "stopped").inc()

    # ------------------------------------------------------------ candidate
    async def _campaign(self) -> None:
        """Return once this replica holds the Lease."""
        while True:
            try:
                wait = await self._try_acquire()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._explain(error)
                wait = self.config.retry_period
            if wait == 0:
                return
            # Wake when the lease seen expires, or at the next period to see a renewal.
            await asyncio.sleep(min(wait, self.config.retry_period))

    def _explain(self, error: Exception) -> None:
        config = self.config
        where = f"Lease {config.namespace}/{config.name}"
        if isinstance(error, ApiError) and error.not_found:
            # Only a create can miss: the namespace itself is not there.
            logger.error(
                "leader election: cannot create the %s: %s. Create the namespace, or name another with "
                "PERENNIAL_LEASE_NAMESPACE (POD_NAMESPACE in a pod)",
                where,
                error.message,
            )
        elif isinstance(error, ApiError) and error.status == 403:
            logger.error("leader election: not allowed to get, create or update the %s: %s", where, error.message)
        else:
            logger.warning("leader election: could not read or take the %s: %s", where, error)

    async def _try_acquire(self) -> float:
        """One attempt: 0 if this replica now holds the Lease, else how long until it may be free."""
        config = self.config
        try:
            lease = await self._bounded(self.client.get(LEASES, config.namespace, config.name))
        except ApiError as error:
            if not error.not_found:
                raise
            lease = None
        now = time.monotonic()
        if lease is not None:
            record = LeaseRecord.of(lease)
            if record != self._observed:
                self._observed, self._observed_at = record, now
            wait = seconds_until_free(record, config.identity, self._observed_at, now, config.lease_duration)
            if wait > 0:
                self._lease = lease
                return wait
        return 0.0 if await self._write_claim(lease) else self.config.retry_period

    async def _write_claim(self, lease: dict[str, Any] | None) -> bool:
        """Write this replica into the Lease; False if another candidate wrote it first (409)."""
        config = self.config
        body = self._claim(lease)
        try:
            if lease is None:
                written = await self._bounded(self.client.create(LEASES, config.namespace, body))
            else:
                written = await self._bounded(self.client.replace(LEASES, config.namespace, config.name, body))
        except ApiError as error:
            if error.conflict:
                self._lease = None  # someone else wrote it: read it again next time
                return False
            raise
        self._lease = written
        self._observed, self._observed_at = LeaseRecord.of(written), time.monotonic()
        return True

    # ------------------------------------------------------------ leader
    async def _hold(self) -> None:
        """Renew every retry period; return when the Lease is lost or cannot be renewed in time."""
        config = self.config
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(config.retry_period)
            while True:
                left = renewed + config.renew_deadline - time.monotonic()
                if left <= 0:
                    logger.error("leader election: no renewal for %.0fs (renew deadline)", config.renew_deadline)
                    return
                try:
                    if await self._renew(within=left):
                        renewed = time.monotonic()
                        break
                    return  # another replica holds it now
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    logger.warning("leader election: renewal failed, retrying: %s", error)
                left = renewed + config.renew_deadline - time.monotonic()
                await asyncio.sleep(min(config.retry_period, max(0.0, left)))

    async def _renew(self, *, within: float) -> bool:
        """One renewal in at most ``within`` seconds: True if still the holder, False if another is."""
        config = self.config
        lease = self._lease
        if lease is None:
            lease = await self._bounded(self.client.get(LEASES, config.namespace, config.name), within)
        if LeaseRecord.of(lease).holder != config.identity:
            return False
        try:
            body = self._claim(lease)
            self._lease = await self._bounded(self.client.replace(LEASES, config.namespace, config.name, body), within)
        except ApiError as error:
            if not error.conflict:
                raise
            # Written by someone else since our last write: read it, then decide.
            self._lease = None
            lease = await self._bounded(self.client.get(LEASES, config.namespace, config.name), within)
            self._lease = lease
            if LeaseRecord.of(lease).holder != config.identity:
                return False
            raise
        return True

    def _claim(self, lease: dict[str, Any] | None) -> dict[str, Any]:
        config = self.config
        now = datetime.now(UTC)
        return claimed(lease, config.identity, config.lease_duration, now, name=config.name, namespace=config.namespace)

    async def _release(self) -> None:
        """Give the Lease up (best effort, bounded): the next candidate need not wait for it to expire."""
        if self._lease is None or LeaseRecord.of(self._lease).holder != self.config.identity:
            return
        with contextlib.suppress(Exception):
            await self._bounded(
                self.client.replace(
                    LEASES, self.config.namespace, self.config.name, released(self._lease, datetime.now(UTC))
                ),
                2.0,
            )
            logger.info("released the Lease %s/%s", self.config.namespace, self.config.name)

    async def _bounded(self, request: Awaitable[dict[str, Any]], within: float | None = None) -> dict[str, Any]:
        """A Lease request that may not outlast a renew deadline (nor ``within`` seconds).

        ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` returns the result
        of a request that completed in the loop iteration its caller was cancelled, swallowing
        the cancellation, so ``stop`` could wait for ever on an elector that went on renewing.
        """
        limit = min(within or self.config.renew_deadline, self.config.renew_deadline)
        async with asyncio.timeout(limit):
            return await request
