"""The Prometheus client against hostile answers, served by real aiohttp servers on 127.0.0.1.

Each server answers ``/<behaviour>/api/v1/query`` as the behaviour says (a huge body, no
answer at all, a body that trickles, NaN and the infinities, 500 series, a redirect, a
gzip body, JSON nested beyond reason), and records what it was asked. Every request must
end within its timeout with an error the DriftPolicy can show; none may crash the
evaluation or make the operator read more than its cap.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from perennial.adapters import prometheus
from perennial.adapters.prometheus import (
    DEFAULT_MAX_RESPONSE_BYTES,
    PrometheusClient,
    PrometheusTimeoutError,
    PrometheusUnreachableError,
    QueryError,
    ResponseTooLargeError,
)
from perennial.domain import drift

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


def vector(*values: str, labels: Callable[[int], dict[str, str]] = lambda i: {}) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels(i), "value": [1.7e9, v]} for i, v in enumerate(values)],
        },
    }


def padded(size: int) -> bytes:
    """A valid Prometheus answer of exactly ``size`` bytes (a long label value pads it)."""
    empty = json.dumps(vector("0.31", labels=lambda i: {"pad": ""}), separators=(",", ":")).encode()
    answer = json.dumps(vector("0.31", labels=lambda i: {"pad": "x" * (size - len(empty))}), separators=(",", ":"))
    assert len(answer) == size
    return answer.encode()


@dataclass
class Server:
    """A Prometheus impostor; ``behaviours`` maps the first path segment to a handler."""

    url: str
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    """(behaviour, query parameters, request headers) of every request."""
    in_flight: int = 0
    in_flight_changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    sent_bytes: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_to: str = "http://169.254.169.254/latest/meta-data/"

    def base(self, behaviour: str) -> str:
        return f"{self.url}/{behaviour}"

    async def count_in_flight(self, change: int) -> None:
        async with self.in_flight_changed:
            self.in_flight += change
            self.in_flight_changed.notify_all()

    async def wait_in_flight(self, count: int) -> None:
        async with self.in_flight_changed:
            await self.in_flight_changed.wait_for(lambda: self.in_flight >= count)


Handler = Callable[[Server, web.Request], Awaitable[web.StreamResponse]]


async def _json(_: Server, request: web.Request) -> web.Response:
    return web.json_response(vector("0.31"))


def _value(text: str) -> Handler:
    async def handler(_: Server, request: web.Request) -> web.Response:
        return web.json_response(vector(text))

    return handler


async def _series(_: Server, request: web.Request) -> web.Response:
    return web.json_response(vector(*(["0.31"] * 500), labels=lambda i: {"pod": f"p{i}"}))


async def _hang(server: Server, request: web.Request) -> web.Response:
    await server.count_in_flight(1)
    try:
        await server.release.wait()
    finally:
        await server.count_in_flight(-1)
    return web.json_response(vector("0.31"))


async def _trickle(server: Server, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"status":"success","data":{"resultType":"vector","result":[')
    while not server.release.is_set():
        await response.write(b" ")
        await asyncio.sleep(0.05)
    return response


async def _endless(server: Server, request: web.Request) -> web.StreamResponse:
    """200 MiB of a valid-looking answer, chunked, without a Content-Length."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * (256 * 1024)
    await response.write(b'{"status":"success","data":{"resultType":"vector","result":[')
    try:
        for _ in range(800):
            await response.write(chunk)
            server.sent_bytes += len(chunk)
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass  # the client stopped reading and went away
    return response


async def _declared_huge(server: Server, request: web.Request) -> web.StreamResponse:
    """Says Content-Length 50 MiB up front; sends a little and waits."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 50 * MiB
    await response.prepare(request)
    await response.write(b"{")
    await server.release.wait()
    return response


def _exactly(size: int) -> Handler:
    async def handler(_: Server, request: web.Request) -> web.Response:
        return web.Response(body=padded(size), content_type="application/json")

    return handler


async def _redirect(server: Server, request: web.Request) -> web.Response:
    raise web.HTTPFound(location=server.redirect_to)


async def _gzip(_: Server, request: web.Request) -> web.Response:
    # 64 MiB of JSON whitespace compress to some 64 KiB: a decompression bomb under any cap.
    body = gzip.compress(b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * (64 * MiB) + b"]}}")
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def _nested(_: Server, request: web.Request) -> web.Response:
    return web.Response(body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json")


async def _bad_gateway(_: Server, request: web.Request) -> web.Response:
    return web.Response(status=502, text="<html>upstream down</html>", content_type="text/html")


async def _long_error(_: Server, request: web.Request) -> web.Response:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error: " + "x" * 100_000}
    return web.json_response(body, status=400)


BEHAVIOURS: dict[str, Handler] = {
    "ok": _json,
    "inf": _value("+Inf"),
    "minus-inf": _value("-Inf"),
    "nan": _value("NaN"),
    "series": _series,
    "hang": _hang,
    "trickle": _trickle,
    "endless": _endless,
    "declared-huge": _declared_huge,
    "at-cap": _exactly(DEFAULT_MAX_RESPONSE_BYTES),
    "over-cap": _exactly(DEFAULT_MAX_RESPONSE_BYTES + 1),
    "redirect": _redirect,
    "gzip": _gzip,
    "nested": _nested,
    "bad-gateway": _bad_gateway,
    "long-error": _long_error,
}


async def _serve(port: int) -> tuple[Server, web.AppRunner]:
    server = Server(f"http://127.0.0.1:{port}")

    async def handler(request: web.Request) -> web.StreamResponse:
        behaviour = request.match_info["behaviour"]
        server.seen.append((behaviour, dict(request.query), dict(request.headers)))
        return await BEHAVIOURS[behaviour](server, request)

    app = web.Application()
    app.router.add_get("/{behaviour}/api/v1/query", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return server, runner


@pytest.fixture
async def hostile(unused_tcp_port_factory: Callable[[], int]) -> AsyncIterator[Server]:
    server, runner = await _serve(unused_tcp_port_factory())
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def healthy(unused_tcp_port_factory: Callable[[], int]) -> AsyncIterator[Server]:
    server, runner = await _serve(unused_tcp_port_factory())
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[PrometheusClient]:
    created = PrometheusClient()
    yield created
    await created.close()


# ---------------------------------------------------------------- values that are not numbers
@pytest.mark.parametrize(("behaviour", "shown"), [("inf", "+Inf"), ("minus-inf", "-Inf"), ("nan", "NaN")])
async def test_non_finite_values_reach_the_domain_as_non_finite_errors(
    client: PrometheusClient, hostile: Server, behaviour: str, shown: str
) -> None:
    data = await client.query(hostile.base(behaviour), "x", timeout_seconds=5)

    with pytest.raises(drift.NonFiniteValueError, match=re.escape(f"is {shown}, not a finite number")):
        drift.single_value(data)


async def test_hundreds_of_series_are_an_error_naming_the_count(client: PrometheusClient, hostile: Server) -> None:
    data = await client.query(hostile.base("series"), "x", timeout_seconds=5)

    with pytest.raises(drift.DriftDataError, match="500 series; aggregate"):
        drift.single_value(data)


# ---------------------------------------------------------------- bodies larger than the cap
async def test_the_default_cap_is_10_mib_inclusive(client: PrometheusClient, hostile: Server) -> None:
    assert 10 * MiB == DEFAULT_MAX_RESPONSE_BYTES
    data = await client.query(hostile.base("at-cap"), "x", timeout_seconds=20)
    assert drift.single_value(data) == 0.31

    with pytest.raises(ResponseTooLargeError, match="larger than 10 MiB") as raised:
        await client.query(hostile.base("over-cap"), "x", timeout_seconds=20)

    assert isinstance(raised.value, QueryError), "a DriftPolicy shows it as a QueryError"
    assert "PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES" in str(raised.value)
    assert "aggregate" in str(raised.value)


async def test_an_endless_body_is_refused_at_the_cap_without_reading_the_rest(
    client: PrometheusClient, hostile: Server
) -> None:
    with pytest.raises(ResponseTooLargeError, match="larger than 1 MiB"):
        await client.query(hostile.base("endless"), "x", timeout_seconds=20, max_response_bytes=MiB)

    # The client hung up after about 1 MiB; the server got rid of a few socket buffers'
    # worth more at most, far from the 200 MiB it meant to send.
    await asyncio.sleep(0)
    assert hostile.sent_bytes < 50 * MiB


async def test_a_declared_content_length_over_the_cap_is_refused_before_reading(
    client: PrometheusClient, hostile: Server
) -> None:
    with pytest.raises(ResponseTooLargeError, match=r"larger than 10 MiB \(50 MiB\)"):
        await client.query(hostile.base("declared-huge"), "x", timeout_seconds=20)


async def test_a_compressed_body_is_refused_not_inflated(client: PrometheusClient, hostile: Server) -> None:
    with pytest.raises(PrometheusUnreachableError, match="Content-Encoding gzip"):
        await client.query(hostile.base("gzip"), "x", timeout_seconds=20)

    (_, _, headers) = hostile.seen[-1]
    assert headers["Accept-Encoding"] == "identity"


# ---------------------------------------------------------------- endpoints that hang
async def test_an_endpoint_that_never_answers_times_out_with_a_clear_message(
    client: PrometheusClient, hostile: Server
) -> None:
    with pytest.raises(PrometheusTimeoutError, match=r"/hang: no answer within 0\.5s$") as raised:
        await client.query(hostile.base("hang"), "x", timeout_seconds=0.5)

    assert isinstance(raised.value, PrometheusUnreachableError)
    (_, params, _) = hostile.seen[-1]
    assert params["timeout"] == "0.5s", "Prometheus is told the same timeout"


async def test_a_body_that_trickles_forever_times_out(client: PrometheusClient, hostile: Server) -> None:
    with pytest.raises(PrometheusTimeoutError, match=r"no answer within 0\.5s"):
        await client.query(hostile.base("trickle"), "x", timeout_seconds=0.5)


async def test_endpoints_that_hang_hold_no_connection_another_endpoint_needs(
    client: PrometheusClient, hostile: Server, healthy: Server
) -> None:
    # More hanging requests than one endpoint may have connections: the surplus waits for
    # that endpoint's connections, never for the healthy endpoint's.
    hanging = [
        asyncio.create_task(client.query(hostile.base("hang"), "x", timeout_seconds=30))
        for _ in range(prometheus.CONNECTIONS_PER_ENDPOINT + 8)
    ]
    try:
        await hostile.wait_in_flight(prometheus.CONNECTIONS_PER_ENDPOINT)

        data = await client.query(healthy.base("ok"), "x", timeout_seconds=5)

        assert drift.single_value(data) == 0.31
        assert not any(task.done() for task in hanging), "the healthy answer came while all of them hung"
        hostile.release.set()
    finally:
        await asyncio.gather(*hanging, return_exceptions=True)


# ---------------------------------------------------------------- answers that are not the Prometheus API
async def test_a_redirect_is_not_followed(client: PrometheusClient, hostile: Server, healthy: Server) -> None:
    # An allowed endpoint must not be a way to reach one that is not allowed.
    hostile.redirect_to = f"{healthy.base('ok')}/api/v1/query?query=x"

    with pytest.raises(PrometheusUnreachableError, match=r"HTTP 302 .*redirects are not followed"):
        await client.query(hostile.base("redirect"), "x", timeout_seconds=5)

    assert healthy.seen == [], "the redirect's target was asked"


async def test_json_nested_beyond_reason_is_an_error_not_a_crash(client: PrometheusClient, hostile: Server) -> None:
    with pytest.raises(PrometheusUnreachableError, match="without the Prometheus API's JSON"):
        await client.query(hostile.base("nested"), "x", timeout_seconds=10)


async def test_an_html_error_page_is_unreachable_with_its_status(client: PrometheusClient, hostile: Server) -> None:
    with pytest.raises(PrometheusUnreachableError, match="answered HTTP 502"):
        await client.query(hostile.base("bad-gateway"), "x", timeout_seconds=5)


async def test_a_long_prometheus_error_is_clipped(client: PrometheusClient, hostile: Server) -> None:
    with pytest.raises(QueryError) as raised:
        await client.query(hostile.base("long-error"), "x", timeout_seconds=5)

    message = str(raised.value)
    assert message.startswith("bad_data: parse error: xxx")
    assert len(message) <= 1024
    assert message.endswith("...")
