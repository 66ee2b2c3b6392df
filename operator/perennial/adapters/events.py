"""Kubernetes Events about Perennial objects (what `kubectl describe` shows under Events).

Events are posted in the background, as client-go's event broadcaster does: a reconcile
hands an Event over and goes on, so a slow or throttled API server delays the Events, not
the work they describe. The backlog is bounded; when it is full the newest Event is
dropped and counted (``perennial_events_dropped_total``), because a model that serves
matters more than its story being told.

Sixteen senders, as many as the busiest controller's workers: with four, a burst of a
thousand new models (five Events each) was still being told a minute after every model
served, writes while nothing changed (benchmarks/README.md); with sixteen the backlog is
empty when the burst's work is, at the same total time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from perennial.adapters import logs, metrics
from perennial.adapters.kube import KubeClient, Resource
from perennial.domain.text import shorten_bytes
from perennial.domain.timeutil import format_time

EVENTS = Resource("", "v1", "events")
COMPONENT = "perennial"
logger = logging.getLogger(__name__)


def event_body(obj: Mapping[str, Any], type_: str, reason: str, message: str, instance: str) -> dict[str, Any]:
    """A core/v1 Event about ``obj``, stamped now."""
    metadata = obj["metadata"]
    now = format_time(datetime.now(UTC))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": shorten_bytes(message, 1024),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, client: KubeClient, *, senders: int = 16, backlog: int = 10_000) -> None:
        self._client = client
        self._instance = socket.gethostname()
        self._senders = senders
        self._backlog: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=backlog)
        self._tasks: list[asyncio.Task[None]] = []

    def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue one Event for posting; never blocks and never fails the reconcile that wanted it."""
        event = event_body(obj, type_, reason, message, self._instance)
        try:
            self._backlog.put_nowait(event)
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.inc()
            logger.warning("Event backlog full: dropped %s", reason, extra=logs.about(obj))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send(), name=f"event-sender-{i}") for i in range(self._senders)]

    def discard_pending(self) -> int:
        """Drop every Event not yet posted (a replica that stopped leading); returns how many."""
        dropped = 0
        while not self._backlog.empty():
            self._backlog.get_nowait()
            self._backlog.task_done()
            dropped += 1
        return dropped

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Post what is queued (for at most ``flush_timeout`` seconds), then stop the senders."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):  # not wait_for: see LeaderElector._bounded
                    await self._backlog.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _send(self) -> None:
        while True:
            event = await self._backlog.get()
            try:
                await self._client.create(EVENTS, event["metadata"]["namespace"], event)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Caught broadly: a sender that died would silence every later Event. A lost
                # Event is logged, never retried: Events are best effort by contract.
                involved = event["involvedObject"]
                logger.warning(
                    "could not post Event %s: %s",
                    event["reason"],
                    error,
                    extra=logs.about_object(str(involved["kind"]), str(involved["namespace"]), str(involved["name"])),
                )
            finally:
                self._backlog.task_done()
