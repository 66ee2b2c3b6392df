"""The Argo CD health checks and actions, run as Argo CD runs them, and the argocd-cm snippet applied as documented.

``go test`` in argocd/harness loads each health.lua into gopher-lua (Lua 5.1, Argo CD's
interpreter) and compares every case of health_test.yaml exactly: once with open
libraries (Argo CD's own test of built-in checks) and once with the scripts from
argocd-cm.yaml and the libraries Argo CD gives such scripts. It runs every case of the
actions' action_test.yaml the same way (discovery, and each action's output against the
expected object and the merge patch Argo CD would send). On a cold module cache the test
downloads the harness's modules (gopher-lua, gopher-json, sigs.k8s.io/yaml).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kubernetes import client

from tests.support.argocd_harness import ARGOCD_DIR, run_harness
from tests.support.cluster import ClusterInfo


def test_health_checks_pass_argo_cds_own_test_in_gopher_lua() -> None:
    result = run_harness()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every case ran in both library settings: a harness that found nothing would pass too.
    cases = sum(
        len(yaml.safe_load(path.read_text())["tests"])
        for path in ARGOCD_DIR.glob("resource_customizations/perennial.dev/*/health_test.yaml")
    )
    assert cases >= 20
    for test in ("TestLuaHealthScript", "TestArgoCDConfigMapScripts"):
        passed = re.findall(rf"--- PASS: {test}/\S+", output)
        assert len(passed) == cases, f"{test}: {len(passed)} of {cases} cases passed\n{output}"


def test_actions_pass_argo_cds_own_test_in_gopher_lua() -> None:
    result = run_harness()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    suites = [
        yaml.safe_load(path.read_text())
        for path in ARGOCD_DIR.glob("resource_customizations/perennial.dev/*/actions/action_test.yaml")
    ]
    discovery = sum(len(suite["discoveryTests"]) for suite in suites)
    actions = sum(len(suite["actionTests"]) for suite in suites)
    assert {test["action"] for suite in suites for test in suite["actionTests"]} >= {"retrain", "pause", "resume"}
    for test in ("TestLuaResourceActionsScript", "TestArgoCDConfigMapActions"):
        for what, cases in (("discovery", discovery), ("actions", actions)):
            passed = re.findall(rf"--- PASS: {test}/\w+/{what}/\S+", output)
            assert len(passed) == cases, f"{test} {what}: {len(passed)} of {cases} cases passed\n{output}"
    patches = re.findall(r"--- PASS: TestActionPatches/\S+", output)
    assert len(patches) == actions, output


def test_the_snippet_merges_into_an_existing_argocd_cm(
    cluster: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    """The README's `kubectl patch --type merge --patch-file argocd/argocd-cm.yaml` keeps what was there."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="argocd-cm"), data={"url": "https://argocd.example"}),
    )
    snippet = yaml.safe_load((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    snippet["metadata"]["namespace"] = namespace  # the file names `argocd`, Argo CD's usual namespace
    patch_file = tmp_path / "argocd-cm.yaml"
    patch_file.write_text(yaml.safe_dump(snippet))
    cluster.kubectl_run(
        "-n", namespace, "patch", "configmap", "argocd-cm", "--type", "merge", "--patch-file", str(patch_file)
    )
    data = core.read_namespaced_config_map("argocd-cm", namespace).data
    assert data["url"] == "https://argocd.example"
    for kind in ("TrainingJob", "ModelDeployment", "DriftPolicy"):
        lua = ARGOCD_DIR / "resource_customizations" / "perennial.dev" / kind / "health.lua"
        assert data[f"resource.customizations.health.perennial.dev_{kind}"] == lua.read_text()
    actions = yaml.safe_load(data["resource.customizations.actions.perennial.dev_ModelDeployment"])
    assert [d["name"] for d in actions["definitions"]] == ["pause", "resume", "retrain"]
