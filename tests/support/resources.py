"""Reading and writing Perennial objects in tests, the way a user's tools would."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client

from tests.support.cluster import ClusterInfo
from tests.support.waiting import wait_until

GROUP, VERSION = "perennial.dev", "v1alpha1"
RETRAIN_REQUEST = "perennial.dev/retrain-request"


def request_retrain(cluster: ClusterInfo, namespace: str, model: str, request: str) -> None:
    """Ask for a retrain the way a person does: the ModelDeployment's retrain-request annotation."""
    cluster.kubectl_run("annotate", "--overwrite", "-n", namespace, f"mdep/{model}", f"{RETRAIN_REQUEST}={request}")


def apply(cluster: ClusterInfo, namespace: str, manifest: str | dict[str, Any]) -> None:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    cluster.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=text)


def get_custom(api: client.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    assert isinstance(body, dict)
    return body


def wait_for_status(
    api: client.ApiClient,
    namespace: str,
    plural: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 90,
) -> dict[str, Any]:
    """Poll the object until ``predicate(status)`` holds; return the status."""

    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = get_custom(api, namespace, plural, name).get("status") or {}
        return status if predicate(status) else None

    return wait_until(probe, timeout=timeout, what=f"{plural}/{name}: {what}")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = next((c for c in status.get("conditions") or [] if c["type"] == type_), None)
    assert found is not None, f"no {type_} condition in {status}"
    return dict(found)


def events_for(
    api: client.ApiClient, namespace: str, name: str, kind: str = "TrainingJob"
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about one object, oldest first."""
    selector = f"involvedObject.name={name},involvedObject.kind={kind}"
    items = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=selector).items
    items.sort(key=lambda e: (e.first_timestamp or e.event_time or 0, e.metadata.name))
    return [(str(e.type), str(e.reason), str(e.message)) for e in items]


def simulated_model(name: str, *, auc: float = 0.93, duration: str = "1s", **retraining: Any) -> dict[str, Any]:
    """A ModelDeployment whose trainer "runs" ``duration`` and reports ``auc`` (the simulation
    contract), gated at auc >= 0.9; ``retraining`` fields (cooldown, historyLimit, ...) as given."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "training": {
                "image": "registry.example/churn-trainer:2.3.0",
                "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
                "validation": [{"metric": "auc", "min": 0.9}],
                "podAnnotations": {
                    "sim.perennial.dev/result": json.dumps({"metrics": {"auc": auc}}),
                    "sim.perennial.dev/duration": duration,
                },
            },
            "serving": {"image": "registry.example/churn-server:1.9.0"},
            "retraining": retraining,
        },
    }
