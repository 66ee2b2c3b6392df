"""The operator's Kubernetes API client: async, JSON in and out, on the official client.

Watches are kopf's; this client does the writes and the rare reads a watch cannot
answer. Both log in through the same ``Login`` (``perennial.adapters.login``; kopf via
``kopf.on.login`` in ``perennial.main``), so the operator has one notion of "which
cluster, as whom", and both pick up renewed credentials.

Pacing: at most ``max_in_flight`` requests are open at once, and a 429 (API Priority and
Fairness turning a request away) is retried after the server's ``Retry-After``, as
client-go does. A client-side token bucket is optional (``PERENNIAL_API_QPS``): off by
default, because a fixed QPS caps a busy operator far below what the server would give it
(the scale benchmark measured it: benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from kubernetes.aio.client.rest import RESTClientObject
from kubernetes.aio.utils.retry import DEFAULT_RETRY_AFTER_BACKOFF, is_retry_after_response, on_retry_after_error

from perennial import __version__
from perennial.adapters import metrics
from perennial.adapters.login import Credentials, Login
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
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")

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
USER_AGENT = f"perennial-operator/{__version__}"


def resource_of(manifest: Mapping[str, Any]) -> Resource:
    """The resource a child manifest belongs to."""
    return _BY_KIND[(str(manifest.get("apiVersion")), str(manifest.get("kind")))]


def resource_named(plural: str) -> Resource:
    return _BY_PLURAL[plural]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # Read by the official client's retry helpers (Retry-After).
        self.headers: Mapping[str, str] = headers or {}

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        return self.status == 409


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


# One API request's limit; the watches are kopf's and have their own.
REQUEST_TIMEOUT_SECONDS = 60.0
# A connection pool replaced by a login with new TLS material is closed this long after,
# once the requests still using it have ended (they cannot outlive their timeout).
RETIRED_POOL_GRACE_SECONDS = REQUEST_TIMEOUT_SECONDS + 5


def environment_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts it."""
    parts = urlsplit(url)
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


class KubeClient:
    """JSON requests to the API server over the official client's transport.

    ``kubernetes.aio`` provides the connection pool (TLS from the login's configuration)
    and client-go's Retry-After semantics; ``Login`` the credentials, renewed before
    they expire and after a 401. Objects stay plain dicts: the generated model classes
    would cost about 35 MiB of memory and a conversion per request for nothing.
    """

    def __init__(
        self,
        login: Login,
        *,
        qps: float = 0.0,
        burst: int = 100,
        max_in_flight: int = 32,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._login = login
        self._user_agent = user_agent  # audit logs tell the operator from a person's tool
        self._limiter = TokenBucket(qps, burst) if qps > 0 else None
        self._max_in_flight = max_in_flight
        self._pool: RESTClientObject | None = None
        self._pool_transport: tuple[Any, ...] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def login(self) -> Login:
        return self._login

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _pool_for(self, credentials: Credentials) -> RESTClientObject:
        if self._pool is None or self._pool_transport != credentials.transport:
            if self._pool is not None:
                self._retire(self._pool)
            configuration = credentials.configuration
            configuration.connection_pool_maxsize = self._max_in_flight
            configuration.retries = None  # Retry-After is handled in ``request`` for every verb
            # The client's session trusts the environment, and aiohttp then looks up
            # proxies and ~/.netrc in a worker thread for every request: five times the
            # CPU of the request itself. The environment's proxy is resolved once here.
            configuration.client_session_kwargs = {"trust_env": False}
            configuration.proxy = configuration.proxy or environment_proxy(str(configuration.host))
            self._pool = RESTClientObject(configuration)
            self._pool_transport = credentials.transport
        return self._pool

    def _retire(self, pool: RESTClientObject) -> None:
        async def close_later() -> None:
            await asyncio.sleep(RETIRED_POOL_GRACE_SECONDS)
            await pool.close()

        task = asyncio.create_task(close_later(), name="kube-pool-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        url_path = path + ("?" + urlencode(params) if params else "")
        credentials = await self._login.credentials()
        try:
            return await self._send_paced(credentials, method, url_path, body, content_type)
        except ApiError as error:
            if error.status != 401:
                raise
        # Refused: a token revoked or rotated before we noticed. Log in again, once.
        credentials = await self._login.refresh(credentials)
        return await self._send_paced(credentials, method, url_path, body, content_type)

    async def _send_paced(
        self, credentials: Credentials, method: str, path: str, body: Mapping[str, Any] | None, content_type: str
    ) -> dict[str, Any]:
        """One request, retried as client-go does while the server answers 429 (or a 5xx) with Retry-After.

        A 429 is API Priority and Fairness turning the request away before it ran, so
        even a POST is safe to send again.
        """

        async def attempt() -> dict[str, Any]:
            if self._limiter is not None:
                await self._limiter.take()
            return await self._send(credentials, method, path, body, content_type)

        return await on_retry_after_error(DEFAULT_RETRY_AFTER_BACKOFF, is_retry_after_response, attempt)

    async def _send(
        self, credentials: Credentials, method: str, path: str, body: Mapping[str, Any] | None, content_type: str
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type, "User-Agent": self._user_agent}
        if credentials.authorization:
            headers["Authorization"] = credentials.authorization
        started = time.monotonic()
        response = await self._pool_for(credentials).request(
            method,
            credentials.server + path,
            headers=headers,
            body=dict(body) if body is not None else None,
            _request_timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        )
        try:
            payload = await response.read()
        finally:
            response.response.release()
        metrics.API_REQUESTS.labels(method=method, code=str(response.status)).inc()
        metrics.API_REQUEST_DURATION.labels(method=method).observe(time.monotonic() - started)
        try:
            document: dict[str, Any] = json.loads(payload) if payload else {}
        except ValueError:
            document = {}  # a proxy's HTML error page: the status says enough
        if response.status < 400:
            return document
        raise ApiError(
            response.status,
            str(document.get("reason") or response.reason or ""),
            str(document.get("message") or payload[:200].decode(errors="replace")),
            headers=response.headers,
        )

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

    async def replace(self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object; refused (409) unless its resourceVersion is the stored one."""
        return await self.request("PUT", resource.path(namespace, name), body=body)

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
