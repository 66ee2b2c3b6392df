"""A rate-limited work queue of object keys, as in client-go: the heart of level-based reconciles.

Any number of events for one object collapse into one pending reconcile; one object is
never reconciled by two workers at once; a failed reconcile is retried with exponential
backoff; ``requeue_after`` schedules a later look (a deadline, a timer).
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
        self.name = f"{kind.lower()}-queue"
        self._reconcile = reconcile
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: dict[Key, float] = {}  # key -> when it was queued (monotonic)
        self._depth = metrics.WORKQUEUE_DEPTH.labels(kind=kind)
        self._wait = metrics.WORKQUEUE_WAIT.labels(kind=kind)
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

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
            self._dirty.add(key)  # picked up again when the running reconcile ends
            return
        if key not in self._queued:
            self._queued[key] = time.monotonic()
            self._queue.put_nowait(key)
            self._depth.set(len(self._queued))

    def add_after(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= due:
                return  # an earlier look is already scheduled
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._wait.observe(time.monotonic() - self._queued.pop(key))
            self._depth.set(len(self._queued))
            self._processing.add(key)
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
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if requeue_after is not None:
                    self.add_after(key, requeue_after)
            finally:
                self._processing.discard(key)
                self._queue.task_done()
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
