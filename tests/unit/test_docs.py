"""The docs stay true against the code: the settings and alerts tables, links, the README's examples.

The metrics table has its own test (test_metrics_documented.py), docs/api.md its own
(test_api_docs.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial import settings
from perennial.api.base import ApiModel
from perennial.api.driftpolicy import DriftPolicySpec
from perennial.api.modeldeployment import ModelDeploymentSpec, Rollout
from perennial.api.trainingjob import TrainingJobSpec
from tests.support.docs import DOCS, OPERATIONS, README, REPO, anchors, first_cells, links, section

ALERTS = REPO / "monitoring" / "alerts.yaml"
# Read by the Kubernetes client's config loader, not by perennial.settings.
NOT_SETTINGS = {"KUBECONFIG"}


# ---------------------------------------------------------------- settings


class _Recording(Mapping[str, str]):
    """An environment that remembers every variable the settings asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values, self.asked = values, set[str]()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _settings_rows() -> list[tuple[list[str], str]]:
    rows = []
    for cells in first_cells(section(OPERATIONS, "Settings")):
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert names, f"a settings row without a variable: {cells}"
        rows.append((names, cells[1]))
    return rows


def test_the_settings_table_lists_exactly_the_variables_the_operator_reads() -> None:
    environment = _Recording({})
    settings.from_environment(environment)
    documented = {name for names, _ in _settings_rows() for name in names}
    assert sorted(environment.asked - documented) == [], "read but not in docs/operations.md, ## Settings"
    assert sorted(documented - NOT_SETTINGS - environment.asked) == [], "documented but never read"


@pytest.mark.parametrize(("names", "default"), _settings_rows(), ids=[",".join(n) for n, _ in _settings_rows()])
def test_each_documented_default_is_the_default(names: list[str], default: str) -> None:
    """Setting a variable to its documented default changes nothing (an *(empty...)* default: to "")."""
    if set(names) <= NOT_SETTINGS:
        return
    literal = re.fullmatch(r"`([^`]*)`", default)
    assert literal or default.startswith("*("), f"{names}: a default is `value` or *(empty ...)*, not {default!r}"
    value = literal.group(1) if literal else ""
    unset = settings.from_environment({})
    for name in names:
        assert settings.from_environment({name: value}) == unset, f"{name}={value!r} is not its default"


# ---------------------------------------------------------------- alerts


def test_the_alerts_table_lists_exactly_the_alerts_with_their_severity() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    defined = {rule["alert"]: rule["labels"]["severity"] for rule in rules if "alert" in rule}
    documented = {}
    for cells in first_cells(section(OPERATIONS, "Alerts")):
        name = re.fullmatch(r"`(Perennial[A-Za-z]+)`", cells[0])
        if name:
            documented[name.group(1)] = cells[1]
    assert sorted(defined.keys() - documented.keys()) == [], "alerts not in docs/operations.md, ## Alerts"
    assert sorted(documented.keys() - defined.keys()) == [], "documented alerts monitoring/alerts.yaml lacks"
    assert documented == defined, "a documented severity differs from monitoring/alerts.yaml"


# ---------------------------------------------------------------- links


def _documents() -> list[Path]:
    return [README, REPO / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]


def test_the_documents_exist() -> None:
    names = {path.relative_to(REPO).as_posix() for path in _documents()}
    expected = {"api.md", "concepts.md", "operations.md", "reliability.md", "benchmarks.md"}
    assert {"README.md", "CONTRIBUTING.md"} | {f"docs/{name}" for name in expected} <= names


@pytest.mark.parametrize("document", _documents(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_points_to_a_file_and_heading_that_exist(document: Path) -> None:
    broken = []
    for target in links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor in {path.relative_to(REPO)}")
        elif not path.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
    assert broken == []


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_make_demo_and_make_test_are_the_readmes_first_two_commands() -> None:
    first_block = re.search(r"```console\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


# ---------------------------------------------------------------- the README's examples

SPEC_MODELS: dict[str, type[ApiModel]] = {
    "TrainingJob": TrainingJobSpec,
    "ModelDeployment": ModelDeploymentSpec,
    "DriftPolicy": DriftPolicySpec,
}


def _readme_objects() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc and "kind" in doc]


def _missing(given: Any, parsed: Any, path: str = "spec") -> list[str]:
    """Paths of ``given`` that ``parsed`` lacks or holds differently (an unknown or misspelt field)."""
    if isinstance(given, dict):
        if not isinstance(parsed, dict):
            return [path]
        return [miss for key, value in given.items() for miss in _missing(value, parsed.get(key), f"{path}.{key}")]
    if isinstance(given, list):
        if not isinstance(parsed, list) or len(parsed) != len(given):
            return [path]
        return [
            miss for i, (a, b) in enumerate(zip(given, parsed, strict=True)) for miss in _missing(a, b, f"{path}[{i}]")
        ]
    return [] if given == parsed else [path]


def test_the_readme_shows_each_kind_once_and_each_is_valid() -> None:
    objects = _readme_objects()
    assert sorted(obj["kind"] for obj in objects) == sorted(SPEC_MODELS)
    for obj in objects:
        assert obj["apiVersion"] == "perennial.dev/v1alpha1"
        spec = SPEC_MODELS[obj["kind"]].model_validate(obj["spec"])
        assert _missing(obj["spec"], spec.to_api()) == [], f"{obj['kind']}: fields the model does not know"


def test_the_readmes_canary_snippet_is_a_valid_rollout() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    snippets = [yaml.safe_load(block) for block in blocks if block.startswith("  rollout:")]
    assert len(snippets) == 1, "the canary snippet added to the ModelDeployment example"
    given = snippets[0]["rollout"]
    rollout = Rollout.model_validate(given)
    assert rollout.strategy == "Canary"
    assert _missing(given, rollout.to_api(), "spec.rollout") == []
