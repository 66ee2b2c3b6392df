"""Labels every child of a Perennial object carries (api.md, "Common rules").

Children never copy a GitOps tool's tracking label or annotations from their parent:
the ownerReference is how Argo CD shows them under the parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from perennial.api.base import API_VERSION

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


@dataclass(frozen=True)
class OwnerRef:
    """Identity of a Perennial object: what its children need to point back at it."""

    name: str
    namespace: str
    uid: str
    generation: int | None = None
    kind: ClassVar[str] = ""

    def owner_reference(self) -> dict[str, Any]:
        # controller + blockOwnerDeletion: garbage collection removes the children with
        # the parent, and Argo CD shows them under it.
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
