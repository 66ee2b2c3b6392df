"""The chart renders offline, and carries the CRDs so that ``helm upgrade`` upgrades them.

GitOps pipelines render charts in CI with plain ``helm template``: no cluster, no
``--kube-version``. Helm then assumes an old Kubernetes (v1.20 in the build the tests use),
so the chart has no ``kubeVersion`` constraint; it refuses a cluster older than 1.30 only
where Helm knows the cluster (its capabilities list kinds, as discovery does).

The CRDs are templates generated from ``crds/`` (the single source, itself generated from
the pydantic models): Helm never upgrades a chart's ``crds/`` directory, but it does
upgrade templates. ``crds.install`` turns them off, ``crds.keep`` (on by default) keeps
them, and every object of their kinds, through ``helm uninstall``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import delivery
from tests.support.cluster import ClusterInfo

pytestmark = pytest.mark.timeout(120)

CRD = "CustomResourceDefinition"
KEEP = {"helm.sh/resource-policy": "keep"}
OLD_CLUSTER = "Perennial needs Kubernetes 1.30 or later"


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def plain_helm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The cached helm binary as a CI job runs it: no kubeconfig, no cluster in reach."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["KUBECONFIG"] = str(cwd / "no-such-kubeconfig")
    return subprocess.run(
        [str(delivery.helm_path()), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def repository_crds() -> dict[str, dict[str, Any]]:
    """crds/ by CRD name."""
    crds = [yaml.safe_load(path.read_text()) for path in sorted(delivery.CRDS_DIR.glob("*.yaml"))]
    return {crd["metadata"]["name"]: crd for crd in crds}


def with_annotations(crd: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    metadata = {**crd["metadata"], "annotations": {**crd["metadata"].get("annotations", {}), **extra}}
    return {**crd, "metadata": metadata}


# ---------------------------------------------------------------- offline rendering
def test_plain_helm_template_renders_without_a_cluster_or_flags(cluster: ClusterInfo, tmp_path: Path) -> None:
    result = plain_helm("template", str(delivery.CHART_DIR), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in documents(result.stdout)]
    assert kinds.count(CRD) == 3
    assert "Deployment" in kinds
    assert "ValidatingAdmissionPolicy" in kinds
    # And the release name and values a pipeline gives, still without --kube-version.
    named = plain_helm("template", "perennial", str(delivery.CHART_DIR), "-n", "ml-platform", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    linted = plain_helm("lint", "--strict", str(delivery.CHART_DIR), cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_chart_declares_no_kube_version_and_ships_no_crds_directory() -> None:
    chart = yaml.safe_load((delivery.CHART_DIR / "Chart.yaml").read_text())
    assert "kubeVersion" not in chart, "Helm checks it offline too, against a v1.20 default"
    # Helm installs a chart's crds/ once and never upgrades them; they would also clash
    # with the CRD templates on install.
    assert not (delivery.CHART_DIR / "crds").exists()


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        pytest.param(["--kube-version", "1.29.4", "--api-versions", "v1/Namespace"], True, id="cluster-1.29"),
        pytest.param(["--kube-version", "1.30.0", "--api-versions", "v1/Namespace"], False, id="cluster-1.30"),
        # A version alone is not a cluster: Helm's offline default, or a pipeline's guess.
        pytest.param(["--kube-version", "1.29.4"], False, id="offline-1.29"),
    ],
)
def test_a_cluster_older_than_1_30_is_refused_where_helm_knows_the_cluster(
    cluster: ClusterInfo, tmp_path: Path, flags: list[str], refused: bool
) -> None:
    """``--api-versions v1/Namespace`` stands for a cluster's discovery (helm install/upgrade
    and ``--validate`` list every kind the cluster serves)."""
    result = plain_helm("template", "perennial", str(delivery.CHART_DIR), *flags, cwd=tmp_path)

    if refused:
        assert result.returncode != 0
        assert f"{OLD_CLUSTER} (ValidatingAdmissionPolicy v1" in result.stderr, result.stderr
        assert "this cluster runs v1.29.4" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the CRDs as templates
def test_the_chart_renders_the_crds_of_crds_dir_kept_by_default(cluster: ClusterInfo) -> None:
    source = repository_crds()
    assert set(source) == {
        "trainingjobs.perennial.dev",
        "modeldeployments.perennial.dev",
        "driftpolicies.perennial.dev",
    }

    rendered = {doc["metadata"]["name"]: doc for doc in documents(delivery.render()) if doc["kind"] == CRD}
    assert rendered == {name: with_annotations(crd, KEEP) for name, crd in source.items()}

    unkept = {d["metadata"]["name"]: d for d in documents(delivery.render(set_values=["crds.keep=false"]))}
    assert {name: unkept[name] for name in source} == source, "crds.keep=false: exactly crds/"

    without = documents(delivery.render(set_values=["crds.install=false"]))
    assert not [d for d in without if d["kind"] == CRD]
    assert [d for d in without if d["kind"] == "Deployment"], "only the CRDs are left out"


def test_manifests_install_the_same_crds_for_kubectl_apply_k() -> None:
    kustomization = yaml.safe_load((delivery.MANIFESTS_DIR / "kustomization.yaml").read_text())
    listed = [resource for resource in kustomization["resources"] if resource.startswith("crds/")]
    assert sorted(listed) == sorted(f"crds/{path.name}" for path in delivery.CRDS_DIR.glob("*.yaml"))
    for resource in listed:
        (crd,) = documents((delivery.MANIFESTS_DIR / resource).read_text())
        # As crds/ has them: kubectl knows no resource policy (`kubectl delete -k` deletes them).
        assert crd == repository_crds()[crd["metadata"]["name"]]


def test_crd_templates_print_template_delimiters_in_descriptions_literally(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    """A description with ``{{`` (say, a placeholder in a field's docs) renders as written."""
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("crds: {install: true, keep: true}\n")
    crd = tmp_path / "perennial.dev_probes.yaml"
    text = (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: probes.perennial.dev\n"
        "spec:\n  group: perennial.dev\n  names: {kind: Probe, plural: probes}\n  scope: Namespaced\n"
        "  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n"
        "        type: object\n        description: 'Go templates: {{ .Values.x }} and }} alone'\n"
    )
    crd.write_text(text)
    (chart / "templates" / crd.name).write_text(delivery.crd_template(crd))

    result = plain_helm("template", str(chart), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    (rendered,) = documents(result.stdout)
    assert rendered == with_annotations(yaml.safe_load(text), KEEP)
