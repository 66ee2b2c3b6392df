"""Observability of a real loop: `perennial run` with JSON logs, and its /metrics after the loop ran.

One operator process, PERENNIAL_LOG_FORMAT=json, trains and serves a model and evaluates
a DriftPolicy; then every line it wrote (stdout and stderr) must be one JSON object, the
lines kopf logs about an object must name it, and `promtool check metrics` must accept the
/metrics output with the per-model and per-policy series a loop creates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import operator as operator_support
from tests.support import promtool
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, wait_for_status


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
        f'perennial_drift_metric_value{{metric="feature_psi",namespace="{namespace}",policy="churn-drift"}} 0.05'
        in text
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
