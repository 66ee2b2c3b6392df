"""Observability of a real loop: `perennial run` with JSON logs, and its /metrics after the loop ran.

One operator process, PERENNIAL_LOG_FORMAT=json, trains and serves a model and evaluates
a DriftPolicy; then every line it wrote (stdout and stderr) must be one JSON object, the
lines kopf logs about an object must name it, and `promtool check metrics` must accept the
/metrics output with the per-model and per-policy series a loop creates.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.support import operator as operator_support
from tests.support import promtool
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, get_custom, wait_for_status
from tests.support.waiting import wait_until


def manifests() -> str:
    return """
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: churn
spec:
  training:
    image: registry.example/churn-trainer:2.3.0
    dataset: {uri: "s3://data/churn/2026-11-20/", version: "2026-11-20"}
    output: {modelUri: "s3://models/{namespace}/{model}/{version}"}
    validation: [{metric: auc, min: 0.9}]
    podAnnotations:
      sim.perennial.dev/duration: 1s
      sim.perennial.dev/result: '{"metrics": {"auc": 0.934}}'
  serving:
    image: registry.example/churn-server:1.9.0
---
apiVersion: perennial.dev/v1alpha1
kind: DriftPolicy
metadata:
  name: churn-drift
spec:
  targetRef: {name: churn}
  interval: 10s
  metrics:
    - name: feature_psi
      query: vector(0.05)
      max: 0.2
"""


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            raise AssertionError(f"{path.name} line {number} is not JSON ({error}): {text!r}") from None
        assert isinstance(line, dict), f"line {number} is JSON but not an object: {text!r}"
        lines.append(line)
    return lines


def test_json_logs_and_promtool_clean_metrics_through_a_loop(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERENNIAL_LOG_FORMAT", "json")
    log_path = tmp_path / "operator.log"  # stdout and stderr, interleaved as a container runtime keeps them
    with operator_support.subprocess_operator(
        perennial_crds, [namespace], log_path, perennial_crds.prometheus_url
    ) as operator:
        apply(perennial_crds, namespace, manifests())
        wait_for_status(
            api_client,
            namespace,
            "modeldeployments",
            "churn",
            lambda s: s.get("servingVersion") == "1" and s.get("phase") == "Serving",
            what="v1 serving",
        )
        wait_for_status(
            api_client,
            namespace,
            "driftpolicies",
            "churn-drift",
            lambda s: (s.get("metrics") or [{}])[0].get("value") == 0.05,
            what="the policy evaluated",
        )
        text = operator.metrics_text()

    # /metrics after a loop: the dynamic series are there, and promtool finds no problem.
    assert f'perennial_model_info{{model="churn",namespace="{namespace}",version="1"}} 1.0' in text
    assert (
        f'perennial_drift_metric_value{{metric="feature_psi",model="churn",namespace="{namespace}",policy="churn-drift"}}'
        " 0.05" in text
    )
    assert 'perennial_training_duration_seconds_count{result="Succeeded"} 1.0' in text
    result = promtool.run("check", "metrics", stdin=text)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() == ""

    # Every line the process wrote is one JSON object with kopf's keys.
    lines = _json_lines(log_path)
    assert any(line["message"].startswith("perennial started") for line in lines)
    for line in lines:
        assert {"timestamp", "severity", "logger", "message"} <= line.keys(), line
    # Lines about an object name it: kind, namespace and name.
    about = [line["object"] for line in lines if "object" in line]
    for kind, name in (("ModelDeployment", "churn"), ("DriftPolicy", "churn-drift"), ("TrainingJob", "churn-v1")):
        assert {"kind": kind, "namespace": namespace, "name": name} in about, f"no log line about {kind} {name}"
    for line in lines:
        if line["logger"] == "kopf.objects":
            assert {"kind", "namespace", "name"} <= line["object"].keys(), line


# ---------------------------------------------------------------- per-model series
Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]
ModelSeries = dict[tuple[str, Labels], float]


def curl_metrics(url: str) -> Samples:
    """`curl` the operator's /metrics, as an operator would: {sample name: {sorted labels: value}}."""
    text = subprocess.run(["curl", "-sSf", "--max-time", "5", url], capture_output=True, text=True, check=True).stdout
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def about_model(samples: Samples, namespace: str, model: str) -> ModelSeries:
    """The samples naming one model: {(name, labels other than namespace and model): value}."""
    found: ModelSeries = {}
    for name, series in samples.items():
        for labels, value in series.items():
            as_dict = dict(labels)
            if as_dict.get("namespace") == namespace and as_dict.get("model") == model:
                rest = tuple((k, v) for k, v in labels if k not in ("namespace", "model"))
                found[(name, rest)] = value
    return found


def test_curl_on_the_operator_metrics_shows_per_model_series_until_the_model_is_deleted(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> None:
    with operator_support.subprocess_operator(
        perennial_crds, [namespace], tmp_path / "operator.log", perennial_crds.prometheus_url
    ) as operator:
        model = manifests().replace("  serving:\n", '  retraining: {schedule: "0 3 * * 0"}\n  serving:\n', 1)
        apply(perennial_crds, namespace, model)
        wait_for_status(
            api_client,
            namespace,
            "modeldeployments",
            "churn",
            lambda s: s.get("servingVersion") == "1" and s.get("phase") == "Serving",
            what="v1 serving",
        )
        status = get_custom(api_client, namespace, "modeldeployments", "churn")["status"]
        trained_at = datetime.fromisoformat(status["versions"][0]["createdAt"].replace("Z", "+00:00")).timestamp()

        def exported() -> ModelSeries | None:
            series = about_model(curl_metrics(operator.metrics_url), namespace, "churn")
            drift = ("perennial_drift_metric_value", (("metric", "feature_psi"), ("policy", "churn-drift")))
            succeeded = ("perennial_model_rollouts_total", (("result", "Succeeded"),))
            return series if series.get(drift) == 0.05 and series.get(succeeded) == 1 else None

        series = wait_until(exported, timeout=60, what="the model's series and its policy's value on /metrics")
        assert series[("perennial_model_info", (("version", "1"),))] == 1
        assert series[("perennial_model_ready", ())] == 1
        assert series[("perennial_model_automatic_retrains", (("state", "Active"),))] == 1
        assert series[("perennial_model_last_successful_training_timestamp_seconds", ())] == trained_at
        assert series[("perennial_model_max_training_age_seconds", ())] == 14 * 24 * 3600  # two weeks
        assert series[("perennial_model_rollouts_total", (("result", "Started"),))] == 1
        assert series[("perennial_model_rollouts_total", (("result", "RolledBack"),))] == 0

        # The work queues, one series a controller, have seen the objects.
        samples = curl_metrics(operator.metrics_url)
        for controller in ("modeldeployment", "trainingjob", "driftpolicy"):
            labels = (("controller", controller),)
            assert samples["perennial_workqueue_adds_total"][labels] >= 1, controller
            assert samples["perennial_workqueue_work_duration_seconds_count"][labels] >= 1, controller
            assert labels in samples["perennial_workqueue_depth"], controller
            assert labels in samples["perennial_workqueue_longest_running_processor_seconds"], controller

        # Deleted: every series naming the model goes (its policy's value too).
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            "perennial.dev", "v1alpha1", namespace, "modeldeployments", "churn"
        )
        wait_until(
            lambda: not about_model(curl_metrics(operator.metrics_url), namespace, "churn"),
            timeout=60,
            what="no series naming the deleted model",
        )
