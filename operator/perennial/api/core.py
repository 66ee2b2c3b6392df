"""Curated Kubernetes core/v1 types embedded in Perennial specs.

Each mirrors the core type's wire format for the subset Perennial passes to its pods,
so the API server validates it structurally at apply time. The subset is the trust
model of api.md: nothing that could make a pod privileged exists here — no
securityContext, host namespaces, hostPath or hostPort, no mount propagation. A field
outside the subset is an "unknown field" error under kubectl's strict validation, and
is pruned for clients that skip it (a pruned volume then fails the "exactly one source"
rule instead of silently mounting nothing).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from perennial.api.base import (
    ENV_NAME_PATTERN,
    LONG_TEXT,
    NAME,
    SHORT,
    TEXT,
    ApiModel,
    DnsLabel,
    DnsSubdomain,
    IntOrString,
    Quantity,
    StringMap,
    cel,
    cel_rules,
)

Strings = Annotated[list[Annotated[str, Field(max_length=LONG_TEXT)]], Field(max_length=64)]
ShortStrings = Annotated[list[Annotated[str, Field(max_length=SHORT)]], Field(max_length=64)]


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace, by name."""

    name: DnsSubdomain
    """Name of the referenced object."""


# ---------------------------------------------------------------- env
class ConfigMapKeySelector(ApiModel):
    """One key of a ConfigMap."""

    name: DnsSubdomain
    """ConfigMap name."""
    key: Annotated[str, Field(max_length=NAME)]
    """Key in the ConfigMap."""
    optional: bool | None = None
    """Whether the ConfigMap or key may be missing."""


class SecretKeySelector(ApiModel):
    """One key of a Secret in the pod's namespace."""

    name: DnsSubdomain
    """Secret name."""
    key: Annotated[str, Field(max_length=NAME)]
    """Key in the Secret."""
    optional: bool | None = None
    """Whether the Secret or key may be missing."""


class ObjectFieldSelector(ApiModel):
    """A field of the pod, as in the downward API."""

    field_path: Annotated[str, Field(max_length=TEXT)]
    """Path of the field, e.g. metadata.name or status.podIP."""
    api_version: Annotated[str, Field(max_length=SHORT)] | None = None
    """Version of the schema the path is written in (default v1)."""


class ResourceFieldSelector(ApiModel):
    """A container's resource request or limit."""

    resource: Annotated[str, Field(max_length=SHORT)]
    """Resource to select, e.g. limits.memory."""
    container_name: Annotated[str, Field(max_length=SHORT)] | None = None
    """Container name (default: this container)."""
    divisor: Quantity | None = None
    """Output format of the exposed value, e.g. 1Mi."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    model_config = cel_rules(
        cel(
            "[has(self.fieldRef), has(self.resourceFieldRef), has(self.configMapKeyRef),"
            " has(self.secretKeyRef)].filter(x, x).size() == 1",
            "valueFrom needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
        )
    )

    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of the container."""
    config_map_key_ref: ConfigMapKeySelector | None = None
    """A key of a ConfigMap."""
    secret_key_ref: SecretKeySelector | None = None
    """A key of a Secret."""


class EnvVar(ApiModel):
    """An environment variable of the container (core/v1 EnvVar)."""

    model_config = cel_rules(
        cel("!(has(self.value) && has(self.valueFrom))", "an env var has either value or valueFrom, not both"),
    )

    name: Annotated[str, Field(pattern=ENV_NAME_PATTERN, max_length=NAME)]
    """Variable name."""
    value: Annotated[str, Field(max_length=LONG_TEXT)] | None = None
    """Literal value."""
    value_from: EnvVarSource | None = None
    """Value read from the pod, a ConfigMap or a Secret."""


class ConfigMapEnvSource(ApiModel):
    """All keys of a ConfigMap as environment variables."""

    name: DnsSubdomain
    """ConfigMap name."""
    optional: bool | None = None
    """Whether the ConfigMap may be missing."""


class SecretEnvSource(ApiModel):
    """All keys of a Secret as environment variables."""

    name: DnsSubdomain
    """Secret name."""
    optional: bool | None = None
    """Whether the Secret may be missing."""


class EnvFromSource(ApiModel):
    """A ConfigMap or Secret whose keys become environment variables (core/v1 EnvFromSource)."""

    model_config = cel_rules(
        cel(
            "has(self.configMapRef) != has(self.secretRef)",
            "envFrom needs exactly one of configMapRef or secretRef",
        ),
    )

    prefix: Annotated[str, Field(max_length=SHORT)] | None = None
    """Prefix added to every variable name."""
    config_map_ref: ConfigMapEnvSource | None = None
    """The ConfigMap to read."""
    secret_ref: SecretEnvSource | None = None
    """The Secret to read."""


# ---------------------------------------------------------------- resources
ResourceList = Annotated[dict[str, Quantity], Field(json_schema_extra={"maxProperties": 32})]


class ResourceRequirements(ApiModel):
    """Compute resources of the container (core/v1 ResourceRequirements)."""

    requests: ResourceList | None = None
    """Minimum resources, e.g. {cpu: "2", memory: 4Gi}; used for scheduling."""
    limits: ResourceList | None = None
    """Maximum resources, e.g. {memory: 8Gi, nvidia.com/gpu: "1"}."""


# ---------------------------------------------------------------- scheduling
class Toleration(ApiModel):
    """Lets the pod schedule onto nodes with a matching taint (core/v1 Toleration)."""

    key: Annotated[str, Field(max_length=NAME)] | None = None
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (default Equal)."""
    value: Annotated[str, Field(max_length=SHORT)] | None = None
    """Taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class NodeSelectorRequirement(ApiModel):
    """A node label requirement."""

    key: Annotated[str, Field(max_length=NAME)]
    """Node label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the key relates to the values."""
    values: ShortStrings | None = None
    """Values for In, NotIn (several), Gt, Lt (one)."""


class NodeSelectorTerm(ApiModel):
    """Requirements that must all hold for a node."""

    match_expressions: Annotated[list[NodeSelectorRequirement], Field(max_length=32)] | None = None
    """Requirements on node labels."""
    match_fields: Annotated[list[NodeSelectorRequirement], Field(max_length=32)] | None = None
    """Requirements on node fields."""


class NodeSelector(ApiModel):
    """Terms of which at least one must hold."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(max_length=16)]
    """The terms, ORed."""


class PreferredSchedulingTerm(ApiModel):
    """A weighted node preference."""

    weight: Annotated[int, Field(ge=1, le=100)]
    """Weight 1-100."""
    preference: NodeSelectorTerm
    """The preferred nodes."""


class NodeAffinity(ApiModel):
    """Node affinity rules."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pod must run on."""
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[PreferredSchedulingTerm], Field(max_length=16)] | None
    ) = None
    """Nodes the pod prefers."""


class LabelSelectorRequirement(ApiModel):
    """A label requirement."""

    key: Annotated[str, Field(max_length=NAME)]
    """Label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: ShortStrings | None = None
    """Values for In and NotIn."""


class LabelSelector(ApiModel):
    """A label query (metav1.LabelSelector)."""

    match_labels: StringMap | None = None
    """Labels that must all match."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=32)] | None = None
    """Requirements that must all hold."""


class PodAffinityTerm(ApiModel):
    """Pods (and their topology domain) this pod should be near or away from."""

    label_selector: LabelSelector | None = None
    """The pods."""
    namespaces: ShortStrings | None = None
    """Namespaces of the pods (default: this pod's)."""
    namespace_selector: LabelSelector | None = None
    """Namespaces of the pods, by label."""
    topology_key: Annotated[str, Field(max_length=NAME)]
    """Node label whose value defines the domain, e.g. kubernetes.io/hostname."""


class WeightedPodAffinityTerm(ApiModel):
    """A weighted pod (anti-)affinity preference."""

    weight: Annotated[int, Field(ge=1, le=100)]
    """Weight 1-100."""
    pod_affinity_term: PodAffinityTerm
    """The term."""


class PodAffinity(ApiModel):
    """Pod affinity or anti-affinity rules."""

    required_during_scheduling_ignored_during_execution: (
        Annotated[list[PodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms that must hold."""
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[WeightedPodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms that are preferred."""


class Affinity(ApiModel):
    """Scheduling constraints (core/v1 Affinity)."""

    node_affinity: NodeAffinity | None = None
    """Which nodes."""
    pod_affinity: PodAffinity | None = None
    """Near which pods."""
    pod_anti_affinity: PodAffinity | None = None
    """Away from which pods."""


# ---------------------------------------------------------------- volumes
class KeyToPath(ApiModel):
    """Projects one key to a file."""

    key: Annotated[str, Field(max_length=NAME)]
    """Key to project."""
    path: Annotated[str, Field(max_length=TEXT)]
    """Relative file path."""
    mode: Annotated[int, Field(ge=0, le=0o777)] | None = None
    """File mode bits."""


class EmptyDirVolumeSource(ApiModel):
    """A scratch directory that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = None
    """Storage medium: node default, or Memory (tmpfs)."""
    size_limit: Quantity | None = None
    """Size limit, e.g. 10Gi."""


class ConfigMapVolumeSource(ApiModel):
    """A ConfigMap's keys as files."""

    name: DnsSubdomain
    """ConfigMap name."""
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    """Keys to project (default: all)."""
    default_mode: Annotated[int, Field(ge=0, le=0o777)] | None = None
    """Mode bits of the files."""
    optional: bool | None = None
    """Whether the ConfigMap may be missing."""


class SecretVolumeSource(ApiModel):
    """A Secret's keys as files."""

    secret_name: DnsSubdomain
    """Secret name."""
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    """Keys to project (default: all)."""
    default_mode: Annotated[int, Field(ge=0, le=0o777)] | None = None
    """Mode bits of the files."""
    optional: bool | None = None
    """Whether the Secret may be missing."""


class PersistentVolumeClaimVolumeSource(ApiModel):
    """A PersistentVolumeClaim in the pod's namespace."""

    claim_name: DnsSubdomain
    """Claim name."""
    read_only: bool | None = None
    """Mount read-only."""


class Volume(ApiModel):
    """A pod volume (core/v1 Volume) from the sources Perennial allows; hostPath is not one of them."""

    model_config = cel_rules(
        cel(
            "[has(self.emptyDir), has(self.configMap), has(self.secret), has(self.persistentVolumeClaim)]"
            ".filter(x, x).size() == 1",
            "a volume needs exactly one source: emptyDir, configMap, secret or persistentVolumeClaim"
            " (hostPath and other node-level sources are not allowed)",
        )
    )

    name: DnsLabel
    """Volume name, referenced by volumeMounts."""
    empty_dir: EmptyDirVolumeSource | None = None
    """Scratch space."""
    config_map: ConfigMapVolumeSource | None = None
    """A ConfigMap."""
    secret: SecretVolumeSource | None = None
    """A Secret."""
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    """A PersistentVolumeClaim."""


class VolumeMount(ApiModel):
    """Where a volume appears in the container (core/v1 VolumeMount, without mount propagation)."""

    name: DnsLabel
    """Name of a volume of the pod."""
    mount_path: Annotated[str, Field(max_length=TEXT, pattern=r"^/")]
    """Absolute path in the container."""
    sub_path: Annotated[str, Field(max_length=TEXT)] | None = None
    """Sub-path of the volume to mount."""
    read_only: bool | None = None
    """Mount read-only."""


# ---------------------------------------------------------------- probes
class HTTPHeader(ApiModel):
    """An HTTP header."""

    name: Annotated[str, Field(max_length=NAME)]
    """Header name."""
    value: Annotated[str, Field(max_length=TEXT)]
    """Header value."""


class HTTPGetAction(ApiModel):
    """An HTTP GET against the container."""

    path: Annotated[str, Field(max_length=TEXT)] | None = None
    """Path, e.g. /healthz."""
    port: IntOrString
    """Port number or name."""
    scheme: Literal["HTTP", "HTTPS"] | None = None
    """HTTP or HTTPS."""
    http_headers: Annotated[list[HTTPHeader], Field(max_length=16)] | None = None
    """Extra request headers."""


class TCPSocketAction(ApiModel):
    """A TCP connect to the container."""

    port: IntOrString
    """Port number or name."""


class ExecAction(ApiModel):
    """A command run in the container."""

    command: Strings
    """Command and arguments; exit 0 is healthy."""


class GRPCAction(ApiModel):
    """A gRPC health check."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port number."""
    service: Annotated[str, Field(max_length=NAME)] | None = None
    """Service name for the gRPC health protocol."""


class Probe(ApiModel):
    """A readiness or liveness check of the serving container (core/v1 Probe)."""

    model_config = cel_rules(
        cel(
            "[has(self.httpGet), has(self.tcpSocket), has(self.exec), has(self.grpc)].filter(x, x).size() == 1",
            "a probe needs exactly one of httpGet, tcpSocket, exec or grpc",
        )
    )

    http_get: HTTPGetAction | None = None
    """HTTP GET check."""
    tcp_socket: TCPSocketAction | None = None
    """TCP connect check."""
    exec: ExecAction | None = None
    """Command check."""
    grpc: GRPCAction | None = None
    """gRPC health check."""
    initial_delay_seconds: Annotated[int, Field(ge=0)] | None = None
    """Seconds after start before the first check."""
    period_seconds: Annotated[int, Field(ge=1)] | None = None
    """Seconds between checks."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """Seconds before a check times out."""
    success_threshold: Annotated[int, Field(ge=1)] | None = None
    """Consecutive successes to count as healthy."""
    failure_threshold: Annotated[int, Field(ge=1)] | None = None
    """Consecutive failures to count as unhealthy."""
