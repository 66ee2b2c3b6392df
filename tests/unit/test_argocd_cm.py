"""argocd/argocd-cm.yaml is generated from the health checks and actions and must match them byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.argocd_harness import ARGOCD_DIR

CUSTOMIZATIONS = ARGOCD_DIR / "resource_customizations"
KINDS = ("TrainingJob", "ModelDeployment", "DriftPolicy")


def test_every_kind_has_a_health_check_in_argo_cds_layout() -> None:
    for kind in KINDS:
        directory = CUSTOMIZATIONS / "perennial.dev" / kind
        assert (directory / "health.lua").is_file(), kind
        assert (directory / "health_test.yaml").is_file(), kind
        assert sorted((directory / "testdata").glob("*.yaml")), kind


def test_argocd_cm_carries_each_health_lua_verbatim() -> None:
    configmap = yaml.safe_load((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    identity = (configmap["apiVersion"], configmap["kind"], configmap["metadata"]["name"])
    assert identity == ("v1", "ConfigMap", "argocd-cm")
    expected = {
        f"resource.customizations.health.perennial.dev_{path.parent.name}": path.read_text()
        for path in sorted(CUSTOMIZATIONS.glob("perennial.dev/*/health.lua"))
    }
    assert set(expected) == {f"resource.customizations.health.perennial.dev_{kind}" for kind in KINDS}
    health = {key: value for key, value in configmap["data"].items() if ".health." in key}
    assert health == expected, "argocd/argocd-cm.yaml is stale: run `make argocd-cm`"


def test_argocd_cm_carries_the_modeldeployment_actions_as_argo_cd_reads_them() -> None:
    """``resource.customizations.actions.<group>_<Kind>``: a YAML document with discovery.lua and definitions."""
    configmap = yaml.safe_load((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    actions_keys = sorted(key for key in configmap["data"] if ".actions." in key)
    assert actions_keys == ["resource.customizations.actions.perennial.dev_ModelDeployment"]
    assert set(configmap["data"]) == set(actions_keys) | {
        f"resource.customizations.health.perennial.dev_{kind}" for kind in KINDS
    }
    document = yaml.safe_load(configmap["data"][actions_keys[0]])
    folder = CUSTOMIZATIONS / "perennial.dev" / "ModelDeployment" / "actions"
    assert document == {
        "discovery.lua": (folder / "discovery.lua").read_text(),
        "definitions": [
            {"name": name, "action.lua": (folder / name / "action.lua").read_text()}
            for name in ("pause", "resume", "retrain")
        ],
    }, "argocd/argocd-cm.yaml is stale: run `make argocd-cm`"
    # Argo CD's layout: every action has its folder, tests and testdata.
    assert (folder / "action_test.yaml").is_file()
    assert sorted((folder / "testdata").glob("*.yaml"))


def test_the_generator_agrees_that_it_is_in_sync() -> None:
    result = subprocess.run(
        [sys.executable, str(ARGOCD_DIR / "generate_cm.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_generator_notices_a_stale_configmap(tmp_path: Path) -> None:
    """--check fails when a script changed and argocd-cm.yaml did not."""
    copy = tmp_path / "argocd"
    copy.mkdir()
    (copy / "generate_cm.py").write_text((ARGOCD_DIR / "generate_cm.py").read_text())
    (copy / "argocd-cm.yaml").write_text((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    for path in CUSTOMIZATIONS.glob("perennial.dev/**/*.lua"):
        target = copy / "resource_customizations" / path.relative_to(CUSTOMIZATIONS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    script = copy / "generate_cm.py"
    assert subprocess.run([sys.executable, str(script), "--check"], capture_output=True).returncode == 0
    lua = copy / "resource_customizations" / "perennial.dev" / "DriftPolicy" / "health.lua"
    lua.write_text(lua.read_text().replace("Waiting for the first evaluation", "Waiting for an evaluation"))
    stale = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
    assert subprocess.run([sys.executable, str(script), "--check"], capture_output=True).returncode == 0
    # An action's script counts as much as a health check.
    action = copy / "resource_customizations" / "perennial.dev" / "ModelDeployment" / "actions" / "pause" / "action.lua"
    action.write_text(action.read_text().replace("-- Pause automatic retrains", "-- Pause the automatic retrains"))
    stale = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
