"""Named Prometheus endpoints: the settings file, the default endpoint, and how a policy's spec resolves.

The settings side reads ``PERENNIAL_PROMETHEUS_ENDPOINTS_FILE`` (YAML or JSON) and refuses
a bad endpoint at start with a message naming the file, the endpoint and the field, and
never a secret value. The domain side (``choose_endpoint``) turns ``spec.prometheus`` into
where the queries go, or a condition and no request. Certificates come from a private CA
made with the openssl CLI for the module.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial.adapters.prometheus import PrometheusClient
from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus, PrometheusEndpoint
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.cli import main
from perennial.controllers.metric_reader import MetricReader
from perennial.domain.driftpolicy import (
    NO_PROMETHEUS,
    EndpointCatalog,
    EndpointChoice,
    MetricResult,
    ObservedPolicy,
    choose_endpoint,
    plan_driftpolicy,
)
from perennial.settings import (
    DEFAULT_ENDPOINT,
    ENDPOINTS_FILE_VARIABLE,
    BasicAuth,
    EndpointSettings,
    InvalidSettingsError,
    endpoint_warnings,
    from_environment,
    parse_prometheus_endpoints,
    prometheus_endpoints,
    ssl_context,
)
from tests.support.tls import Pki, make_pki

SECRET = "s3cr3t-do-not-print"  # every credential in these tests contains it
THANOS = "https://thanos.monitoring.svc:10902"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ca_name="another-ca")


def endpoints_file(directory: Path, endpoints: dict[str, Any], *, as_json: bool = False) -> Path:
    path = directory / ("endpoints.json" if as_json else "endpoints.yaml")
    document = {"endpoints": endpoints}
    path.write_text(json.dumps(document) if as_json else yaml.safe_dump(document))
    return path


def one(**fields: Any) -> EndpointSettings:
    """The one endpoint ``thanos`` of a file with these fields (url given unless overridden)."""
    (endpoint,) = parse_prometheus_endpoints(yaml.safe_dump({"endpoints": {"thanos": {"url": THANOS, **fields}}}))
    return endpoint


def refused(text: str) -> str:
    with pytest.raises(InvalidSettingsError) as error:
        parse_prometheus_endpoints(text)
    message = str(error.value)
    assert SECRET not in message, f"a secret in the message: {message}"
    return message


def refused_endpoint(**fields: Any) -> str:
    return refused(yaml.safe_dump({"endpoints": {"thanos": {"url": THANOS, **fields}}}))


# ---------------------------------------------------------------- reading the file
def test_an_endpoints_file_gives_named_endpoints_with_their_credentials(tmp_path: Path, pki: Pki) -> None:
    path = endpoints_file(
        tmp_path,
        {
            "thanos": {
                "url": f"{THANOS}/",
                "bearerToken": f"tok-{SECRET}",
                "headers": {"X-Scope-OrgID": "team-a"},
                "tls": {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key},
                "timeout": "20s",
            },
            "grafana-cloud": {
                "url": "https://prometheus-prod.grafana.net/api/prom",
                # YAML numbers: a numeric instance id, a numeric tenant.
                "basicAuth": {"username": 12345, "password": f"pw-{SECRET}"},
                "headers": {"X-Scope-OrgID": 42},
            },
        },
    )

    settings = from_environment({ENDPOINTS_FILE_VARIABLE: str(path)})

    assert settings.prometheus_endpoints_file == str(path)
    grafana, thanos = settings.prometheus_endpoints  # sorted by name
    assert thanos.name == "thanos"
    assert thanos.url == THANOS, "a trailing slash is dropped"
    assert thanos.bearer_token == f"tok-{SECRET}"
    assert thanos.headers == (("X-Scope-OrgID", "team-a"),)
    assert (thanos.tls.ca, thanos.tls.cert, thanos.tls.key) == (pki.ca, pki.client_cert, pki.client_key)
    assert thanos.timeout_seconds == 20
    assert grafana.basic_auth == BasicAuth("12345", f"pw-{SECRET}")
    assert grafana.headers == (("X-Scope-OrgID", "42"),)
    assert settings.default_prometheus is None, "no default: neither PERENNIAL_PROMETHEUS_URL nor an endpoint default"


def test_credentials_are_never_in_a_repr_or_a_summary(pki: Pki) -> None:
    endpoint = one(
        bearerToken=f"tok-{SECRET}",
        headers={"X-Api-Key": f"key-{SECRET}"},
        tls={"cert": pki.client_cert, "key": pki.client_key},
    )
    basic = one(basicAuth={"username": f"user-{SECRET}", "password": f"pw-{SECRET}"})
    settings = from_environment({}).__class__(prometheus_endpoints=(endpoint, basic))
    for text in (repr(endpoint), repr(basic), repr(settings), endpoint.summary(), basic.summary()):
        assert SECRET not in text, text
        assert "PRIVATE KEY" not in text
    assert endpoint.summary() == f"thanos ({THANOS}; bearer token, headers X-Api-Key, a client certificate)"


def test_json_works_too_and_an_empty_file_defines_nothing(tmp_path: Path) -> None:
    path = endpoints_file(tmp_path, {"mimir": {"url": "http://mimir.monitoring/prometheus"}}, as_json=True)
    (mimir,) = from_environment({ENDPOINTS_FILE_VARIABLE: str(path)}).prometheus_endpoints
    assert (mimir.name, mimir.url, mimir.has_credentials) == ("mimir", "http://mimir.monitoring/prometheus", False)
    for text in ("", "endpoints: {}\n", "endpoints:\n", "{}"):
        assert parse_prometheus_endpoints(text) == [], text


def test_file_paths_are_checked_at_start_and_kept_as_paths(tmp_path: Path, pki: Pki) -> None:
    token = tmp_path / "token"
    token.write_text(f"tok-{SECRET}\n")
    password = tmp_path / "password"
    password.write_text(f"pw-{SECRET}\n")
    endpoint = one(bearerTokenFile=str(token), tls={"caFile": str(pki.path("ca.crt"))})
    assert (endpoint.bearer_token, endpoint.bearer_token_file) == ("", str(token)), "read at each use, not kept"
    assert endpoint.tls.files == (str(pki.path("ca.crt")),)
    basic = one(basicAuth={"username": "team-a", "passwordFile": str(password)})
    assert basic.basic_auth == BasicAuth("team-a", "", str(password))
    pair = one(tls={"certFile": str(pki.path("client.crt")), "keyFile": str(pki.path("client.key"))})
    assert ssl_context(pair) is not None


# ---------------------------------------------------------------- the default endpoint
def test_perennial_prometheus_url_stands_for_an_endpoint_named_default_without_credentials() -> None:
    settings = from_environment({"PERENNIAL_PROMETHEUS_URL": "http://prometheus.monitoring:9090/"})
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert settings.default_prometheus == EndpointSettings(DEFAULT_ENDPOINT, "http://prometheus.monitoring:9090")
    assert settings.prometheus_endpoints == (settings.default_prometheus,)


def test_an_endpoint_named_default_is_the_default(tmp_path: Path) -> None:
    path = endpoints_file(tmp_path, {"default": {"url": THANOS, "bearerToken": "t"}, "other": {"url": THANOS}})
    settings = from_environment({ENDPOINTS_FILE_VARIABLE: str(path)})
    assert settings.default_prometheus is not None
    assert (settings.default_prometheus.name, settings.default_prometheus.bearer_token) == ("default", "t")
    assert settings.prometheus_url == "", "the variable stays what it was set to"


def test_a_default_from_both_the_url_and_the_file_is_refused(tmp_path: Path) -> None:
    path = endpoints_file(tmp_path, {"default": {"url": THANOS}})
    with pytest.raises(InvalidSettingsError) as error:
        from_environment({ENDPOINTS_FILE_VARIABLE: str(path), "PERENNIAL_PROMETHEUS_URL": "http://prometheus:9090"})
    message = str(error.value)
    assert "PERENNIAL_PROMETHEUS_URL and the endpoint named default" in message
    assert str(path) in message
    assert "keep one" in message


def test_no_file_and_no_url_define_no_endpoint() -> None:
    settings = from_environment({})
    assert settings.prometheus_endpoints == ()
    assert settings.default_prometheus is None


# ---------------------------------------------------------------- refused at start
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"url": None}, "endpoint thanos: url is required"),
        ({"url": "ftp://thanos"}, "endpoint thanos: url is not an http:// or https:// URL with a host"),
        ({"url": "https://"}, "endpoint thanos: url is not an http:// or https:// URL with a host"),
        ({"url": f"https://user:{SECRET}@thanos"}, "endpoint thanos: url must not hold credentials: use basicAuth"),
        ({"url": f"https://thanos?api_key={SECRET}"}, "endpoint thanos: url must be a base URL, without a query"),
        ({"url": "https://thanos:99999"}, "endpoint thanos: url is not a valid URL"),
        ({"bearerTokn": SECRET}, "endpoint thanos: unknown field(s) bearerTokn; known: url, bearerToken"),
        (
            {"bearerToken": SECRET, "basicAuth": {"username": "a", "password": SECRET}},
            "endpoint thanos: bearerToken and basicAuth are exclusive",
        ),
        ({"bearerToken": SECRET, "bearerTokenFile": "/t"}, "bearerToken and bearerTokenFile are exclusive"),
        ({"bearerToken": f"two {SECRET}"}, "endpoint thanos: bearerToken must be one line of printable characters"),
        ({"bearerToken": f"{SECRET}\nX-Injected: 1"}, "endpoint thanos: bearerToken must be one line"),
        ({"bearerToken": 12345}, "endpoint thanos: bearerToken must be a string"),
        ({"bearerTokenFile": "token"}, "endpoint thanos: bearerTokenFile: 'token' must be an absolute path"),
        ({"bearerTokenFile": "/nonexistent/token"}, "bearerTokenFile: cannot read /nonexistent/token (No such file"),
        ({"basicAuth": {"username": "a:b", "password": SECRET}}, "basicAuth: username is required and may not"),
        ({"basicAuth": {"username": "a"}}, "endpoint thanos: basicAuth: give exactly one of password or passwordFile"),
        ({"basicAuth": {"username": "a", "password": SECRET, "passwordFile": "/p"}}, "give exactly one of password"),
        ({"basicAuth": {"user": "a", "password": SECRET}}, "basicAuth: unknown field(s) user"),
        ({"basicAuth": "a:b"}, "endpoint thanos: basicAuth: expected a mapping"),
        ({"headers": {"X Scope": "a"}}, "endpoint thanos: headers: 'X Scope' is not an HTTP header name"),
        ({"headers": {"Accept-Encoding": "gzip"}}, "headers: Accept-Encoding is set by the operator itself"),
        ({"headers": {"Host": "elsewhere"}}, "headers: Host is set by the operator itself"),
        (
            {"bearerToken": SECRET, "headers": {"authorization": f"Basic {SECRET}"}},
            "headers: Authorization conflicts with bearerToken or basicAuth",
        ),
        ({"headers": {"X-Scope-OrgID": f"a\r\nX-Evil: {SECRET}"}}, "headers: X-Scope-OrgID must be one line"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers: x-a is given twice"),
        ({"headers": {"X-Flag": True}}, "headers: X-Flag must be a string (quote it)"),
        ({"headers": ["X-Scope-OrgID: a"]}, "endpoint thanos: headers: expected a mapping"),
        ({"timeout": "0s"}, "endpoint thanos: timeout: use a duration such as 10s, between 1s and 600s"),
        ({"timeout": "11m"}, "endpoint thanos: timeout: use a duration"),
        ({"timeout": 10}, "endpoint thanos: timeout: use a duration"),
        ({"url": "http://thanos:10902", "tls": {"insecureSkipVerify": True}}, "tls is set but url is http://"),
        ({"tls": {"ca": "not a certificate"}}, "endpoint thanos: tls: ca: expected PEM text"),
        (
            {"tls": {"ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}},
            "endpoint thanos: tls: ca: not a PEM certificate",
        ),
        ({"tls": {"caFile": "/nonexistent/ca.crt"}}, "tls: caFile: cannot read /nonexistent/ca.crt (No such file"),
        ({"tls": {"caFile": "ca.crt"}}, "endpoint thanos: tls: caFile 'ca.crt' must be an absolute path"),
        ({"tls": {"insecureSkipVerify": "yes"}}, "endpoint thanos: tls: insecureSkipVerify must be true or false"),
        ({"tls": {"verify": False}}, "endpoint thanos: tls: unknown field(s) verify"),
    ],
)
def test_a_bad_endpoint_is_refused_naming_the_endpoint_and_field_never_a_secret(
    fields: dict[str, Any], expected: str
) -> None:
    message = refused_endpoint(**fields)
    assert expected in message
    assert message.startswith(ENDPOINTS_FILE_VARIABLE)


def test_tls_pairs_and_ca_are_checked(pki: Pki, other_pki: Pki, tmp_path: Path) -> None:
    assert "a client certificate needs both cert (or certFile) and key" in refused_endpoint(
        tls={"cert": pki.client_cert}
    )
    assert "tls: cert and key: not a PEM certificate and its private key (key values mismatch)" in refused_endpoint(
        tls={"cert": pki.client_cert, "key": other_pki.client_key}
    )
    assert "tls: ca and caFile are exclusive" in refused_endpoint(tls={"ca": pki.ca, "caFile": str(pki.path("ca.crt"))})
    assert "insecureSkipVerify turns off the verification ca is for" in refused_endpoint(
        tls={"ca": pki.ca, "insecureSkipVerify": True}
    )
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "ec", "-in", str(pki.path("client.key")), "-aes256", "-passout", "pass:x", "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    # Never a prompt on the operator's terminal: a clear refusal.
    assert "tls: key: the private key is encrypted; give it unencrypted" in refused_endpoint(
        tls={"cert": pki.client_cert, "keyFile": str(encrypted)}
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"endpoints": {"Thanos_EU": {"url": THANOS}}}, "endpoint name 'Thanos_EU' must be a DNS label"),
        ({"endpoints": {"a" * 64: {"url": THANOS}}}, "must be a DNS label (at most 63"),
        ({"endpoints": {7: {"url": THANOS}}}, "endpoint name '7' must be a DNS label"),
        ({"endpoints": {"thanos": THANOS}}, "endpoint thanos: expected a mapping with url"),
        ({"endpoints": [{"url": THANOS}]}, "endpoints must be a mapping of endpoint names to endpoints"),
        ({"thanos": {"url": THANOS}}, "expected a mapping with one key, endpoints"),
        ({"endpoints": {f"e{i}": {"url": THANOS} for i in range(101)}}, "101 endpoints; at most 100"),
    ],
)
def test_a_bad_file_is_refused(document: Any, expected: str) -> None:
    assert expected in refused(yaml.safe_dump(document))


def test_a_file_that_is_not_yaml_is_refused_without_quoting_its_lines() -> None:
    message = refused(f"endpoints:\n  thanos:\n    bearerToken: {SECRET}\n   url: [\n")
    assert "not valid YAML or JSON at line" in message


def test_a_missing_or_huge_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingsError, match=rf"{ENDPOINTS_FILE_VARIABLE}=.*cannot read it \(No such file"):
        from_environment({ENDPOINTS_FILE_VARIABLE: str(tmp_path / "missing.yaml")})
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (1024 * 1024 + 1))
    with pytest.raises(InvalidSettingsError, match="larger than 1 MiB"):
        from_environment({ENDPOINTS_FILE_VARIABLE: str(huge)})


def test_perennial_run_refuses_a_bad_endpoint_before_touching_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = endpoints_file(tmp_path, {"thanos": {"url": THANOS, "bearerToken": SECRET, "basicAuth": {"username": "a"}}})
    monkeypatch.setenv(ENDPOINTS_FILE_VARIABLE, str(path))
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert f"invalid setting: {ENDPOINTS_FILE_VARIABLE} ({path}): endpoint thanos: basicAuth" in err
    assert SECRET not in err


def test_a_reloaded_text_is_checked_the_same_way(tmp_path: Path) -> None:
    text = yaml.safe_dump({"endpoints": {"default": {"url": THANOS}}})
    (default,) = prometheus_endpoints(text, "/etc/perennial/prometheus/endpoints.yaml")
    assert default.name == DEFAULT_ENDPOINT
    with pytest.raises(InvalidSettingsError, match="both define the default Prometheus"):
        prometheus_endpoints(text, "/etc/perennial/prometheus/endpoints.yaml", "http://prometheus:9090")


def test_risky_configurations_are_warned_about() -> None:
    insecure = one(bearerToken="t", tls={"insecureSkipVerify": True})
    plain = dataclasses.replace(one(bearerToken="t"), name="plain", url="http://thanos:10902")
    assert endpoint_warnings([insecure, plain, one()]) == [
        f"Prometheus endpoint thanos: tls.insecureSkipVerify is on: the operator does not check who answers at"
        f" {THANOS} and sends its credentials to them",
        "Prometheus endpoint plain: its credentials travel unencrypted to http://thanos:10902: use https",
    ]


# ---------------------------------------------------------------- resolving spec.prometheus
CATALOG = EndpointCatalog(
    named={"default": "http://prometheus.monitoring:9090", "thanos": THANOS, "mimir": "https://mimir.obs/prometheus"},
    allowed_urls=("http://prometheus.monitoring:9090", "http://victoria.obs:8428"),
)


def choose(catalog: EndpointCatalog = CATALOG, **prometheus: Any) -> EndpointChoice:
    return choose_endpoint(PrometheusEndpoint.model_validate(prometheus), catalog)


def test_a_named_endpoint_is_queried_with_its_url() -> None:
    assert choose(endpoint="thanos") == EndpointChoice(THANOS, "thanos")
    assert choose(endpoint="default") == EndpointChoice("http://prometheus.monitoring:9090", "default")


def test_no_name_and_no_url_is_the_default_endpoint() -> None:
    assert choose() == EndpointChoice("http://prometheus.monitoring:9090", "default")
    assert choose(EndpointCatalog(named={"thanos": THANOS})) == EndpointChoice(
        problem=("PrometheusUnreachable", NO_PROMETHEUS)
    )


def test_an_unknown_name_is_endpoint_unknown_listing_the_names() -> None:
    choice = choose(endpoint="thanos-eu")
    assert (choice.url, choice.endpoint) == (None, None), "nothing is queried"
    assert choice.problem == (
        "EndpointUnknown",
        "spec.prometheus.endpoint thanos-eu is not a Prometheus endpoint the operator defines (the operator defines"
        " default, mimir, thanos), so nothing was queried: name one of those, leave spec.prometheus.endpoint out"
        " for the default, or ask the operator's administrators to define it (chart value prometheus.endpoints,"
        " PERENNIAL_PROMETHEUS_ENDPOINTS_FILE)",
    )
    none = choose(EndpointCatalog(), endpoint="default")
    assert none.problem is not None
    assert "(the operator defines no endpoints)" in none.problem[1]
    many = choose(EndpointCatalog(named={f"e{i:02}": THANOS for i in range(25)}), endpoint="x")
    assert many.problem is not None
    assert "e19 and 5 more" in many.problem[1]


def test_a_raw_url_is_allowed_by_the_allowlist_or_a_named_endpoints_url_and_carries_no_credentials() -> None:
    assert choose(url="http://victoria.obs:8428/") == EndpointChoice("http://victoria.obs:8428")
    # A named endpoint's URL is allowed implicitly, but queried as a raw URL: no endpoint,
    # so none of its credentials go with it.
    assert choose(url=f"{THANOS}/") == EndpointChoice(THANOS)
    assert choose(url="https://MIMIR.OBS:443/prometheus/") == EndpointChoice("https://mimir.obs/prometheus")


def test_a_raw_url_elsewhere_is_endpoint_not_allowed() -> None:
    choice = choose(url="http://169.254.169.254/latest/meta-data")
    assert choice.url == "http://169.254.169.254/latest/meta-data"
    assert choice.endpoint is None
    assert choice.problem is not None
    assert choice.problem[0] == "EndpointNotAllowed"
    assert "PERENNIAL_PROMETHEUS_ALLOWED_URLS" in choice.problem[1]


def test_the_api_model_takes_the_endpoint_name() -> None:
    spec = DriftPolicySpec.model_validate(
        {"targetRef": {"name": "churn"}, "prometheus": {"endpoint": "thanos"}, "metrics": [{"name": "m", "query": "q"}]}
    )
    assert spec.prometheus.endpoint == "thanos"
    assert spec.prometheus.to_api() == {"endpoint": "thanos", "timeout": "10s"}


# ---------------------------------------------------------------- what the plan makes of it
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PENDING = {"id": "2026-01-01T11:59:00Z", "requestedAt": "2026-01-01T11:59:00Z", "detail": "feature_psi=0.31 > max 0.2"}


def observed(status: dict[str, Any], **changes: Any) -> ObservedPolicy:
    spec = {
        "targetRef": {"name": "churn"},
        "prometheus": {"endpoint": "thanos-eu"},
        "metrics": [{"name": "feature_psi", "query": "max(churn_feature_psi)", "max": 0.2}],
    }
    return dataclasses.replace(
        ObservedPolicy(
            name="churn-drift",
            namespace="ml",
            generation=2,
            spec=DriftPolicySpec.model_validate(spec),
            status=DriftPolicyStatus.model_validate(status),
            target=ModelDeploymentStatus.model_validate({"servingVersion": "1", "phase": "Serving"}),
            now=NOW,
        ),
        **changes,
    )


def test_an_unknown_endpoint_is_not_ready_with_a_warning_event_and_withdraws_the_request() -> None:
    problem = choose(endpoint="thanos-eu").problem
    assert problem is not None
    status = {
        "observedGeneration": 2,
        "lastEvaluationTime": "2026-01-01T11:59:00Z",
        "metrics": [{"name": "feature_psi", "value": 0.31, "max": 0.2, "breached": True}],
        "retrainRequest": PENDING,
    }

    plan = plan_driftpolicy(observed(status, endpoint_problem=problem))

    conditions = {c.type: (c.status, c.reason, c.message) for c in plan.status.conditions or []}
    assert conditions["Ready"] == ("False", "EndpointUnknown", problem[1])
    assert conditions["Drifting"] == ("False", "NoData", "no metric has data")
    assert plan.status.to_api()["metrics"] == [
        {"name": "feature_psi", "max": 0.2, "breached": False, "error": problem[1]}
    ]
    assert plan.status.retrain_request is None
    assert [(e.type, e.reason, e.message) for e in plan.events] == [("Warning", "EndpointUnknown", problem[1])]
    assert plan.status.last_evaluation_time == NOW

    again = plan_driftpolicy(observed(plan.status.to_api(), endpoint_problem=problem, now=NOW))
    assert not [e for e in again.events if e.reason == "EndpointUnknown"], "one Event, not one per evaluation"


def test_refused_credentials_are_not_ready_with_their_own_reason() -> None:
    message = f"endpoint thanos ({THANOS}) answered HTTP 401 Unauthorized: it refused the operator's credentials"
    refusal = MetricResult(error="PrometheusUnauthorized", message=message)

    plan = plan_driftpolicy(observed({}, prometheus_url=THANOS, results={"feature_psi": refusal}))

    conditions = {c.type: (c.status, c.reason, c.message) for c in plan.status.conditions or []}
    assert conditions["Ready"] == ("False", "PrometheusUnauthorized", message)
    assert plan.status.to_api()["metrics"][0]["error"] == message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "PrometheusUnauthorized")]


# ---------------------------------------------------------------- the file changes under a running operator
def test_the_controller_takes_a_changed_file_and_keeps_the_old_endpoints_when_the_new_one_is_invalid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = endpoints_file(tmp_path, {"thanos": {"url": THANOS, "bearerToken": f"tok-{SECRET}"}})
    settings = from_environment({ENDPOINTS_FILE_VARIABLE: str(path)})
    controller = MetricReader(settings, PrometheusClient())
    assert controller.reload_endpoints(), "the first look takes the file"
    assert not controller.reload_endpoints(), "unchanged: nothing to do"

    def where(name: str) -> EndpointChoice:
        return choose_endpoint(PrometheusEndpoint(endpoint=name), controller.catalog)

    path.write_text(yaml.safe_dump({"endpoints": {"thanos": {"url": THANOS, "bearerToken": f"two {SECRET}"}}}))
    with caplog.at_level("ERROR"):
        assert not controller.reload_endpoints()
        assert not controller.reload_endpoints()
    (refusal,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "endpoint thanos: bearerToken must be one line" in refusal
    assert "the endpoints loaded before stay" in refusal
    assert SECRET not in refusal
    assert where("thanos") == EndpointChoice(THANOS, "thanos"), "still in use"

    path.unlink()
    assert not controller.reload_endpoints()
    assert where("thanos") == EndpointChoice(THANOS, "thanos"), "a file gone away changes nothing"

    endpoints_file(tmp_path, {"thanos-eu": {"url": "https://thanos.eu.example"}})
    with caplog.at_level("INFO"):
        assert controller.reload_endpoints()
    assert where("thanos-eu") == EndpointChoice("https://thanos.eu.example", "thanos-eu")
    assert where("thanos").problem is not None
    assert any("changed: reloaded" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)
