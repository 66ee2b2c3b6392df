"""An authenticating TLS reverse proxy in front of Prometheus, as Thanos behind OAuth or Mimir would be.

It serves TLS with a certificate from a private CA (``tests.support.tls``), asks for a
client certificate (and records its subject when one is presented), requires one of its
bearer tokens or basic-auth pairs and a tenant header (``X-Scope-OrgID``), answers 401
otherwise (403 for a known tenant it does not serve), and forwards what it accepts to the
upstream Prometheus. Without an upstream it answers every query with ``ANSWER``. It runs
its own event loop in a thread, so both async unit tests and e2e tests (whose operator
runs in another process) can use it, and it records every request it received.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.tls import Pki

TENANT_HEADER = "X-Scope-OrgID"
ANSWER = 0.42


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Seen:
    """One request the proxy received."""

    path: str
    query: str
    authorization: str
    """``Bearer <token>``, ``Basic <user>:<password>`` (decoded), or empty."""
    tenant: str | None
    client: str | None
    """The client certificate's common name, when one was presented."""
    status: int
    """What the proxy answered."""


@dataclass
class AuthProxy:
    pki: Pki | None
    """None: plain http (for requests that must fail on credentials, not on TLS)."""
    upstream: str | None = None
    tokens: set[str] = field(default_factory=set)
    basic: set[tuple[str, str]] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)
    """Tenants served; a request needs one of them in X-Scope-OrgID (empty: no header needed)."""
    forbidden_tenants: set[str] = field(default_factory=set)
    """Tenants it knows but does not serve: 403."""
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="auth-proxy")
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def start(self) -> AuthProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> AuthProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _server_context(self) -> ssl.SSLContext | None:
        if self.pki is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.path("server.crt"), self.pki.path("server.key"))
        context.load_verify_locations(cafile=str(self.pki.path("ca.crt")))
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is recorded, not required
        return context

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._server_context()).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _record(self, request: web.Request, authorization: str, status: int) -> None:
        client = None
        peer = request.transport.get_extra_info("peercert") if request.transport is not None else None
        if peer:
            names = dict(pair[0] for pair in peer.get("subject", ()))
            client = names.get("commonName")
        seen = Seen(
            request.path,
            request.query.get("query", ""),
            authorization,
            request.headers.get(TENANT_HEADER),
            client,
            status,
        )
        with self._lock:
            self.seen.append(seen)

    def _authorization(self, request: web.Request) -> tuple[str, bool]:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme == "Bearer":
            return header, credentials in self.tokens
        if scheme == "Basic":
            try:
                user, _, password = base64.b64decode(credentials).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return header, False
            return f"Basic {user}:{password}", (user, password) in self.basic
        return header, False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        authorization, accepted = self._authorization(request)
        tenant = request.headers.get(TENANT_HEADER)
        if not accepted or (self.tenants and tenant not in self.tenants | self.forbidden_tenants):
            self._record(request, authorization, 401)
            return web.Response(status=401, text="unauthorized\n", headers={"WWW-Authenticate": 'Bearer realm="test"'})
        if tenant in self.forbidden_tenants:
            self._record(request, authorization, 403)
            return web.Response(status=403, text="forbidden\n")
        if self.upstream is None:
            self._record(request, authorization, 200)
            answer = {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, str(ANSWER)]}]}
            return web.json_response({"status": "success", "data": answer})
        assert self._session is not None
        async with self._session.get(f"{self.upstream}{request.path_qs}") as upstream:
            body = await upstream.read()
            self._record(request, authorization, upstream.status)
            return web.Response(status=upstream.status, body=body, content_type="application/json")
