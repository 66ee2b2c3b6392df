"""argocd/argocd-cm.yaml is generated from the health checks and must match them byte for byte."""

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
    assert configmap["data"] == expected, "argocd/argocd-cm.yaml is stale: run `make argocd-cm`"


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
    for path in CUSTOMIZATIONS.glob("perennial.dev/*/health.lua"):
        target = copy / "resource_customizations" / path.relative_to(CUSTOMIZATIONS)
        target.parent.mkdir(parents=True)
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
