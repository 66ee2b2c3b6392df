"""A rate-limited work queue of object keys, as in client-go: the heart of level-based reconciles.

Any number of events for one object collapse into one pending reconcile; one object is
never reconciled by two workers at once; a failed reconcile is retried with exponential
backoff; ``requeue_after`` schedules a later look (a deadline, a timer).

Metrics are client-go's workqueue set, labelled by ``controller``: adds, retries, queue and
work duration are counted as they happen; depth, unfinished work and the longest running
reconcile are read at scrape time from what the queue keeps anyway (``metrics.register_work_queue``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from perennial.adapters import logs, metrics
from perennial.adapters.store import Key

logger = logging.getLogger(__name__)

Reconcile = Callable[[Key], Awaitable[float | None]]  # returns "look again in N seconds" or None


def batch_delay(backlog: int, workers: int, quiet: float, batch: float) -> float:
    """How long to gather a burst of events before reconciling, given the queue's ``backlog``.

    A batch saves reconciles (and the status writes and Events they bring) only when there
    is a backlog to save them from; on an idle queue it is pure latency on every step of a
    chain (a Job finishes, then its TrainingJob, then its model). So the wait grows with
    the backlog: ``quiet`` on an empty queue (events of one burst still arrive within
    it), the whole ``batch`` once every worker has a key waiting, linear in between.
    """
    if workers <= 0:
        return batch
    share = min(1.0, backlog / workers)
    return quiet + (batch - quiet) * share


class WorkQueue:
    def __init__(
        self,
        kind: str,
        reconcile: Reconcile,
        *,
        workers: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
    ) -> None:
        self.kind = kind  # of the objects whose (namespace, name) keys it holds
        self.controller = kind.lower()  # the `controller` label of its metrics
        self.name = f"{self.controller}-queue"
        self._reconcile = reconcile
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: dict[Key, float] = {}  # key -> when it was queued (monotonic)
        self._processing: dict[Key, float] = {}  # key -> when its reconcile started (monotonic)
        self._dirty: dict[Key, float] = {}  # added while being reconciled -> when (monotonic)
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._adds = metrics.WORKQUEUE_ADDS.labels(controller=self.controller)
        self._retries = metrics.WORKQUEUE_RETRIES.labels(controller=self.controller)
        self._queue_duration = metrics.WORKQUEUE_QUEUE_DURATION.labels(controller=self.controller)
        self._work_duration = metrics.WORKQUEUE_WORK_DURATION.labels(controller=self.controller)
        metrics.register_work_queue(self)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        """Stop the workers and the scheduled looks; queued keys stay for the next ``start``."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()  # a cancelled timer must not stand in for a later ``add_after``
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def add(self, key: Key) -> None:
        if key in self._processing:
            if key not in self._dirty:
                self._dirty[key] = time.monotonic()  # picked up again when the running reconcile ends
                self._adds.inc()
            return
        if key not in self._queued:
            self._adds.inc()
            self._enqueue(key, time.monotonic())

    def _enqueue(self, key: Key, since: float) -> None:
        self._queued[key] = since
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= due:
                return  # an earlier look is already scheduled
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def add_batched(self, key: Key, *, quiet: float, batch: float) -> None:
        """Reconcile ``key`` once a burst of events has gathered (``batch_delay`` of the backlog now)."""
        backlog = len(self._queued) + len(self._processing)
        self.add_after(key, batch_delay(backlog, self._workers, quiet, batch))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued)

    def processing_since(self) -> tuple[float, ...]:
        """When each reconcile in flight started; read by the metrics scrape, in its thread."""
        for _ in range(3):
            try:
                return tuple(self._processing.values())
            except RuntimeError:  # changed size while copied (only if the copy were ever interrupted)
                continue
        return ()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            started = time.monotonic()
            self._queue_duration.observe(started - self._queued.pop(key))
            self._processing[key] = started
            try:
                requeue_after = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._max_delay, self._base_delay * 2 ** (failures - 1))
                namespace, name = key
                logger.exception(
                    "reconcile failed (attempt %d); retrying in %.1fs",
                    failures,
                    delay,
                    extra=logs.about_object(self.kind, namespace, name),
                )
                self._retries.inc()
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if requeue_after is not None:
                    self.add_after(key, requeue_after)
            finally:
                del self._processing[key]
                self._work_duration.observe(time.monotonic() - started)
                self._queue.task_done()
            dirty_since = self._dirty.pop(key, None)
            if dirty_since is not None and key not in self._queued:
                self._enqueue(key, dirty_since)  # counted as an add when it was marked
