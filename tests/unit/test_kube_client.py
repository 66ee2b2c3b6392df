"""The API client's pacing and credentials: what is retried and when, and a 401 logs in again."""

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kopf
import pytest
import yaml
from aiohttp import web

from perennial import main
from perennial.adapters import kube
from perennial.adapters.kube import ApiError, KubeClient
from perennial.adapters.login import Login, renew_time

# client-go's Retry-After ceiling: the first attempt and 10 retries.
ATTEMPTS = 11


def kubeconfig(path: Path, server: str, user: dict[str, object]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Endpoint:
    """A local HTTP endpoint that answers with ``answers`` in turn (then 201) and records what it saw.

    Only ``accepted`` tokens are let in (401 otherwise).
    """

    url: str
    directory: Path
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=lambda: {"t0"})
    clients: list[KubeClient] = field(default_factory=list)

    def client_for(self, answers: list[tuple[int, str | None]], user: dict[str, object] | None = None) -> KubeClient:
        self.answers[:] = answers
        config = kubeconfig(self.directory / f"kubeconfig-{len(self.clients)}", self.url, user or {"token": "t0"})
        client = KubeClient(Login(str(config)))
        self.clients.append(client)
        return client


@pytest.fixture
async def endpoint(unused_tcp_port: int, tmp_path: Path) -> AsyncIterator[Endpoint]:
    served = Endpoint(f"http://127.0.0.1:{unused_tcp_port}", tmp_path)

    async def handler(request: web.Request) -> web.Response:
        served.seen.append(request.method)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        served.tokens.append(token)
        if token not in served.accepted:
            status, retry_after = 401, None
        else:
            status, retry_after = served.answers.pop(0) if served.answers else (201, None)
        body = {"kind": "Status", "reason": "TooManyRequests", "message": "slow down"} if status >= 400 else {}
        return web.json_response(body, status=status, headers={"Retry-After": retry_after} if retry_after else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield served
    for client in served.clients:
        await client.close()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("answer", "attempts"),
    [
        ((429, "0"), 2),  # API Priority and Fairness rejected it: wait as told, then again
        ((503, "0"), 2),  # a 5xx that asks for a retry gets one
        ((503, None), 1),  # a 5xx that does not: the error goes to the caller
        ((500, None), 1),
        ((409, "0"), 1),  # a conflict is an answer, not throttling
        ((404, None), 1),
    ],
)
async def test_which_responses_are_retried(endpoint: Endpoint, answer: tuple[int, str | None], attempts: int) -> None:
    client = endpoint.client_for([answer])
    if attempts == 1:
        with pytest.raises(ApiError) as raised:
            await client.get(kube.JOBS, "ml", "churn-v1")
        assert raised.value.status == answer[0]
    else:
        await client.get(kube.JOBS, "ml", "churn-v1")  # the retry got the 201
    assert len(endpoint.seen) == attempts


async def test_a_throttled_post_is_retried_until_it_lands(endpoint: Endpoint) -> None:
    client = endpoint.client_for([(429, "0"), (429, "0")])
    await client.create(kube.JOBS, "ml", {"metadata": {"name": "churn-v1"}})
    assert endpoint.seen == ["POST", "POST", "POST"]


async def test_retries_stop_after_client_gos_limit(endpoint: Endpoint) -> None:
    client = endpoint.client_for([(429, "0")] * ATTEMPTS)
    with pytest.raises(ApiError) as raised:
        await client.create(kube.JOBS, "ml", {"metadata": {"name": "churn-v1"}})
    assert raised.value.status == 429
    assert raised.value.reason == "TooManyRequests"
    assert len(endpoint.seen) == ATTEMPTS


async def test_a_plain_server_error_is_not_retried(endpoint: Endpoint) -> None:
    client = endpoint.client_for([(500, None)])
    with pytest.raises(ApiError) as raised:
        await client.get(kube.JOBS, "ml", "churn-v1")
    assert raised.value.status == 500
    assert endpoint.seen == ["GET"]


@pytest.fixture
async def pager(
    unused_tcp_port: int, tmp_path: Path
) -> AsyncIterator[tuple[KubeClient, list[dict[str, str]], list[str]]]:
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
    config = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{unused_tcp_port}", {"token": "t"})
    client = KubeClient(Login(str(config)))
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


# ---------------------------------------------------------------- credentials
async def test_a_401_logs_in_again_and_the_request_goes_through(endpoint: Endpoint) -> None:
    """The token file is rotated and the old token revoked before the client noticed."""
    token_file = endpoint.directory / "token"
    token_file.write_text("t0")
    client = endpoint.client_for([], user={"tokenFile": str(token_file)})
    await client.get(kube.JOBS, "ml", "a")
    token_file.write_text("t1")
    endpoint.accepted = {"t1"}
    await client.get(kube.JOBS, "ml", "b")
    # The old token once more (the file is re-read a minute after the last read), refused,
    # then the file's new token.
    assert endpoint.tokens == ["t0", "t0", "t1"]


async def test_credentials_refused_after_a_fresh_login_fail_with_the_401(endpoint: Endpoint) -> None:
    client = endpoint.client_for([], user={"token": "revoked"})
    with pytest.raises(ApiError) as raised:
        await client.get(kube.JOBS, "ml", "a")
    assert raised.value.status == 401
    assert endpoint.tokens == ["revoked", "revoked"]  # one fresh login, then the error


EXEC_PLUGIN = """
import json, sys, pathlib
from datetime import datetime, timedelta, timezone
calls = pathlib.Path(sys.argv[1])
n = len(calls.read_text().splitlines()) if calls.exists() else 0
with calls.open("a") as f:
    f.write("call\\n")
expiry = datetime.now(timezone.utc) + timedelta(seconds=float(sys.argv[2]))
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": f"t{n}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


async def test_an_exec_plugin_runs_again_before_its_credential_expires(endpoint: Endpoint) -> None:
    plugin = endpoint.directory / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    calls = endpoint.directory / "calls"
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(calls), "3"],
            "interactiveMode": "Never",
        }
    }
    endpoint.accepted = {"t0", "t1", "t2"}
    client = endpoint.client_for([], user=user)
    await client.get(kube.JOBS, "ml", "a")
    await client.get(kube.JOBS, "ml", "a")
    assert calls.read_text().count("call") == 1  # cached while valid
    login = client.login
    first = await login.credentials()
    assert first.renew_at is not None
    # Due: the next request logs in first, and the plugin's new token goes out.
    object.__setattr__(first, "renew_at", datetime.now(UTC) - timedelta(seconds=1))
    await client.get(kube.JOBS, "ml", "a")
    assert calls.read_text().count("call") == 2
    assert endpoint.tokens == ["t0", "t0", "t1"]


def test_credentials_are_renewed_a_tenth_of_their_life_early_within_bounds() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert renew_time(now, None) is None  # no expiry known: only a 401 renews
    assert renew_time(now, now + timedelta(seconds=20)) == now + timedelta(seconds=18)
    assert renew_time(now, now + timedelta(seconds=5)) == now + timedelta(seconds=4)  # at least 1 s early
    assert renew_time(now, now + timedelta(hours=10)) == now + timedelta(hours=10, minutes=-5)  # at most 5 min


def test_the_environments_proxy_is_resolved_once_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert kube.environment_proxy("https://10.0.0.1:6443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "kubernetes.default.svc,127.0.0.1")
    assert kube.environment_proxy("https://api.example.com:6443") == "http://proxy.corp:3128"
    assert kube.environment_proxy("https://127.0.0.1:6443") is None
    assert kube.environment_proxy("https://kubernetes.default.svc") is None


def exec_plugin_user(directory: Path, calls: Path, lifetime_seconds: float) -> dict[str, object]:
    plugin = directory / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(calls), str(lifetime_seconds)],
            "interactiveMode": "Never",
        }
    }


def exec_plugin_login(directory: Path, calls: Path) -> Login:
    """A Login through an exec plugin whose credentials last 10 minutes."""
    user = exec_plugin_user(directory, calls, 600)
    return Login(str(kubeconfig(directory / "kubeconfig", "https://127.0.0.1:1", user)))


@pytest.mark.parametrize("left", [timedelta(milliseconds=50), timedelta(seconds=4)])
async def test_kopf_is_never_handed_credentials_about_to_fall_due(tmp_path: Path, left: timedelta) -> None:
    """kopf cuts the watches it started on credentials when they expire: handed ones about to
    fall due, it cuts the watches it has just restarted (seen in CI: handed with 21 ms left)."""
    calls = tmp_path / "calls"
    login = exec_plugin_login(tmp_path, calls)
    memo = kopf.Memo(login=login)
    first = await main.kopf_connection_info(memo)
    assert first.expiration is not None
    assert first.expiration - datetime.now(UTC) > timedelta(minutes=5)
    # The operator's own client renews them when due, and uses the new ones until they are due.
    object.__setattr__(await login.credentials(), "renew_at", datetime.now(UTC) - timedelta(seconds=1))
    second = await login.credentials()
    object.__setattr__(second, "renew_at", datetime.now(UTC) + left)
    assert await login.credentials() is second
    assert calls.read_text().count("call") == 2
    # kopf, asking now that its own are past due, gets new ones, not the second about to fall due.
    renewed = await main.kopf_connection_info(memo)
    assert calls.read_text().count("call") == 3
    assert renewed.token not in (first.token, second.token)
    assert renewed.expiration is not None
    assert renewed.expiration - datetime.now(UTC) > main.KOPF_CREDENTIALS_FRESH_FOR


async def test_kopf_keeps_credentials_with_time_left(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    login = exec_plugin_login(tmp_path, calls)
    cached = await login.credentials()
    object.__setattr__(cached, "renew_at", datetime.now(UTC) + main.KOPF_CREDENTIALS_FRESH_FOR * 3)
    given = await main.kopf_connection_info(kopf.Memo(login=login))
    assert given.token == cached.token
    assert calls.read_text().count("call") == 1
