"""The Prometheus HTTP API client shared by every DriftPolicy: one aiohttp session, no threads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp


class PrometheusUnreachableError(Exception):
    """The server could not be reached (or answered something that is not the Prometheus API)."""


class QueryError(Exception):
    """Prometheus rejected the query; the message is Prometheus's own."""


class PrometheusClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(
        self, base_url: str, expression: str, *, timeout_seconds: float, at: datetime | None = None
    ) -> dict[str, Any]:
        """An instant query; returns the ``data`` object ({resultType, result})."""
        params = {"query": expression, "timeout": f"{timeout_seconds:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        url = f"{base_url.rstrip('/')}/api/v1/query"
        try:
            async with self._client().get(
                url, params=params, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError as error:
                    raise PrometheusUnreachableError(
                        f"{base_url} answered HTTP {response.status} without the Prometheus API's JSON"
                    ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PrometheusUnreachableError(f"{base_url}: {error.__class__.__name__}: {error}") from error
        if not isinstance(body, dict):
            raise PrometheusUnreachableError(f"{base_url} answered something that is not the Prometheus API")
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', 'unknown error')}")
        data: dict[str, Any] = body.get("data") or {}
        return data
