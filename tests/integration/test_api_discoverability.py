"""The API as a kubectl user meets it: examples, defaults, explain, categories, printer columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import ClusterInfo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _get(cluster: ClusterInfo, namespace: str, resource: str) -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load(cluster.kubectl_run("get", "-n", namespace, resource, "-o", "yaml").stdout)
    return result


def _contains(stored: Any, written: Any) -> bool:
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in written.items())
    if isinstance(written, list):
        return isinstance(stored, list) and len(stored) == len(written) and all(map(_contains, stored, written))
    return bool(stored == written)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_applies_cleanly_and_reads_back_with_defaults(
    perennial_crds: ClusterInfo, namespace: str, path: Path
) -> None:
    result = perennial_crds.kubectl_run("apply", "-n", namespace, "-f", str(path))
    assert "created" in result.stdout
    assert not result.stderr.strip(), result.stderr  # no warnings (e.g. unknown or duplicate fields)
    for document in yaml.safe_load_all(path.read_text()):
        stored = _get(perennial_crds, namespace, f"{document['kind'].lower()}/{document['metadata']['name']}")
        spec = stored["spec"]
        if document["kind"] == "TrainingJob":
            assert spec["workers"] == document["spec"].get("workers", 1)
            assert spec["backoffLimit"] == document["spec"].get("backoffLimit", 2)
            assert spec["ttlAfterFinished"] == "24h"
        elif document["kind"] == "ModelDeployment":
            assert spec["serving"]["port"] == 8080
            assert spec["serving"]["modelUriEnv"] == "MODEL_URI"
            rollout = spec["rollout"]
            strategy = document["spec"].get("rollout", {}).get("strategy", "Rolling")
            assert (rollout["strategy"], rollout["progressDeadline"]) == (strategy, "10m")
            assert rollout["autoRollback"] is True
            if strategy == "Canary":  # examples/canary.yaml: the analysis gets a DriftPolicy's defaults
                assert rollout["analysis"]["prometheus"]["timeout"] == "10s"
                assert all("for" in metric for metric in rollout["analysis"]["metrics"])
            else:
                assert set(rollout) == {"strategy", "progressDeadline", "autoRollback"}
            assert spec["retraining"]["maxConsecutiveFailures"] == 3
            assert spec["retraining"]["historyLimit"] == 5
            assert spec["suspend"] is False
            assert spec["training"]["workers"] == 1
        else:
            assert spec["prometheus"]["timeout"] == "10s"
            assert spec["trigger"]["cooldown"] == "6h"
            assert spec["suspend"] is False
            assert all("for" in metric for metric in spec["metrics"])
        # What the user wrote is kept as written; defaults only add to it.
        assert _contains(spec, document["spec"])


def test_kubectl_explain_teaches_the_api(perennial_crds: ClusterInfo) -> None:
    explained = perennial_crds.kubectl_run("explain", "mdep.spec.retraining").stdout
    assert "When to retrain automatically." in explained
    assert "Least time between two automatic retrains" in explained
    assert "cooldown\t<string>" in explained or "cooldown" in explained
    drift = perennial_crds.kubectl_run("explain", "dpol.spec.metrics.distribution.test").stdout
    assert "Kolmogorov-Smirnov" in drift
    assert "ENUM" in drift
    assert "hellinger" in drift
    run = perennial_crds.kubectl_run("explain", "tjob.spec.workers").stdout
    assert "Indexed Job" in run


def _write_status(cluster: ClusterInfo, namespace: str, resource: str, status: dict[str, Any]) -> None:
    cluster.kubectl_run(
        "patch",
        "-n",
        namespace,
        resource,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_get_perennial_lists_all_kinds_with_their_columns(perennial_crds: ClusterInfo, namespace: str) -> None:
    cluster = perennial_crds
    for example in ("churn.yaml", "trainingjob.yaml"):
        cluster.kubectl_run("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    _write_status(
        cluster,
        namespace,
        "tjob/churn-experiment-1",
        {"phase": "Succeeded", "version": "churn-experiment-1", "duration": "12m30s"},
    )
    _write_status(
        cluster,
        namespace,
        "mdep/churn",
        {
            "servingVersion": "3",
            "latestVersion": "4",
            "phase": "Rolling",
            "ready": "2/3",
            "lastRetrain": {"time": "2026-11-26T10:00:00Z", "reason": "Drift", "source": "churn-drift"},
        },
    )
    _write_status(
        cluster,
        namespace,
        "dpol/churn-drift",
        {
            "triggerCount": 2,
            "lastTriggerTime": "2026-11-26T10:00:00Z",
            "conditions": [
                {
                    "type": "Drifting",
                    "status": "True",
                    "reason": "MetricBreached",
                    "message": "feature_psi",
                    "lastTransitionTime": "2026-11-26T10:00:00Z",
                }
            ],
        },
    )
    listing = cluster.kubectl_run("get", "perennial", "-n", namespace).stdout
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    lines = {row[0]: row for row in rows if "/" in row[0]}
    assert lines["trainingjob.perennial.dev/churn-experiment-1"][1:5] == [
        "churn",
        "churn-experiment-1",
        "Succeeded",
        "12m30s",
    ]
    assert lines["modeldeployment.perennial.dev/churn"][1:5] == ["3", "4", "Rolling", "2/3"]
    assert lines["driftpolicy.perennial.dev/churn-drift"][1:3] == ["churn", "True"]
    assert "2" in lines["driftpolicy.perennial.dev/churn-drift"][3:]
    headers = [line for line in listing.splitlines() if line.startswith("NAME")]
    assert any("SERVING" in h and "LATEST" in h and "LAST RETRAIN" in h for h in headers)
    assert any("TARGET" in h and "DRIFTING" in h and "TRIGGERS" in h for h in headers)
    assert any("MODEL" in h and "VERSION" in h and "DURATION" in h for h in headers)


def test_status_is_a_subresource_users_cannot_write_through_spec(perennial_crds: ClusterInfo, namespace: str) -> None:
    cluster = perennial_crds
    cluster.kubectl_run("apply", "-n", namespace, "-f", str(EXAMPLES / "trainingjob.yaml"))
    # A main-resource update ignores status: only the status subresource changes it.
    cluster.kubectl_run(
        "patch",
        "-n",
        namespace,
        "tjob/churn-experiment-1",
        "--type=merge",
        "-p",
        '{"metadata": {"labels": {"team": "ml"}}, "status": {"phase": "Succeeded"}}',
    )
    stored = _get(cluster, namespace, "tjob/churn-experiment-1")
    assert stored["metadata"]["labels"] == {"team": "ml"}
    assert "status" not in stored or "phase" not in stored["status"]
