"""The CRDs generated from the pydantic models: structural, described, defaulted, fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from perennial.api import crdgen
from perennial.api.base import ApiModel
from perennial.api.driftpolicy import DriftPolicySpec
from perennial.api.modeldeployment import ModelDeploymentSpec
from perennial.api.trainingjob import TrainingJobSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        nodes += _walk(sub, f"{path}.{name}")
    if "items" in node:
        nodes += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += _walk(node["additionalProperties"], f"{path}{{}}")
    return nodes


def _schema(kind: crdgen.Kind) -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_committed_crds_are_regenerated_from_the_models(kind: crdgen.Kind) -> None:
    committed = REPO / "crds" / f"perennial.dev_{kind.plural}.yaml"
    assert committed.read_text() == crdgen.render(kind), f"{committed.name} is stale: run `make crds`"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crdgen.Kind) -> None:
    for path, node in _walk(_schema(kind)):
        assert "$ref" not in node, path
        assert "title" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
        elif path != ".metadata":
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: unions must be int-or-string"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_field_has_a_description_for_kubectl_explain(kind: crdgen.Kind) -> None:
    for path, node in _walk(_schema(kind)):
        if path.startswith((".spec", ".status")) and not path.endswith("{}") and not path.endswith("[]"):
            assert node.get("description"), f"{kind.kind}{path} has no description"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_strings_and_lists_in_spec_are_bounded_for_cel_cost(kind: crdgen.Kind) -> None:
    for path, node in _walk(_schema(kind)["properties"]["spec"], ".spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path} has no maxProperties"


def test_documented_defaults_are_schema_defaults() -> None:
    def spec_node(kind: str, *path: str) -> dict[str, Any]:
        node: dict[str, Any] = _schema(next(k for k in crdgen.KINDS if k.kind == kind))["properties"]["spec"]
        for part in path:
            node = node["items"] if part == "[]" else node["properties"][part]
        return node

    assert spec_node("TrainingJob", "workers")["default"] == 1
    assert spec_node("TrainingJob", "backoffLimit")["default"] == 2
    assert spec_node("TrainingJob", "ttlAfterFinished")["default"] == "24h"
    assert "default" not in spec_node("TrainingJob", "activeDeadline")
    assert spec_node("ModelDeployment", "serving", "replicas")["default"] == 1
    assert spec_node("ModelDeployment", "serving", "port")["default"] == 8080
    assert spec_node("ModelDeployment", "serving", "modelUriEnv")["default"] == "MODEL_URI"
    assert spec_node("ModelDeployment", "promotion")["default"] == {}
    assert spec_node("ModelDeployment", "promotion", "policy")["default"] == "Automatic"
    assert spec_node("ModelDeployment", "rollout", "progressDeadline")["default"] == "10m"
    assert spec_node("ModelDeployment", "rollout", "autoRollback")["default"] is True
    assert spec_node("ModelDeployment", "retraining", "cooldown")["default"] == "1h"
    assert spec_node("ModelDeployment", "retraining", "onSpecChange")["default"] is True
    assert spec_node("ModelDeployment", "retraining", "maxConsecutiveFailures")["default"] == 3
    assert spec_node("ModelDeployment", "retraining", "historyLimit")["default"] == 5
    assert spec_node("ModelDeployment", "suspend")["default"] is False
    assert spec_node("ModelDeployment", "training", "workers")["default"] == 1
    assert spec_node("DriftPolicy", "interval")["default"] == "1m"
    assert spec_node("DriftPolicy", "prometheus", "timeout")["default"] == "10s"
    assert spec_node("DriftPolicy", "metrics", "[]", "for")["default"] == "0s"
    assert spec_node("DriftPolicy", "metrics", "[]", "distribution", "minSamples")["default"] == 100
    assert spec_node("DriftPolicy", "trigger", "when")["default"] == "AnyMetric"
    assert spec_node("DriftPolicy", "trigger", "action")["default"] == "Retrain"
    assert spec_node("DriftPolicy", "trigger", "cooldown")["default"] == "6h"
    assert spec_node("DriftPolicy", "suspend")["default"] is False


def test_kind_names_match_the_contract() -> None:
    names = {k.kind: crdgen.crd(k)["spec"]["names"] for k in crdgen.KINDS}
    assert {kind: n["shortNames"] for kind, n in names.items()} == {
        "TrainingJob": ["tjob"],
        "ModelDeployment": ["mdep"],
        "DriftPolicy": ["dpol"],
    }
    assert all(n["categories"] == ["perennial"] for n in names.values())
    columns = {k.kind: [c.name for c in k.columns if not c.priority] for k in crdgen.KINDS}
    assert columns == {
        "TrainingJob": ["Model", "Version", "Phase", "Duration", "Age"],
        "ModelDeployment": ["Serving", "Latest", "Phase", "Ready", "Last Retrain", "Age"],
        "DriftPolicy": ["Target", "Drifting", "Last Trigger", "Triggers", "Age"],
    }
    wide = {k.kind: [c.name for c in k.columns if c.priority] for k in crdgen.KINDS}
    assert wide == {
        "TrainingJob": ["Reason"],
        "ModelDeployment": ["Auto Retrain", "Step", "Canary", "URL", "Message"],
        "DriftPolicy": ["Ready", "Reason"],
    }
    # `kubectl get -o wide` only: every extra column has priority 1.
    assert {c.priority for k in crdgen.KINDS for c in k.columns} == {0, 1}


def test_wide_columns_read_the_conditions_and_the_service_url() -> None:
    paths = {
        (k.kind, column["name"]): column["jsonPath"]
        for k in crdgen.KINDS
        for column in crdgen.crd(k)["spec"]["versions"][0]["additionalPrinterColumns"]
        if column.get("priority") == 1
    }
    assert paths == {
        ("TrainingJob", "Reason"): '.status.conditions[?(@.type=="Succeeded")].reason',
        ("ModelDeployment", "Auto Retrain"): ".status.automaticRetrains",
        ("ModelDeployment", "URL"): ".status.url",
        ("ModelDeployment", "Step"): ".status.rollout.step",
        ("ModelDeployment", "Canary"): ".status.rollout.weight",
        ("ModelDeployment", "Message"): '.status.conditions[?(@.type=="Ready")].message',
        ("DriftPolicy", "Ready"): '.status.conditions[?(@.type=="Ready")].status',
        ("DriftPolicy", "Reason"): '.status.conditions[?(@.type=="Ready")].reason',
    }
    (modeldeployment,) = [k for k in crdgen.KINDS if k.kind == "ModelDeployment"]
    status = crdgen.crd(modeldeployment)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["url"]["type"] == "string"
    assert "http://<name>.<namespace>.svc:<spec.serving.port>" in status["properties"]["url"]["description"]


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "TrainingJob": TrainingJobSpec,
    "ModelDeployment": ModelDeploymentSpec,
    "DriftPolicy": DriftPolicySpec,
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse_into_the_models_and_round_trip(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        model = SPEC_MODELS[document["kind"]].model_validate(document["spec"])
        assert isinstance(model, ApiModel)
        again = SPEC_MODELS[document["kind"]].model_validate(model.to_api())
        assert again == model


def test_models_apply_the_same_defaults_as_the_schema() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"training": {"image": "t:1", "output": {"modelUri": "s3://m/{version}"}}, "serving": {"image": "s:1"}}
    )
    assert spec.retraining.cooldown == "1h"
    assert spec.training.ttl_after_finished == "24h"
    assert spec.to_api()["rollout"] == {"strategy": "Rolling", "progressDeadline": "10m", "autoRollback": True}
