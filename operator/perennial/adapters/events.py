"""Kubernetes Events about Perennial objects (what `kubectl describe` shows under Events)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from perennial.adapters import logs
from perennial.adapters.kube import ApiError, KubeClient, Resource
from perennial.domain.timeutil import format_time

EVENTS = Resource("", "v1", "events")
COMPONENT = "perennial"
logger = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._instance = socket.gethostname()

    async def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post one Event; failing to post never fails the reconcile that wanted it."""
        metadata = obj["metadata"]
        now = format_time(datetime.now(UTC))
        event = {
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
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._client.create(EVENTS, metadata["namespace"], event)
        except ApiError as error:
            logger.warning("could not post Event %s: %s", reason, error, extra=logs.about(obj))
