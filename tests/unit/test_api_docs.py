"""docs/api.md, the reference of every field, is generated from the models and never stale."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from perennial.api import crdgen, docgen
from tests.support.docs import DOCS, anchors

API_DOCS = DOCS / "api.md"


def test_the_api_reference_is_regenerated_from_the_models() -> None:
    assert API_DOCS.read_text() == docgen.render(), "docs/api.md is stale: run `make crds`"


def test_the_generator_notices_a_stale_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "api.md"
    assert docgen.main([str(path), "--check"]) == 1
    assert docgen.main([str(path)]) == 0
    assert docgen.main([str(path), "--check"]) == 0
    path.write_text(path.read_text().replace("| `replicas` |", "| `replica` |"))
    assert docgen.main([str(path), "--check"]) == 1
    assert "make crds" in capsys.readouterr().err


def _fields(node: dict[str, Any], path: str) -> list[tuple[str, str, str]]:
    """(path, field name, description) of every property below a structural schema node."""
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append((f"{path}.{name}", name, " ".join(sub["description"].split())))
        found += _fields(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _fields(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_field_of_the_crd_has_a_row_with_its_description(kind: crdgen.Kind) -> None:
    """What `kubectl explain` shows for each field is on that field's row of docs/api.md."""
    rows = [line for line in API_DOCS.read_text().splitlines() if line.startswith("| `")]
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path, name, description in _fields(schema["properties"][part], part):
            start = description.split("`")[0][:30].replace("|", "\\|").replace("<", "&lt;")
            assert any(row.startswith(f"| `{name}` |") and start in row for row in rows), f"{kind.kind} {path}"


def test_every_type_link_in_the_reference_has_its_table() -> None:
    targets = set(re.findall(r"\]\(#([^)]+)\)", API_DOCS.read_text()))
    assert targets, "no links between the types"
    assert sorted(targets - anchors(API_DOCS)) == []
