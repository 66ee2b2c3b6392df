"""The churn example's model server and traffic generator (examples/churn) as plain processes.

The server is Ready only once its model is loaded, predicts, and exports on /metrics the
series a DriftPolicy reads (cumulative histograms with le, labelled model and version);
the traffic generator's --shift moves the server's input histograms by a PSI a
distribution test sees, and an unshifted run does not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perennial.domain.drift import distribution_statistic
from tests.support import promtool
from tests.support.churn import CHURN, ServerProcess, http, model_server, traffic, train, training_env, wait_ready
from tests.support.waiting import holds_for, wait_until

WINDOW = ("2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z")
ROWS = [
    {"tenure_months": 2, "monthly_charges": 110, "support_calls": 5, "contract_months": 1, "data_usage_gb": 20},
    {"tenure_months": 60, "monthly_charges": 30, "support_calls": 0, "contract_months": 24, "data_usage_gb": 2},
    {"tenure_months": 12, "monthly_charges": 70, "support_calls": 2, "contract_months": 12, "data_usage_gb": 8},
]
FEATURES = ("tenure_months", "monthly_charges", "support_calls", "contract_months", "data_usage_gb")
Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained by the trainer: model churn, version 7."""
    tmp = tmp_path_factory.mktemp("churn-model")
    output = tmp / "churn" / "7"
    train(tmp, training_env(output, WINDOW, version="7")).metrics  # noqa: B018 (asserts success)
    return output


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """The cumulative (le, count) pairs of one histogram series, sorted by le."""
    found = [
        (float(sample_labels["le"]), value)
        for sample_labels, value in samples.get(f"{name}_bucket", [])
        if labels.items() <= sample_labels.items()
    ]
    return sorted(found)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    matches = [v for sample_labels, v in samples.get(name, []) if labels.items() <= sample_labels.items()]
    assert len(matches) <= 1, matches
    return matches[0] if matches else None


def test_ready_only_once_the_model_is_loaded(tmp_path: Path, model: Path) -> None:
    """The model appears after the server started (a volume filled late): 503 until then, then Ready.

    The labels come from PERENNIAL_MODEL / PERENNIAL_VERSION when set."""
    later = tmp_path / "models" / "churn" / "7"
    env = {
        "MODEL_URI": later.as_uri(),
        "LOAD_RETRY_SECONDS": "0.1",
        "PERENNIAL_MODEL": "churn-env",
        "PERENNIAL_VERSION": "42",
    }
    with model_server(tmp_path, env) as server:
        status, body = http("GET", server.url + "/ready")
        assert (status, body) == (503, f"not ready: no model at {later / 'model.pkl'} yet\n")
        status, body = http("POST", server.url + "/predict", {"rows": ROWS})
        assert status == 503
        assert "not ready" in body
        assert http("GET", server.url + "/healthz")[0] == 200

        staging = tmp_path / "staging"
        shutil.copytree(model, staging)
        later.parent.mkdir(parents=True)
        staging.rename(later)
        assert wait_ready(server) == "ready: model churn-env version 42\n"
        status, body = http("POST", server.url + "/predict", {"rows": ROWS})
        assert status == 200
        assert '"version": "42"' in body
        samples = server.metrics()
        assert value(samples, "churn_requests_total", model="churn-env", version="42", code="503") == 1
        assert value(samples, "churn_requests_total", model="churn-env", version="42", code="200") == 1


def test_a_model_that_is_not_a_churn_model_never_becomes_ready(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(b"not a pickle")
    with model_server(tmp_path, {"MODEL_URI": str(tmp_path / "model"), "LOAD_RETRY_SECONDS": "0.1"}) as server:
        wait_until(
            lambda: "is not a readable model" in http("GET", server.url + "/ready")[1],
            timeout=30,
            interval=0.05,
            what="the server to say why it is not ready",
        )
        # Retried every 0.1s: over several attempts, it stays not ready.
        holds_for(lambda: http("GET", server.url + "/ready")[0] == 503, seconds=0.5, interval=0.05, what="503")
        status, body = http("GET", server.url + "/ready")
        assert status == 503
        assert body.startswith(f"not ready: {tmp_path / 'model' / 'model.pkl'} is not a readable model")


def test_an_unsupported_model_uri_is_refused_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server"],
        cwd=CHURN,
        env={"MODEL_URI": "s3://models/churn/7", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "MODEL_URI='s3://models/churn/7': scheme s3:// is not supported" in done.stderr


@pytest.fixture
def server(tmp_path: Path, model: Path) -> Iterator[ServerProcess]:
    with model_server(tmp_path, {"MODEL_URI": model.as_uri()}) as running:
        wait_ready(running)
        yield running


def test_predicts_and_exports_histograms_labelled_with_model_and_version(server: ServerProcess) -> None:
    status, body = http("POST", server.url + "/predict", {"rows": ROWS})
    assert status == 200, body
    answer = json.loads(body)
    assert (answer["model"], answer["version"]) == ("churn", "7")  # from the model the trainer saved
    scores = answer["scores"]
    assert len(scores) == 3
    assert all(0 <= s <= 1 for s in scores)
    assert scores[0] > 0.5 > scores[1]  # a new, expensive, unhappy customer churns; a loyal one stays

    status, body = http("POST", server.url + "/predict", {"rows": [{**ROWS[0], "support_calls": "many"}]})
    assert status == 400
    assert "row 0: support_calls is 'many', not a finite number" in body
    assert http("POST", server.url + "/predict", {"rows": []})[0] == 400

    text = server.metrics_text()
    checked = promtool.run("check", "metrics", stdin=text)
    # Exit 0 and nothing printed: a valid exposition without a lint problem.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
    samples = server.metrics()
    labels = {"model": "churn", "version": "7"}
    for feature in FEATURES:
        cumulative = buckets(samples, "churn_input_feature", feature=feature, **labels)
        counts = [count for _, count in cumulative]
        assert counts == sorted(counts), f"{feature}: buckets are not cumulative"
        assert cumulative[-1] == (float("inf"), 3.0)
        assert value(samples, "churn_input_feature_count", feature=feature, **labels) == 3
    assert value(samples, "churn_input_feature_sum", feature="tenure_months", **labels) == 2 + 60 + 12
    tenure = dict(buckets(samples, "churn_input_feature", feature="tenure_months", **labels))
    assert (tenure[1.0], tenure[3.0], tenure[12.0], tenure[60.0]) == (0, 1, 2, 3)  # le: less than or equal
    scores_histogram = buckets(samples, "churn_prediction_score", **labels)
    assert scores_histogram[-1] == (float("inf"), 3.0)
    assert len(scores_histogram) == 21
    assert value(samples, "churn_requests_total", code="200", **labels) == 1
    assert value(samples, "churn_requests_total", code="400", **labels) == 2
    assert value(samples, "churn_request_duration_seconds_count", **labels) == 3


def test_traffic_shift_moves_the_feature_histograms(server: ServerProcess) -> None:
    """What a DriftPolicy's psi test over the server's buckets sees: an unshifted run ~0, a shifted one > 0.25."""

    def histogram(feature: str) -> list[tuple[float, float]]:
        return buckets(server.metrics(), "churn_input_feature", feature=feature, model="churn", version="7")

    def since(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(le, b - a) for (le, a), (_, b) in zip(before, after, strict=True)]

    summary, elapsed = traffic(server.url, "--requests", "30", "--batch", "40", "--rate", "100", "--seed", "1")
    assert summary == {"requests": 30, "rows": 1200, "by_code": {"200": 30}, "errors": {}}
    assert elapsed >= 29 / 100  # the rate limit: 30 requests at 100 a second
    baseline = {feature: histogram(feature) for feature in FEATURES}

    traffic(server.url, "--requests", "30", "--batch", "40", "--rate", "200", "--seed", "2")
    unshifted = {feature: histogram(feature) for feature in FEATURES}
    traffic(server.url, "--requests", "30", "--batch", "40", "--rate", "200", "--seed", "3", "--shift", "1.5")
    shifted = {feature: histogram(feature) for feature in FEATURES}

    for feature in ("tenure_months", "monthly_charges", "data_usage_gb"):
        same = distribution_statistic("psi", since(baseline[feature], unshifted[feature]), baseline[feature], 100)
        moved = distribution_statistic("psi", since(unshifted[feature], shifted[feature]), baseline[feature], 100)
        assert same < 0.1, f"{feature}: PSI {same:.3f} without a shift"
        assert moved > 0.25, f"{feature}: PSI {moved:.3f} with --shift 1.5"
    # contract_months is categorical: the shift leaves it alone.
    contract = distribution_statistic(
        "psi", since(unshifted["contract_months"], shifted["contract_months"]), baseline["contract_months"], 100
    )
    assert contract < 0.1
