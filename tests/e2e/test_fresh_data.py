"""Fresh data per trigger, end to end: every retrain trains on the data of its own trigger time.

A ModelDeployment whose ``spec.training.dataset`` is a template (placeholders and a 24h
window) is trained three times (Initial, then two manual retrain requests, each after the
previous version serves). The operator runs as ``perennial run``; the Job controller,
scheduler and kwok run the training pods. Checked on the real API server: each TrainingJob's
spec holds its own resolved dataset (window ending at its trigger time), each version's
lineage says the same, and each Job's pod template gives the trainer the window and, once a
version serves, the champion's model URI.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import GROUP, VERSION, apply, get_custom, simulated_model, wait_for_status

pytestmark = pytest.mark.timeout(240)

NAME = "churn"
RETRAIN_REQUEST = "perennial.dev/retrain-request"
TRIGGERED_AT = "perennial.dev/triggered-at"
DATASET_TEMPLATE = {"uri": "s3://data/{model}/{triggerDate}/{triggerTime}", "version": "{triggerDate}", "window": "24h"}


def model() -> dict[str, Any]:
    body = copy.deepcopy(simulated_model(NAME))
    body["spec"]["training"]["dataset"] = dict(DATASET_TEMPLATE)
    return body


def record(status: dict[str, Any], version: str) -> dict[str, Any]:
    return next((dict(r) for r in status.get("versions") or [] if r.get("version") == version), {})


def serves(version: str) -> Any:
    def predicate(status: dict[str, Any]) -> bool:
        return (
            status.get("servingVersion") == version
            and not status.get("rollout")
            and record(status, version).get("state") == "Serving"
        )

    return predicate


def wait_model(api: client.ApiClient, namespace: str, predicate: Any, what: str) -> dict[str, Any]:
    return wait_for_status(api, namespace, "modeldeployments", NAME, predicate, what=what, timeout=90)


def request_retrain(cluster: ClusterInfo, namespace: str, value: str) -> None:
    cluster.kubectl_run("annotate", "--overwrite", "-n", namespace, f"mdep/{NAME}", f"{RETRAIN_REQUEST}={value}")


def trainer_env(api: client.ApiClient, namespace: str, job: str) -> dict[str, str]:
    container = client.BatchV1Api(api).read_namespaced_job(job, namespace).spec.template.spec.containers[0]
    return {e.name: str(e.value) for e in container.env or [] if e.value is not None}


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_each_retrain_trains_on_the_data_of_its_own_trigger_time(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, model())
    wait_model(api_client, namespace, serves("1"), "v1 serves")
    request_retrain(perennial_crds, namespace, "r1")
    wait_model(api_client, namespace, serves("2"), "v2 (retrain r1) serves")
    request_retrain(perennial_crds, namespace, "r2")
    status = wait_model(
        api_client, namespace, lambda s: record(s, "3").get("state") not in (None, "Training"), "v3 (r2) trained"
    )

    runs = {v: get_custom(api_client, namespace, "trainingjobs", f"{NAME}-v{v}") for v in ("1", "2", "3")}
    triggered = {v: parse(body["metadata"]["annotations"][TRIGGERED_AT]) for v, body in runs.items()}
    assert triggered["1"] < triggered["2"] < triggered["3"], triggered

    for version, body in runs.items():
        at = triggered[version]
        expected = {
            "uri": f"s3://data/{NAME}/{at:%Y-%m-%d}/{rfc3339(at)}",
            "version": f"{at:%Y-%m-%d}",
            "window": "24h",
            "windowStart": rfc3339(at - timedelta(hours=24)),
            "windowEnd": rfc3339(at),
        }
        # The TrainingJob records what its trigger resolved; the lineage says the same.
        assert body["spec"]["dataset"] == expected, version
        assert record(status, version)["dataset"] == expected, version
        # The trainer gets the resolved values.
        env = trainer_env(api_client, namespace, f"{NAME}-v{version}")
        assert env["PERENNIAL_DATASET_URI"] == expected["uri"]
        assert env["PERENNIAL_DATASET_VERSION"] == expected["version"]
        assert env["PERENNIAL_DATA_WINDOW_START"] == expected["windowStart"]
        assert env["PERENNIAL_DATA_WINDOW_END"] == expected["windowEnd"]

    # Two retrains at different times trained on different data.
    assert len({body["spec"]["dataset"]["uri"] for body in runs.values()}) == 3
    # The spec did not change: one hash, the template's, and the template stays as written.
    stored = get_custom(api_client, namespace, "modeldeployments", NAME)
    assert stored["spec"]["training"]["dataset"] == DATASET_TEMPLATE
    hashes = {body["metadata"]["annotations"]["perennial.dev/training-spec-hash"] for body in runs.values()}
    assert hashes == {status["trainingSpecHash"]}
    assert [record(status, v)["trigger"]["reason"] for v in ("1", "2", "3")] == ["Initial", "Manual", "Manual"]

    # The first run had no champion; each retrain got the version serving when it was triggered.
    assert "champion" not in runs["1"]["spec"]
    assert not {"PERENNIAL_CHAMPION_MODEL_URI", "PERENNIAL_CHAMPION_VERSION"} & set(
        trainer_env(api_client, namespace, f"{NAME}-v1")
    )
    for version, champion in (("2", "1"), ("3", "2")):
        champion_uri = record(status, champion)["modelUri"]
        assert champion_uri == f"s3://models/{namespace}/{NAME}/{champion}"
        assert runs[version]["spec"]["champion"] == {"version": champion, "modelUri": champion_uri}
        assert record(status, version)["champion"] == {"version": champion, "modelUri": champion_uri}
        env = trainer_env(api_client, namespace, f"{NAME}-v{version}")
        assert env["PERENNIAL_CHAMPION_VERSION"] == champion
        assert env["PERENNIAL_CHAMPION_MODEL_URI"] == champion_uri


def test_a_hand_made_training_job_window_ends_at_its_creation(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    training = copy.deepcopy(simulated_model("experiment")["spec"]["training"])
    training["dataset"] = {"uri": "s3://data/{model}/{triggerTime}", "window": "6h"}
    apply(
        perennial_crds,
        namespace,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": "experiment-1"},
            "spec": {**training, "model": "experiment"},
        },
    )
    wait_for_status(
        api_client, namespace, "trainingjobs", "experiment-1", lambda s: bool(s.get("jobName")), what="its Job"
    )

    body = get_custom(api_client, namespace, "trainingjobs", "experiment-1")
    created = parse(body["metadata"]["creationTimestamp"])
    assert body["spec"]["dataset"] == {"uri": "s3://data/{model}/{triggerTime}", "window": "6h"}  # as written
    env = trainer_env(api_client, namespace, "experiment-1")
    assert env["PERENNIAL_DATASET_URI"] == f"s3://data/experiment/{rfc3339(created)}"
    assert env["PERENNIAL_DATA_WINDOW_END"] == rfc3339(created)
    assert env["PERENNIAL_DATA_WINDOW_START"] == rfc3339(created - timedelta(hours=6))
    assert "PERENNIAL_CHAMPION_MODEL_URI" not in env
