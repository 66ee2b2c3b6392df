import pytest

from perennial.settings import InvalidSettingsError, Settings, from_environment


def test_defaults_watch_the_whole_cluster_and_serve_metrics_on_8080() -> None:
    settings = from_environment({})
    assert settings == Settings()
    assert settings.clusterwide
    assert settings.metrics_port == 8080
    assert settings.metrics_address == "0.0.0.0"


def test_every_variable_is_read() -> None:
    settings = from_environment(
        {
            "PERENNIAL_NAMESPACES": " ml, team-b ,ml,",
            "PERENNIAL_PROMETHEUS_URL": "http://prometheus.monitoring:9090/",
            "PERENNIAL_LOG_LEVEL": "debug",
            "PERENNIAL_LOG_FORMAT": "JSON",
            "PERENNIAL_METRICS_ADDRESS": "127.0.0.1",
            "PERENNIAL_METRICS_PORT": "9443",
        }
    )
    assert settings.namespaces == ("ml", "team-b")
    assert not settings.clusterwide
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.metrics_address == "127.0.0.1"
    assert settings.metrics_port == 9443


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PERENNIAL_LOG_LEVEL", "chatty"),
        ("PERENNIAL_LOG_FORMAT", "xml"),
        ("PERENNIAL_METRICS_PORT", "eighty"),
        ("PERENNIAL_METRICS_PORT", "70000"),
        ("PERENNIAL_METRICS_PORT", "0"),
        ("PERENNIAL_PROMETHEUS_URL", "prometheus:9090"),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(InvalidSettingsError, match=variable):
        from_environment({variable: value})


def test_the_client_side_rate_limit_is_off_unless_asked_for() -> None:
    assert from_environment({}).api_qps == 0
    settings = from_environment({"PERENNIAL_API_QPS": "50", "PERENNIAL_API_BURST": "200"})
    assert settings.api_qps == 50.0
    assert settings.api_burst == 200


@pytest.mark.parametrize("value", ["fast", "-1", "nan", "inf", "20000"])
def test_an_invalid_api_qps_is_refused_with_its_range(value: str) -> None:
    with pytest.raises(InvalidSettingsError, match=r"PERENNIAL_API_QPS=.*0-10000"):
        from_environment({"PERENNIAL_API_QPS": value})


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots"])
def test_an_invalid_api_burst_is_refused(value: str) -> None:
    with pytest.raises(InvalidSettingsError, match="PERENNIAL_API_BURST"):
        from_environment({"PERENNIAL_API_BURST": value})


# ---------------------------------------------------------------- the bounds of issue 15
def test_the_bounds_have_documented_defaults() -> None:
    settings = from_environment({})
    assert settings.prometheus_allowed_urls == ()
    assert settings.allowed_prometheus_urls == ()
    assert settings.prometheus_max_response_bytes == 10 * 1024 * 1024
    assert settings.prometheus_max_timeout_seconds == 30
    assert settings.training_start_deadline_seconds == 600
    assert settings.resync_period_seconds == 600


def test_the_default_prometheus_is_the_allowlist_when_none_is_given() -> None:
    assert from_environment({"PERENNIAL_PROMETHEUS_URL": "http://prom:9090/"}).allowed_prometheus_urls == (
        "http://prom:9090",
    )


def test_the_allowlist_is_read_trimmed_and_deduplicated() -> None:
    settings = from_environment(
        {
            "PERENNIAL_PROMETHEUS_URL": "http://prom:9090",
            "PERENNIAL_PROMETHEUS_ALLOWED_URLS": " https://thanos.example/ ,http://prom:9090,, https://thanos.example",
        }
    )
    assert settings.allowed_prometheus_urls == ("https://thanos.example", "http://prom:9090")


@pytest.mark.parametrize("value", ["thanos:9090", "ftp://x", "file:///etc/passwd"])
def test_an_allowlist_entry_that_is_not_http_is_refused(value: str) -> None:
    with pytest.raises(InvalidSettingsError, match="PERENNIAL_PROMETHEUS_ALLOWED_URLS"):
        from_environment({"PERENNIAL_PROMETHEUS_ALLOWED_URLS": value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PERENNIAL_RESYNC_PERIOD", "0"),
        ("PERENNIAL_RESYNC_PERIOD", "48h"),
        ("PERENNIAL_TRAINING_START_DEADLINE", "soon"),
        ("PERENNIAL_PROMETHEUS_MAX_TIMEOUT", "11m"),
        ("PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES", "12"),
        ("PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES", "ten"),
    ],
)
def test_a_bound_out_of_range_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidSettingsError, match=name):
        from_environment({name: value})


def test_durations_are_read_in_seconds() -> None:
    settings = from_environment({"PERENNIAL_RESYNC_PERIOD": "1h30m", "PERENNIAL_TRAINING_START_DEADLINE": "45s"})
    assert (settings.resync_period_seconds, settings.training_start_deadline_seconds) == (5400, 45)


def test_leader_election_is_on_by_default_with_client_gos_durations() -> None:
    settings = from_environment({})
    assert settings.leader_election
    assert (settings.lease_namespace, settings.lease_name) == ("perennial-system", "perennial")
    assert (
        settings.lease_duration_seconds,
        settings.lease_renew_deadline_seconds,
        settings.lease_retry_period_seconds,
    ) == (15.0, 10.0, 2.0)
    assert settings.identity == ""  # the host name, filled in at start


def test_the_lease_lives_in_the_pods_namespace_else_the_setting() -> None:
    both = {"POD_NAMESPACE": "ops", "PERENNIAL_LEASE_NAMESPACE": "elsewhere", "POD_NAME": "perennial-7d9-x2"}
    assert from_environment(both).lease_namespace == "ops"
    assert from_environment(both).identity == "perennial-7d9-x2"
    assert from_environment({"PERENNIAL_LEASE_NAMESPACE": "elsewhere"}).lease_namespace == "elsewhere"
    assert from_environment({"POD_NAMESPACE": " "}).lease_namespace == "perennial-system"


def test_lease_timings_are_read_and_off_is_possible() -> None:
    settings = from_environment(
        {
            "PERENNIAL_LEADER_ELECTION": "False",
            "PERENNIAL_LEASE_NAME": "ml-operator.perennial",
            "PERENNIAL_LEASE_DURATION": "1m",
            "PERENNIAL_LEASE_RENEW_DEADLINE": "40s",
            "PERENNIAL_LEASE_RETRY_PERIOD": "5s",
        }
    )
    assert not settings.leader_election
    assert settings.lease_name == "ml-operator.perennial"
    assert (settings.lease_duration_seconds, settings.lease_renew_deadline_seconds) == (60.0, 40.0)
    assert settings.lease_retry_period_seconds == 5.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PERENNIAL_LEADER_ELECTION": "yes"}, "PERENNIAL_LEADER_ELECTION"),
        ({"PERENNIAL_LEASE_NAME": "Perennial_Lease"}, "PERENNIAL_LEASE_NAME"),
        ({"POD_NAMESPACE": "Ops"}, "POD_NAMESPACE"),
        ({"PERENNIAL_LEASE_NAMESPACE": "a" * 64}, "PERENNIAL_LEASE_NAMESPACE"),
        ({"PERENNIAL_LEASE_DURATION": "0.5s"}, "PERENNIAL_LEASE_DURATION"),
        # The leader must give up before anyone may take over, and retry within its deadline.
        ({"PERENNIAL_LEASE_DURATION": "10s"}, "PERENNIAL_LEASE_RENEW_DEADLINE"),
        ({"PERENNIAL_LEASE_RETRY_PERIOD": "9s"}, "PERENNIAL_LEASE_RETRY_PERIOD"),
    ],
)
def test_a_bad_lease_setting_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidSettingsError, match=named):
        from_environment(env)
