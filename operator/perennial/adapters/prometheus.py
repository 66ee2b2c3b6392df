"""The Prometheus HTTP API client shared by every DriftPolicy: one aiohttp session, no threads.

A Prometheus answer is read as untrusted input: every request ends within its timeout
(connecting, waiting for a pooled connection and reading the body included), the body is
read in chunks and refused past a byte cap (asked uncompressed, so no small body inflates
past the cap), redirects are not followed (an allowed endpoint cannot send the operator
elsewhere), and each endpoint has its own share of connections, so one that hangs holds
none that another endpoint needs.

A query goes to a named endpoint of the operator's settings (``EndpointSettings``: its
bearer token or basic auth, extra headers and TLS context go with every request) or to a
raw URL (a policy's ``spec.prometheus.url``, which never carries credentials). Token and
password files are read again whenever they change (a rotated token is used at once), as
are the CA and client certificate files of a TLS context. A refusal of the credentials
(HTTP 401/403) is an error of its own that says whose credentials were refused; no
message ever holds a credential.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from perennial.settings import EndpointSettings, EndpointTls, InvalidSettingsError, ssl_context

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


class PrometheusUnauthorizedError(PrometheusUnreachableError):
    """The endpoint refused the credentials the operator sent, or asked for some (HTTP 401 or 403)."""


class QueryError(Exception):
    """Prometheus rejected the query; the message is Prometheus's own."""


class ResponseTooLargeError(QueryError):
    """The answer exceeds the byte cap: almost always a query selecting too many series."""


_FileStamp = tuple[int, int, int]  # (inode, size, mtime): a file replaced or rewritten has another
_MAX_TLS_CONTEXTS = 256  # distinct TLS configurations kept; more only after many reloads


def describe(endpoint: str | EndpointSettings) -> str:
    """How messages name where a query went: a raw URL, or an endpoint by name and URL."""
    return endpoint if isinstance(endpoint, str) else f"endpoint {endpoint.name} ({endpoint.url})"


class PrometheusClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # One TLS context per TLS configuration (and version of its files): aiohttp pools
        # connections by context, so endpoints with the same configuration share a pool.
        self._contexts: dict[tuple[EndpointTls, tuple[_FileStamp, ...]], ssl.SSLContext] = {}
        self._secrets: dict[str, tuple[_FileStamp, str]] = {}

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
        endpoint: str | EndpointSettings,
        expression: str,
        *,
        timeout_seconds: float,
        at: datetime | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> dict[str, Any]:
        """An instant query to a named endpoint or a raw base URL; returns ``data`` ({resultType, result})."""
        params = {"query": expression, "timeout": f"{timeout_seconds:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        named = endpoint if isinstance(endpoint, EndpointSettings) else None
        base_url = named.url if named is not None else str(endpoint)
        where = describe(endpoint)
        url = f"{base_url.rstrip('/')}/api/v1/query"
        headers, tls = self._credentials(named) if named is not None else ({}, True)
        try:
            # aiohttp's own total timeout, and an outer one that also covers the body read.
            async with asyncio.timeout(timeout_seconds):
                async with self._client().get(
                    url,
                    params=params,
                    headers=headers,
                    ssl=tls,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                ) as response:
                    status = response.status
                    if 300 <= status < 400:
                        raise PrometheusUnreachableError(
                            f"{where} answered HTTP {status} (a redirect); redirects are not followed"
                        )
                    if status in (401, 403):
                        raise PrometheusUnauthorizedError(_refused(endpoint, status, response.reason))
                    raw = await _read_capped(response, where, max_response_bytes)
        except TimeoutError as error:
            raise PrometheusTimeoutError(f"{where}: no answer within {timeout_seconds:g}s") from error
        except aiohttp.ClientError as error:
            raise PrometheusUnreachableError(f"{where}: {error.__class__.__name__}: {error}") from error
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested beyond reason
            raise PrometheusUnreachableError(
                f"{where} answered HTTP {status} without the Prometheus API's JSON"
            ) from error
        if not isinstance(body, dict):
            raise PrometheusUnreachableError(f"{where} answered something that is not the Prometheus API")
        if body.get("status") != "success":
            raise QueryError(_clip(f"{body.get('errorType', 'error')}: {body.get('error', 'unknown error')}"))
        data = body.get("data")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise PrometheusUnreachableError(f"{where} answered something that is not the Prometheus API")
        return data

    # ------------------------------------------------------------ an endpoint's credentials
    def _credentials(self, endpoint: EndpointSettings) -> tuple[dict[str, str], ssl.SSLContext | bool]:
        """The headers (authorization and extra ones) and the TLS context of a request to ``endpoint``."""
        headers = dict(endpoint.headers)
        auth = endpoint.basic_auth
        if endpoint.bearer_token or endpoint.bearer_token_file:
            token = endpoint.bearer_token or self._secret(endpoint, "bearerTokenFile", endpoint.bearer_token_file)
            headers["Authorization"] = f"Bearer {token}"
        elif auth is not None:
            password = self._secret(endpoint, "basicAuth.passwordFile", auth.password_file) or auth.password
            # RFC 7617 with charset UTF-8 (what Prometheus's own basic_auth sends).
            credentials = base64.b64encode(f"{auth.username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        return headers, self._tls_context(endpoint)

    def _secret(self, endpoint: EndpointSettings, key: str, path: str) -> str:
        """A token or password file's content, read again only when the file changed."""
        if not path:
            return ""
        try:
            stamp = _stamp(path)
            cached = self._secrets.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            content = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise PrometheusUnreachableError(f"{describe(endpoint)}: cannot read its {key} {path} ({reason})") from None
        if not content or "\n" in content or "\r" in content:
            raise PrometheusUnreachableError(f"{describe(endpoint)}: its {key} {path} is empty or not one line")
        self._secrets[path] = (stamp, content)
        return content

    def _tls_context(self, endpoint: EndpointSettings) -> ssl.SSLContext | bool:
        tls = endpoint.tls
        if not tls.custom:
            return True  # the system's trust store, host names checked
        try:
            key = (tls, tuple(_stamp(path) for path in tls.files))
        except OSError as error:
            raise PrometheusUnreachableError(
                f"{describe(endpoint)}: cannot read its TLS file {error.filename} ({error.strerror})"
            ) from None
        context = self._contexts.get(key)
        if context is None:
            try:
                context = ssl_context(endpoint)
            except InvalidSettingsError as error:
                raise PrometheusUnreachableError(str(error)) from None
            assert context is not None
            if len(self._contexts) >= _MAX_TLS_CONTEXTS:
                self._contexts.clear()
            self._contexts[key] = context
        return context


def _stamp(path: str) -> _FileStamp:
    status = os.stat(path)  # follows symlinks: a Secret volume swaps its ..data link
    return status.st_ino, status.st_size, status.st_mtime_ns


def _refused(endpoint: str | EndpointSettings, status: int, reason: str | None) -> str:
    """Why an endpoint answered 401/403, and who can fix it: never the credentials themselves."""
    answered = f"{describe(endpoint)} answered HTTP {status} {reason or ''}".rstrip()
    if isinstance(endpoint, str):
        return (
            f"{answered}: a spec.prometheus.url is queried without credentials; name an endpoint the operator"
            " defines with credentials instead (spec.prometheus.endpoint)"
        )
    if status == 403:
        what = "accepted the operator's credentials but does not allow them to query"
    elif endpoint.has_credentials:
        what = "refused the operator's credentials"
    else:
        what = "asks for credentials and the endpoint has none"
    return (
        f"{answered}: it {what} (check its credentials and headers in the operator's Prometheus endpoints:"
        " PERENNIAL_PROMETHEUS_ENDPOINTS_FILE, chart value prometheus.endpoints)"
    )


async def _read_capped(response: aiohttp.ClientResponse, where: str, limit: int) -> bytes:
    """The body, read a chunk at a time; past ``limit`` bytes it is refused, not buffered."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise PrometheusUnreachableError(
            f"{where} answered with Content-Encoding {_clip(encoding)} though the operator asked for none"
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
