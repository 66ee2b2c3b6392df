"""The Prometheus client with named endpoints: credentials, headers and TLS from a private CA.

An authenticating TLS proxy (``tests.support.prometheus_proxy``, answering every query
itself) on 127.0.0.1 requires a bearer token or basic auth and a tenant header, and
records what it received; the CA that signed its certificate is trusted only through an
endpoint's ``tls``. No cluster: the proxy runs in a thread of this process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial.adapters.prometheus import PrometheusClient, PrometheusUnauthorizedError, PrometheusUnreachableError
from perennial.domain import drift
from perennial.settings import EndpointSettings, parse_prometheus_endpoints
from tests.support.prometheus_proxy import ANSWER, AuthProxy
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.timeout(60)

TOKEN = "t0ken-s3cr3t"
TENANT = "team-a"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other"), ca_name="another-ca")


@pytest.fixture
def proxy(pki: Pki) -> Iterator[AuthProxy]:
    with AuthProxy(
        pki, tokens={TOKEN, "rotated-t0ken"}, basic={("ml", "pa:ss wörd")}, tenants={TENANT}, forbidden_tenants={"b"}
    ) as running:
        yield running


@pytest.fixture
def plain_proxy() -> Iterator[AuthProxy]:
    with AuthProxy(None, tokens={TOKEN}) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[PrometheusClient]:
    created = PrometheusClient()
    yield created
    await created.close()


def endpoint(url: str, **fields: Any) -> EndpointSettings:
    (parsed,) = parse_prometheus_endpoints(yaml.safe_dump({"endpoints": {"thanos": {"url": url, **fields}}}))
    return parsed


async def value(client: PrometheusClient, target: str | EndpointSettings) -> float | None:
    return drift.single_value(await client.query(target, "up", timeout_seconds=5))


async def test_a_named_endpoint_sends_its_token_header_and_client_certificate_over_its_own_ca(
    client: PrometheusClient, proxy: AuthProxy, pki: Pki
) -> None:
    thanos = endpoint(
        proxy.url,
        bearerToken=TOKEN,
        headers={"X-Scope-OrgID": TENANT},
        tls={"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key},
    )

    assert await value(client, thanos) == ANSWER

    (seen,) = proxy.requests()
    assert (seen.path, seen.query, seen.status) == ("/api/v1/query", "up", 200)
    assert seen.authorization == f"Bearer {TOKEN}"
    assert seen.tenant == TENANT
    assert seen.client == "perennial", "the client certificate was presented"


async def test_basic_auth_is_utf8_and_may_hold_colons_and_spaces_in_the_password(
    client: PrometheusClient, proxy: AuthProxy, pki: Pki
) -> None:
    mimir = endpoint(
        proxy.url,
        basicAuth={"username": "ml", "password": "pa:ss wörd"},
        headers={"X-Scope-OrgID": TENANT},
        tls={"ca": pki.ca},
    )
    assert await value(client, mimir) == ANSWER
    assert [seen.authorization for seen in proxy.requests()] == ["Basic ml:pa:ss wörd"]
    assert proxy.requests()[0].client is None, "no client certificate configured, none presented"


@pytest.mark.parametrize("trust", ["system", "another CA"])
async def test_a_certificate_from_a_ca_the_endpoint_does_not_trust_is_refused_before_any_request(
    client: PrometheusClient, proxy: AuthProxy, other_pki: Pki, trust: str
) -> None:
    tls = {} if trust == "system" else {"tls": {"ca": other_pki.ca}}
    untrusting = endpoint(proxy.url, bearerToken=TOKEN, headers={"X-Scope-OrgID": TENANT}, **tls)

    with pytest.raises(PrometheusUnreachableError, match=r"endpoint thanos \(https://127\.0\.0\.1:\d+\): .*certif"):
        await value(client, untrusting)

    assert proxy.requests() == [], "the token never left: the handshake failed first"


async def test_insecure_skip_verify_accepts_any_certificate(client: PrometheusClient, proxy: AuthProxy) -> None:
    careless = endpoint(
        proxy.url, bearerToken=TOKEN, headers={"X-Scope-OrgID": TENANT}, tls={"insecureSkipVerify": True}
    )
    assert await value(client, careless) == ANSWER


async def test_refused_credentials_say_whose_they_were_and_never_show_them(
    client: PrometheusClient, proxy: AuthProxy, pki: Pki
) -> None:
    wrong = endpoint(proxy.url, bearerToken="wr0ng-s3cr3t", headers={"X-Scope-OrgID": TENANT}, tls={"ca": pki.ca})

    with pytest.raises(PrometheusUnauthorizedError) as error:
        await value(client, wrong)

    message = str(error.value)
    assert message.startswith(f"endpoint thanos ({proxy.url}) answered HTTP 401 Unauthorized: it refused")
    assert "PERENNIAL_PROMETHEUS_ENDPOINTS_FILE" in message
    assert "s3cr3t" not in message
    assert [seen.status for seen in proxy.requests()] == [401]


async def test_a_tenant_the_proxy_does_not_serve_is_a_403(client: PrometheusClient, proxy: AuthProxy, pki: Pki) -> None:
    other = endpoint(proxy.url, bearerToken=TOKEN, headers={"X-Scope-OrgID": "b"}, tls={"ca": pki.ca})
    with pytest.raises(PrometheusUnauthorizedError, match="HTTP 403 Forbidden: it accepted the operator's credentials"):
        await value(client, other)


async def test_a_raw_url_never_carries_credentials(client: PrometheusClient, plain_proxy: AuthProxy) -> None:
    with pytest.raises(PrometheusUnauthorizedError) as error:
        await value(client, plain_proxy.url)

    assert "a spec.prometheus.url is queried without credentials" in str(error.value)
    assert "spec.prometheus.endpoint" in str(error.value)
    assert [seen.authorization for seen in plain_proxy.requests()] == [""]


async def test_a_rotated_token_file_is_used_at_once(
    client: PrometheusClient, proxy: AuthProxy, pki: Pki, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    rotating = endpoint(
        proxy.url, bearerTokenFile=str(token_file), headers={"X-Scope-OrgID": TENANT}, tls={"ca": pki.ca}
    )
    assert await value(client, rotating) == ANSWER

    # As the kubelet updates a mounted Secret: a new file swapped in under the same name.
    fresh = tmp_path / "token.new"
    fresh.write_text("rotated-t0ken\n")
    os.replace(fresh, token_file)
    assert await value(client, rotating) == ANSWER

    assert [seen.authorization for seen in proxy.requests()] == [f"Bearer {TOKEN}", "Bearer rotated-t0ken"]


async def test_a_token_file_gone_is_an_error_naming_the_file(
    client: PrometheusClient, proxy: AuthProxy, pki: Pki, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    gone = endpoint(proxy.url, bearerTokenFile=str(token_file), tls={"ca": pki.ca})
    token_file.unlink()

    with pytest.raises(PrometheusUnreachableError, match=rf"cannot read its bearerTokenFile {token_file}"):
        await value(client, gone)
    assert proxy.requests() == []
