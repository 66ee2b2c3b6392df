"""kwok Stages that tests add at runtime, to make simulated pods misbehave in one way.

A Stage of weight 1e9 outweighs the built-in ones (weight 1) for the pods it selects;
every Stage here only matches Pending pods that are not being deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

VERSION_LABEL = "perennial.dev/version"
TRAINING_JOB_LABEL = "perennial.dev/training-job"


def pod_stage(
    name: str,
    status_template: str,
    *,
    expressions: Sequence[Mapping[str, Any]] = (),
    match_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Stage that gives selected Pending pods ``status_template`` instead of running them."""
    selector: dict[str, Any] = {
        "matchExpressions": [
            *expressions,
            {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
            {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
        ]
    }
    if match_labels:
        selector["matchLabels"] = dict(match_labels)
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "weight": 1_000_000_000,
            "selector": selector,
            "next": {"statusTemplate": status_template},
        },
    }


def in_namespace(namespace: str) -> dict[str, Any]:
    return {"key": ".metadata.namespace", "operator": "In", "values": [namespace]}


def unready_serving(name: str, version: str, namespace: str | None = None) -> dict[str, Any]:
    """``version``'s serving pods (in ``namespace``, or any) run but never become Ready.

    Training pods carry ``perennial.dev/training-job`` (and the version label too), so they
    are left to the built-in Stages and still report their metrics.
    """
    expressions = [{"key": f'.metadata.labels["{TRAINING_JOB_LABEL}"]', "operator": "DoesNotExist"}]
    if namespace is not None:
        expressions.insert(0, in_namespace(namespace))
    return pod_stage(
        name,
        'phase: Running\nconditions:\n- {type: Ready, status: "False"}\n',
        expressions=expressions,
        match_labels={VERSION_LABEL: version},
    )
