"""The one Kubernetes API client of the operator: async, JSON in and out, rate-limited.

Watches are kopf's; this client does the writes and the rare reads a watch cannot
answer. It authenticates with the same credentials kopf logged in with (``kopf.on.login``
in ``perennial.main``), so the operator has one notion of "which cluster, as whom".

Pacing: at most ``max_in_flight`` requests are open at once, and a 429 (API Priority and
Fairness turning a request away) is retried after the server's ``Retry-After``, as
client-go does. A client-side token bucket is optional (``PERENNIAL_API_QPS``): off by
default, because a fixed QPS caps a busy operator far below what the server would give it
(the scale benchmark measured it: benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from perennial.adapters import metrics
from perennial.api.base import API_VERSION, GROUP, VERSION


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of an object (or of its kind's collection); namespace None: across all namespaces."""
        prefix = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is None:
            return f"{prefix}/{self.plural}"
        path = f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        if name is not None:
            path += f"/{quote(name)}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


JOBS = Resource("batch", "v1", "jobs")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
PODS = Resource("", "v1", "pods")
TRAINING_JOBS = Resource(GROUP, VERSION, "trainingjobs")
MODEL_DEPLOYMENTS = Resource(GROUP, VERSION, "modeldeployments")
DRIFT_POLICIES = Resource(GROUP, VERSION, "driftpolicies")

# The kinds the operator writes as children, by (apiVersion, kind) of their manifests.
_BY_KIND = {
    ("batch/v1", "Job"): JOBS,
    ("apps/v1", "Deployment"): DEPLOYMENTS,
    ("v1", "Service"): SERVICES,
    (API_VERSION, "TrainingJob"): TRAINING_JOBS,
}
_BY_PLURAL = {resource.plural: resource for resource in _BY_KIND.values()}

Items = list[dict[str, Any]]  # a LIST's items
# Objects per page of a paginated LIST (client-go's pager uses 500).
LIST_PAGE_SIZE = 500

# Server-side apply's field manager: `kubectl get -o yaml --show-managed-fields` shows it.
FIELD_MANAGER = "perennial"


def resource_of(manifest: Mapping[str, Any]) -> Resource:
    """The resource a child manifest belongs to."""
    return _BY_KIND[(str(manifest.get("apiVersion")), str(manifest.get("kind")))]


def resource_named(plural: str) -> Resource:
    return _BY_PLURAL[plural]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Credentials:
    """What kopf's login produced, reduced to what an HTTP client needs."""

    server: str
    ca_data: bytes | str | None = None  # PEM, raw or base64 as in a kubeconfig
    ca_path: str | None = None
    insecure: bool = False
    certificate_data: bytes | str | None = None
    certificate_path: str | None = None
    private_key_data: bytes | str | None = None
    private_key_path: str | None = None
    token: str | None = None


class TokenBucket:
    """Client-side rate limit: ``qps`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.qps)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.qps)


def _as_bytes(data: bytes | str | None) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data
    # kubeconfig *-data fields are base64; kopf passes them through decoded or not depending on source.
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return data.encode()


def _ssl_context(credentials: Credentials) -> ssl.SSLContext | bool:
    if credentials.insecure:
        return False
    context = ssl.create_default_context()
    ca_data = _as_bytes(credentials.ca_data)
    certificate_data = _as_bytes(credentials.certificate_data)
    private_key_data = _as_bytes(credentials.private_key_data)
    if credentials.ca_path:
        context.load_verify_locations(cafile=credentials.ca_path)
    elif ca_data:
        context.load_verify_locations(cadata=ca_data.decode())
    cert = credentials.certificate_path
    key = credentials.private_key_path
    if certificate_data and private_key_data:
        # ssl loads client certificates from files only: a private temp dir, removed at once.
        with tempfile.TemporaryDirectory() as directory:
            cert = os.path.join(directory, "client.crt")
            key = os.path.join(directory, "client.key")
            with open(cert, "wb") as handle:
                handle.write(certificate_data)
            with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(private_key_data)
            context.load_cert_chain(cert, key)
        return context
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


# client-go's limit for retries on Retry-After; each wait is capped so a confused server
# cannot park a reconcile for long.
MAX_THROTTLED_RETRIES = 10
MAX_RETRY_AFTER_SECONDS = 10.0


def retry_after_seconds(status: int, header: str | None) -> float | None:
    """How long to wait before retrying a throttled request, or None when it must not be retried.

    A 429 is always retried (APF rejected it before it ran, so even a POST is safe); a 5xx
    only when the server asked for it with ``Retry-After``, as client-go does.
    """
    if status != 429 and not (status >= 500 and header):
        return None
    try:
        seconds = float(header) if header else 1.0
    except ValueError:
        seconds = 1.0  # an HTTP-date: not worth parsing for a one-second default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class KubeClient:
    def __init__(
        self, credentials: Credentials, *, qps: float = 0.0, burst: int = 100, max_in_flight: int = 32
    ) -> None:
        self.server = credentials.server.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "perennial-operator"}
        if credentials.token:
            self._headers["Authorization"] = f"Bearer {credentials.token}"
        self._ssl = _ssl_context(credentials)
        self._limiter = TokenBucket(qps, burst) if qps > 0 else None
        self._max_in_flight = max_in_flight
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_in_flight),
                timeout=aiohttp.ClientTimeout(total=60),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if body is not None else None
        retries = 0
        while True:
            if self._limiter is not None:
                await self._limiter.take()
            started = time.monotonic()
            async with self._client().request(
                method, self.server + path, data=data, params=params, headers=headers
            ) as response:
                payload = await response.read()
                metrics.API_REQUESTS.labels(method=method, code=str(response.status)).inc()
                metrics.API_REQUEST_DURATION.labels(method=method).observe(time.monotonic() - started)
                document: dict[str, Any] = json.loads(payload) if payload else {}
                if response.status < 400:
                    return document
                error = ApiError(
                    response.status,
                    str(document.get("reason") or response.reason or ""),
                    str(document.get("message") or payload[:200].decode(errors="replace")),
                )
                wait = retry_after_seconds(response.status, response.headers.get("Retry-After"))
            if wait is None or retries == MAX_THROTTLED_RETRIES:
                raise error
            retries += 1
            await asyncio.sleep(wait)

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", resource.path(namespace, name))

    async def list(self, resource: Resource, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        document = await self.request("GET", resource.path(namespace), params={"labelSelector": label_selector})
        items: list[dict[str, Any]] = document.get("items", [])
        return items

    async def list_pages(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str = "",
        *,
        limit: int = LIST_PAGE_SIZE,
    ) -> AsyncIterator[tuple[Items, str]]:
        """LIST a kind in pages of ``limit``: yields (items, the list's resourceVersion).

        ``namespace`` None lists across all namespaces. The first page asks for
        ``resourceVersion=0``: served from the API server's watch cache, as client-go's
        reflector lists, instead of a quorum read of etcd; the snapshot may be slightly
        older than what a watch already delivered, which the list's resourceVersion tells.
        Later pages follow the server's ``continue`` token (the same snapshot). One page
        at a time is held, so a big kind never sits in memory whole.
        """
        params = {"limit": str(limit), "resourceVersion": "0"}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            document = await self.request("GET", resource.path(namespace), params=params)
            metadata = document.get("metadata") or {}
            items: Items = document.get("items") or []
            # Items of built-in kinds come without apiVersion and kind: a watch event's body has them.
            kind = str(document.get("kind") or "").removesuffix("List")
            for item in items:
                item.setdefault("apiVersion", document.get("apiVersion"))
                item.setdefault("kind", kind)
            yield items, str(metadata.get("resourceVersion") or "")
            token = metadata.get("continue")
            if not token:
                return
            # A continued LIST must not name a resourceVersion: the token carries the snapshot.
            params = {"limit": str(limit), "continue": str(token)}
            if label_selector:
                params["labelSelector"] = label_selector

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), body=body, params={"fieldManager": FIELD_MANAGER})

    async def apply(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as ``perennial``, forcing: Perennial's fields become what ``body`` says.

        Fields ``body`` leaves out stay as their owners set them. JSON is YAML, so the body
        goes as ``application/apply-patch+yaml`` unchanged.
        """
        return await self.request(
            "PATCH",
            resource.path(namespace, body["metadata"]["name"]),
            body=body,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    async def delete(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("DELETE", resource.path(namespace, name), body={"propagationPolicy": "Background"})

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the object (for the few fields Perennial sets on a child it never applies)."""
        return await self.request(
            "PATCH", resource.path(namespace, name), body=dict(patch), content_type="application/merge-patch+json"
        )

    async def patch_status(
        self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """Merge-patch the status subresource; with a resourceVersion it fails (409) on a stale read."""
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.request(
            "PATCH",
            resource.path(namespace, name, "status"),
            body=patch,
            content_type="application/merge-patch+json",
        )
