"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

The models are the single source of truth: pydantic's JSON Schema is turned into a
Kubernetes *structural* schema (refs inlined, nullable unions collapsed, titles
dropped, object defaults reduced to ``{}`` so the API server fills nested defaults in
itself), and the kind-level facts (names, printer columns, root CEL rules) come from
``KINDS`` below. ``make crds`` writes the files; a test fails when they are stale.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from perennial.api.base import FRIENDLY_PATTERNS, GROUP, VERSION, cel
from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.api.trainingjob import TrainingJobSpec, TrainingJobStatus

# Keywords a structural schema may carry; everything else pydantic emits is dropped.
_KEPT = {
    "type", "description", "default", "enum", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "required", "properties", "items", "additionalProperties",
    "anyOf", "nullable",
    "x-kubernetes-validations", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    name_max_length: int | None  # None: the API server's own 253 applies
    spec_rules: tuple[dict[str, str], ...] = ()
    root_rules: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _condition_status(condition: str) -> str:
    return _condition_field(condition, "status")


def _condition_field(condition: str, field_name: str) -> str:
    return f'.status.conditions[?(@.type=="{condition}")].{field_name}'


# Extra columns for `kubectl get -o wide` (priority 1): the default columns are the API
# contract's; these answer "is it fine, and if not, why?".
WIDE = 1


KINDS = (
    Kind(
        kind="TrainingJob",
        plural="trainingjobs",
        short_name="tjob",
        description="One training run as a Kubernetes Job, with lineage (data, code, parameters, "
        "metrics) and validation gates.",
        spec=TrainingJobSpec,
        status=TrainingJobStatus,
        columns=(
            PrinterColumn("Model", ".spec.model", description="The logical model"),
            PrinterColumn("Version", ".status.version", description="The model version this run produces"),
            PrinterColumn("Phase", ".status.phase", description="Pending, Running, Succeeded, Failed, Rejected"),
            PrinterColumn("Duration", ".status.duration", description="How long the run took"),
            AGE,
            PrinterColumn(
                "Reason",
                _condition_field("Succeeded", "reason"),
                description="The Succeeded condition's reason: why a run failed or was rejected"
                " (BackoffLimitExceeded, DeadlineExceeded, MetricBelowMin, ...)",
                priority=WIDE,
            ),
        ),
        spec_rules=(cel("self == oldSelf", "TrainingJob spec is immutable: create a new TrainingJob to change a run"),),
        # The Job and its pods' job-name label carry the name: a label value, 63 at most.
        name_max_length=63,
    ),
    Kind(
        kind="ModelDeployment",
        plural="modeldeployments",
        short_name="mdep",
        description="A served model (Deployment + Service) plus its training template: it trains, "
        "promotes versions that pass their gates, rolls out, rolls back and keeps the version history.",
        spec=ModelDeploymentSpec,
        status=ModelDeploymentStatus,
        columns=(
            PrinterColumn("Serving", ".status.servingVersion", description="The version being served"),
            PrinterColumn("Latest", ".status.latestVersion", description="The newest version"),
            PrinterColumn("Phase", ".status.phase", description="Training, Rolling, Serving, Degraded, Failed"),
            PrinterColumn("Ready", ".status.ready", description="Ready serving replicas / desired"),
            PrinterColumn("Last Retrain", ".status.lastRetrain.time", "date", "When the last retrain started"),
            PrinterColumn(
                "Auto Retrain",
                ".status.automaticRetrains",
                description="Active, Suspended, CircuitOpen or NoImprovement: whether drift and schedule retrain",
                priority=WIDE,
            ),
            PrinterColumn(
                "Step",
                ".status.rollout.step",
                "integer",
                "The canary's current step (of status.rollout.steps), while a canary runs",
                priority=WIDE,
            ),
            PrinterColumn(
                "Canary",
                ".status.rollout.weight",
                "integer",
                "The canary's share of the serving replicas in percent (100 while it is promoted)",
                priority=WIDE,
            ),
            AGE,
            PrinterColumn("URL", ".status.url", description="The Service's in-cluster URL", priority=WIDE),
            PrinterColumn(
                "Message",
                _condition_field("Ready", "message"),
                description="The Ready condition's message: what serves, or why nothing does",
                priority=WIDE,
            ),
        ),
        # TrainingJobs are named <name>-v<N> (N up to 9 digits) and must fit 63.
        name_max_length=52,
        root_rules=(
            # The Service is named after it: a DNS-1035 label.
            # Names the API server already refuses (not DNS names) get its error alone.
            cel(
                "!self.metadata.name.matches(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
                " || self.metadata.name.matches(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "metadata.name must start with a letter and hold only lower-case letters, digits and '-'"
                " (the Service is named after the ModelDeployment)",
            ),
        ),
    ),
    Kind(
        kind="DriftPolicy",
        plural="driftpolicies",
        short_name="dpol",
        description="Metrics in Prometheus with bounds; a sustained breach retrains the target "
        "ModelDeployment, with cooldowns so a noisy metric never causes a retrain storm.",
        spec=DriftPolicySpec,
        status=DriftPolicyStatus,
        name_max_length=None,
        columns=(
            PrinterColumn("Target", ".spec.targetRef.name", description="The ModelDeployment it retrains"),
            PrinterColumn("Drifting", _condition_status("Drifting"), description="Whether the trigger rule holds"),
            PrinterColumn("Last Trigger", ".status.lastTriggerTime", "date", "When it last asked for a retrain"),
            PrinterColumn("Triggers", ".status.triggerCount", "integer", "Retrains asked for"),
            AGE,
            PrinterColumn(
                "Ready",
                _condition_status("Ready"),
                description="Whether the policy can evaluate (target found, Prometheus answers, queries valid)",
                priority=WIDE,
            ),
            PrinterColumn(
                "Reason",
                _condition_field("Ready", "reason"),
                description="The Ready condition's reason (TargetNotFound, PrometheusUnreachable, QueryError, ...)",
                priority=WIDE,
            ),
        ),
    ),
)


class SchemaError(ValueError):
    pass


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        # Sibling keywords (description, default) describe the field, so they win.
        return {**_resolve(target, defs), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON Schema node into a Kubernetes structural schema node."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        outer = {k: v for k, v in schema.items() if k != "anyOf"}
        if outer.get("default", ...) is None:
            del outer["default"]  # optional field: absent, not null
        if len(branches) != 1:
            raise SchemaError(f"cannot express a union of {branches} structurally")
        return structural({**_resolve(branches[0], defs), **outer}, defs)
    if "const" in schema:
        schema = {**{k: v for k, v in schema.items() if k != "const"}, "enum": [schema["const"]]}

    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _KEPT:
            continue
        if key == "properties":
            node[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            node[key] = structural(value, defs)
        elif key == "description":
            node[key] = " ".join(value.split())
        else:
            node[key] = copy.deepcopy(value)
    if node.get("type") == "object" and isinstance(node.get("default"), dict):
        # Let the API server apply the nested defaults itself: `{}` keeps them in one place.
        node["default"] = {}
    if node.get("default", ...) is None:
        del node["default"]
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    if node.get("pattern") in FRIENDLY_PATTERNS:
        # The API server would print the raw regex; a CEL rule prints what the format is.
        pattern = node.pop("pattern")
        matches = f"self.matches(r'{pattern}')"
        if node.get("x-kubernetes-int-or-string"):
            matches = f"type(self) == int || {matches}"
        rule = cel(matches, FRIENDLY_PATTERNS[pattern])
        node["x-kubernetes-validations"] = [rule, *node.get("x-kubernetes-validations", [])]
    if "properties" in node and not node.get("required"):
        node.pop("required", None)
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def _missing_descriptions(node: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, sub in node.get("properties", {}).items():
        if not sub.get("description"):
            missing.append(f"{path}.{name}")
        missing += _missing_descriptions(sub, f"{path}.{name}")
    if "items" in node:
        missing += _missing_descriptions(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += _missing_descriptions(node["additionalProperties"], f"{path}{{}}")
    return missing


def crd(kind: Kind) -> dict[str, Any]:
    spec = model_schema(kind.spec)
    if kind.spec_rules:
        spec["x-kubernetes-validations"] = [*spec.get("x-kubernetes-validations", []), *kind.spec_rules]
    status = model_schema(kind.status)
    missing = _missing_descriptions(spec, "spec") + _missing_descriptions(status, "status")
    if missing:
        raise SchemaError(f"{kind.kind}: fields without a description: {', '.join(missing)}")
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "perennial.dev/v1alpha1"},
            "kind": {"type": "string", "description": kind.kind},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if kind.name_max_length is not None:
        name = {"type": "string", "maxLength": kind.name_max_length}
        root["properties"]["metadata"]["properties"] = {"name": name}
    if kind.root_rules:
        root["x-kubernetes-validations"] = list(kind.root_rules)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "perennial", "app.kubernetes.io/part-of": "perennial"},
            # Argo CD: CRDs before the operator and the resources that use them.
            "annotations": {"argocd.argoproj.io/sync-wave": "-10"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["perennial"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in kind.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from operator/perennial/api; do not edit by hand.\n"


def render(kind: Kind) -> str:
    import yaml  # a dev-time dependency: the operator itself never writes YAML

    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=120)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / f"{GROUP}_{kind.plural}.yaml"
        path.write_text(render(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "crds")):
        print(written_path)
