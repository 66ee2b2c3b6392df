"""The objects the plugin reads, parsed once through the API models (``perennial.api``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus, ModelVersionRecord
from perennial.kubectl.errors import ExitCode, PluginError


@dataclass(frozen=True)
class Model:
    """A ModelDeployment as read from the API server."""

    name: str
    namespace: str
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None
    resource_version: str = ""

    @property
    def versions(self) -> list[ModelVersionRecord]:
        """The lineage, oldest version first."""
        return sorted(self.status.versions or [], key=lambda r: _version_key(r.version))

    def record(self, version: str | None) -> ModelVersionRecord | None:
        return next((r for r in self.status.versions or [] if r.version == version), None) if version else None

    @property
    def pinned_version(self) -> str | None:
        return self.spec.pinned_version or None  # "" means "follow promotion", as unset


@dataclass(frozen=True)
class Policy:
    """A DriftPolicy as read from the API server."""

    name: str
    spec: DriftPolicySpec
    status: DriftPolicyStatus
    resource_version: str = ""


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (0, version)


def _metadata(body: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = body.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def parse_model(body: Mapping[str, Any]) -> Model:
    metadata = _metadata(body)
    name = str(metadata.get("name") or "")
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError as error:
        raise PluginError(
            ExitCode.API_ERROR,
            f'cannot read modeldeployment "{name}": it does not match this plugin\'s API'
            f" (is the plugin older than the operator?): {_first_error(error)}",
        ) from error
    return Model(
        name=name,
        namespace=str(metadata.get("namespace") or ""),
        spec=spec,
        status=status,
        annotations=dict(metadata.get("annotations") or {}),
        labels=dict(metadata.get("labels") or {}),
        generation=metadata.get("generation"),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def parse_policy(body: Mapping[str, Any]) -> Policy | None:
    """A DriftPolicy, or None for one this plugin cannot read (it is left off the screens)."""
    metadata = _metadata(body)
    try:
        spec = DriftPolicySpec.model_validate(body.get("spec") or {})
        status = DriftPolicyStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return None
    return Policy(
        name=str(metadata.get("name") or ""),
        spec=spec,
        status=status,
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def policies_targeting(model_name: str, bodies: Sequence[Mapping[str, Any]]) -> list[Policy]:
    """The DriftPolicies whose targetRef names the model, by name."""
    policies = []
    for body in bodies:
        target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
        if target != model_name:
            continue
        policy = parse_policy(body)
        if policy is not None:
            policies.append(policy)
    return sorted(policies, key=lambda p: p.name)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')}"
