"""The Prometheus HTTP API client shared by every DriftPolicy: one aiohttp session, no threads.

A Prometheus answer is read as untrusted input: every request ends within its timeout
(connecting, waiting for a pooled connection and reading the body included), the body is
read in chunks and refused past a byte cap (asked uncompressed, so no small body inflates
past the cap), redirects are not followed (an allowed endpoint cannot send the operator
elsewhere), and each endpoint has its own share of connections, so one that hangs holds
none that another endpoint needs.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import aiohttp

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# Connections per endpoint (scheme, host, port): enough for Prometheus's own query
# concurrency (20 by default) with room to spare; the total grows only with endpoints,
# which the operator's allowlist bounds.
CONNECTIONS_PER_ENDPOINT = 64
_CHUNK = 64 * 1024
_MESSAGE = 1024  # characters of a Prometheus error kept in a message (status fields are bounded)


class PrometheusUnreachableError(Exception):
    """The server could not be reached (or answered something that is not the Prometheus API)."""


class PrometheusTimeoutError(PrometheusUnreachableError):
    """No complete answer within the request's timeout."""


class QueryError(Exception):
    """Prometheus rejected the query; the message is Prometheus's own."""


class ResponseTooLargeError(QueryError):
    """The answer exceeds the byte cap: almost always a query selecting too many series."""


class PrometheusClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_ENDPOINT),
                # The cap counts the bytes read; a compressed body would inflate past it.
                auto_decompress=False,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(
        self,
        base_url: str,
        expression: str,
        *,
        timeout_seconds: float,
        at: datetime | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> dict[str, Any]:
        """An instant query; returns the ``data`` object ({resultType, result})."""
        params = {"query": expression, "timeout": f"{timeout_seconds:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        url = f"{base_url.rstrip('/')}/api/v1/query"
        try:
            # aiohttp's own total timeout, and an outer one that also covers the body read.
            async with asyncio.timeout(timeout_seconds):
                async with self._client().get(
                    url,
                    params=params,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                ) as response:
                    status = response.status
                    if 300 <= status < 400:
                        raise PrometheusUnreachableError(
                            f"{base_url} answered HTTP {status} (a redirect); redirects are not followed"
                        )
                    raw = await _read_capped(response, base_url, max_response_bytes)
        except TimeoutError as error:
            raise PrometheusTimeoutError(f"{base_url}: no answer within {timeout_seconds:g}s") from error
        except aiohttp.ClientError as error:
            raise PrometheusUnreachableError(f"{base_url}: {error.__class__.__name__}: {error}") from error
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested beyond reason
            raise PrometheusUnreachableError(
                f"{base_url} answered HTTP {status} without the Prometheus API's JSON"
            ) from error
        if not isinstance(body, dict):
            raise PrometheusUnreachableError(f"{base_url} answered something that is not the Prometheus API")
        if body.get("status") != "success":
            raise QueryError(_clip(f"{body.get('errorType', 'error')}: {body.get('error', 'unknown error')}"))
        data = body.get("data")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise PrometheusUnreachableError(f"{base_url} answered something that is not the Prometheus API")
        return data


async def _read_capped(response: aiohttp.ClientResponse, base_url: str, limit: int) -> bytes:
    """The body, read a chunk at a time; past ``limit`` bytes it is refused, not buffered."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise PrometheusUnreachableError(
            f"{base_url} answered with Content-Encoding {_clip(encoding)} though the operator asked for none"
        )
    if response.content_length is not None and response.content_length > limit:
        raise ResponseTooLargeError(_too_large(response.content_length, limit))
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise ResponseTooLargeError(_too_large(None, limit))
    return bytes(body)


def _too_large(size: int | None, limit: int) -> str:
    told = f" ({_size(size)})" if size is not None else ""
    return (
        f"the answer is larger than {_size(limit)}{told}, the operator's cap"
        " (PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES): aggregate the query so it returns fewer series"
    )


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):g} MiB"
    if count >= 1024:
        return f"{count / 1024:g} KiB"
    return f"{count} bytes"


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE else text[: _MESSAGE - 3] + "..."
