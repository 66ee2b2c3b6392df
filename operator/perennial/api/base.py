"""Building blocks every Perennial kind shares: the model base, formats, CEL rules, conditions.

Field docstrings are the descriptions: pydantic reads them (``use_attribute_docstrings``)
and the CRD generator copies them into the schema, so ``kubectl explain`` shows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from perennial.api.durations import DURATION_HELP, DURATION_PATTERN
from perennial.api.schedule import CRON_HELP, CRON_PATTERN

GROUP = "perennial.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        # Objects come from the API server, which already pruned unknown fields; a newer
        # CRD's extra fields must not break an older operator.
        extra="ignore",
        frozen=False,
    )

    def to_api(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def defaulted(model: type[BaseModel]) -> Any:
    """A nested object that defaults to ``{}``, so the API server fills in its own field
    defaults even when the user leaves the whole object out (``kubectl get -o yaml``
    then shows them, and GitOps diffs stay clean)."""
    return Field(default_factory=model, json_schema_extra={"default": {}})


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` points the error at a field."""
    validation = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    if reason:
        validation["reason"] = reason
    return validation


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """Schema extra for a field: ``Field(json_schema_extra=validations(...))``."""
    return {"x-kubernetes-validations": list(rules)}


def at_least(minimum: str, what: str) -> Any:
    """A Duration field that must be at least ``minimum`` (checked once the format is valid)."""
    return Field(
        json_schema_extra=validations(
            cel(
                f"!self.matches(r'{DURATION_PATTERN}') || duration(self) >= duration('{minimum}')",
                f"{what} must be at least {minimum}",
            )
        )
    )


def cel_rules(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying the model's CEL rules (pydantic merges it with ApiModel's)."""
    return ConfigDict(json_schema_extra=validations(*rules))


# ---------------------------------------------------------------- formats
# Limits keep every string and list bounded so the API server's CEL cost estimate passes.
SHORT = 63
NAME = 253
TEXT = 1024
LONG_TEXT = 4096
URI = 2048

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=40)]
"""A Go/Prometheus duration such as 30s, 10m, 6h or 1h30m."""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Label values: what `perennial.dev/model` and `perennial.dev/version` may hold.
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
METRIC_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
IMAGE_PATTERN = r"^[^\s]+$"
# Model versions are whole numbers written in decimal: "1", "2", ... (api.md).
MODEL_VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
PINNED_VERSION_PATTERN = r"^([1-9][0-9]{0,8})?$"  # empty: follow promotion

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=SHORT)]
DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=NAME)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=SHORT)]
MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN, max_length=SHORT)]

# A Kubernetes resource quantity ("500m", "4Gi", 2): an int or a string, as core types.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
IntOrString = Annotated[
    int | str,
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]

StringMap = Annotated[
    dict[str, Annotated[str, Field(max_length=LONG_TEXT)]],
    Field(json_schema_extra={"maxProperties": 64}),
]


QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # optional DNS prefix/
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def label_map_rules(what: str, *, values_are_labels: bool) -> dict[str, Any]:
    """Keys a user may not set on pods (the operator's own), and label syntax where it applies."""
    rules = [
        cel(
            "self.all(k, !k.startsWith('perennial.dev/') && k != 'app.kubernetes.io/managed-by')",
            f"{what} may not use the perennial.dev/ prefix or app.kubernetes.io/managed-by: the operator sets those",
        ),
        cel(
            f"self.all(k, k.size() <= 316 && k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
            f"{what} keys must be label keys: [prefix/]name, name of letters, digits, '-', '_', '.' (at most 63)",
        ),
    ]
    if values_are_labels:
        rules.append(
            cel(
                f"self.all(k, self[k].size() <= 63 && self[k].matches(r'{LABEL_VALUE_PATTERN}'))",
                f"{what} values must be label values: at most 63 letters, digits, '-', '_' or '.',"
                " starting and ending with a letter or digit",
            )
        )
    return validations(*rules)


# Patterns whose raw regex would make a poor error message: the CRD generator turns each
# into a CEL rule with this message (pydantic still checks the pattern in Python).
FRIENDLY_PATTERNS: dict[str, str] = {
    DURATION_PATTERN: DURATION_HELP,
    CRON_PATTERN: CRON_HELP,
    DNS_LABEL_PATTERN: "must be a DNS label: lower-case letters, digits and '-', starting and ending with one",
    DNS_SUBDOMAIN_PATTERN: "must be a DNS name: lower-case letters, digits, '-' and '.'",
    LABEL_VALUE_PATTERN: "must be a label value: letters, digits, '-', '_' or '.', starting and ending with one",
    ENV_NAME_PATTERN: (
        "must be an environment variable name: letters, digits, '_', '-' or '.', not starting with a digit"
    ),
    METRIC_NAME_PATTERN: "must be a metric name: letters, digits and '_', not starting with a digit",
    MODEL_VERSION_PATTERN: 'must be a version number such as "3"',
    PINNED_VERSION_PATTERN: 'must be a version number such as "3", or empty to serve what promotion chose',
    IMAGE_PATTERN: "must be an image reference such as registry.example/trainer:1.2.0 (no spaces)",
    QUANTITY_PATTERN: "must be a quantity such as 500m, 2, 4Gi or 1.5",
}


# ---------------------------------------------------------------- status
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A condition shaped like metav1.Condition."""

    type: Annotated[str, Field(max_length=316)]
    """Kind of condition, in CamelCase (Ready, Succeeded, Drifting, ...)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[str, Field(max_length=1024)] = ""
    """Why the condition has this status, in CamelCase (MetricBelowMin, Cooldown, ...)."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """What happened, for a human."""
    last_transition_time: datetime | None = None
    """When status last changed."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""
