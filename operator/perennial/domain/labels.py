"""Labels every child of a Perennial object carries (api.md, "Common rules").

Children never copy a GitOps tool's tracking label or annotations from their parent:
the ownerReference is how Argo CD shows them under the parent.
"""

from __future__ import annotations

MANAGED_BY = "perennial"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_LABEL = "perennial.dev/model"
VERSION_LABEL = "perennial.dev/version"


def managed_labels(*, model: str | None, version: str | None) -> dict[str, str]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if model:
        labels[MODEL_LABEL] = model
    if version:
        labels[VERSION_LABEL] = version
    return labels
