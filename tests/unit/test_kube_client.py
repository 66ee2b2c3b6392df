"""The API client's pacing: when a throttled request is retried, and that it is."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from perennial.adapters import kube
from perennial.adapters.kube import ApiError, Credentials, KubeClient, retry_after_seconds


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "2", 2.0),  # API Priority and Fairness rejected it: wait as told
        (429, None, 1.0),  # no header: a second, as client-go
        (429, "Wed, 21 Oct 2026 07:28:00 GMT", 1.0),  # an HTTP-date: the default
        (429, "3600", kube.MAX_RETRY_AFTER_SECONDS),  # capped
        (429, "-4", 0.0),
        (503, "1", 1.0),  # a 5xx that asks for a retry gets one
        (503, None, None),  # a 5xx that does not: the error goes to the caller
        (500, None, None),
        (409, "1", None),  # a conflict is an answer, not throttling
        (404, None, None),
    ],
)
def test_which_responses_are_retried_and_when(status: int, header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(status, header) == expected


@dataclass
class Endpoint:
    """A local HTTP endpoint that answers with ``answers`` in turn (then 201) and records what it saw."""

    url: str
    answers: list[int] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    clients: list[KubeClient] = field(default_factory=list)

    def client_for(self, answers: list[int]) -> KubeClient:
        self.answers[:] = answers
        client = KubeClient(Credentials(server=self.url))
        self.clients.append(client)
        return client


@pytest.fixture
async def endpoint(unused_tcp_port: int) -> AsyncIterator[Endpoint]:
    served = Endpoint(f"http://127.0.0.1:{unused_tcp_port}")

    async def handler(request: web.Request) -> web.Response:
        served.seen.append(request.method)
        status = served.answers.pop(0) if served.answers else 201
        body = {"kind": "Status", "reason": "TooManyRequests", "message": "slow down"} if status >= 400 else {}
        return web.json_response(body, status=status, headers={"Retry-After": "0"} if status == 429 else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield served
    for client in served.clients:
        await client.close()
    await runner.cleanup()


async def test_a_throttled_post_is_retried_until_it_lands(endpoint: Endpoint) -> None:
    client = endpoint.client_for([429, 429])
    await client.create(kube.JOBS, "ml", {"metadata": {"name": "churn-v1"}})
    assert endpoint.seen == ["POST", "POST", "POST"]


async def test_retries_stop_after_client_gos_limit(endpoint: Endpoint) -> None:
    client = endpoint.client_for([429] * (kube.MAX_THROTTLED_RETRIES + 1))
    with pytest.raises(ApiError) as raised:
        await client.create(kube.JOBS, "ml", {"metadata": {"name": "churn-v1"}})
    assert raised.value.status == 429
    assert raised.value.reason == "TooManyRequests"
    assert len(endpoint.seen) == kube.MAX_THROTTLED_RETRIES + 1


async def test_a_plain_server_error_is_not_retried(endpoint: Endpoint) -> None:
    client = endpoint.client_for([500])
    with pytest.raises(ApiError) as raised:
        await client.get(kube.JOBS, "ml", "churn-v1")
    assert raised.value.status == 500
    assert endpoint.seen == ["GET"]


@pytest.fixture
async def pager(unused_tcp_port: int) -> AsyncIterator[tuple[KubeClient, list[dict[str, str]], list[str]]]:
    """An API server stand-in that serves a LIST of three Jobs in pages of ``limit``."""
    queries: list[dict[str, str]] = []
    paths: list[str] = []
    names = ["a", "b", "c"]

    async def handler(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        paths.append(request.path)
        start = int(request.query.get("continue") or 0)
        end = start + int(request.query["limit"])
        metadata = {"resourceVersion": "42", **({"continue": str(end)} if end < len(names) else {})}
        items = [{"metadata": {"name": n, "namespace": "ml"}} for n in names[start:end]]
        return web.json_response({"kind": "JobList", "apiVersion": "batch/v1", "metadata": metadata, "items": items})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    client = KubeClient(Credentials(server=f"http://127.0.0.1:{unused_tcp_port}"))
    yield client, queries, paths
    await client.close()
    await runner.cleanup()


async def test_a_list_comes_in_pages_from_the_watch_cache(
    pager: tuple[KubeClient, list[dict[str, str]], list[str]],
) -> None:
    client, queries, paths = pager
    pages = [page async for page in client.list_pages(kube.JOBS, "ml", "app=x", limit=2)]
    assert [([i["metadata"]["name"] for i in items], version) for items, version in pages] == [
        (["a", "b"], "42"),
        (["c"], "42"),
    ]
    # The first page from the watch cache (resourceVersion=0); the next continues its snapshot.
    assert queries == [
        {"limit": "2", "resourceVersion": "0", "labelSelector": "app=x"},
        {"limit": "2", "continue": "2", "labelSelector": "app=x"},
    ]
    assert paths == ["/apis/batch/v1/namespaces/ml/jobs"] * 2
    # Listed items of built-in kinds get the apiVersion and kind a watch event's body has.
    assert {(i["apiVersion"], i["kind"]) for items, _ in pages for i in items} == {("batch/v1", "Job")}


async def test_a_list_of_all_namespaces_uses_the_cluster_wide_path(
    pager: tuple[KubeClient, list[dict[str, str]], list[str]],
) -> None:
    client, _, paths = pager
    [_ async for _ in client.list_pages(kube.SERVICES, None)]
    assert paths == ["/api/v1/services"]
