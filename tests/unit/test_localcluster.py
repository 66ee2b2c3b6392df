"""Pure parts of the local-cluster tooling."""

from pathlib import Path

import pytest
import yaml
from localcluster import build, versions

STAGES = Path(__file__).resolve().parents[2] / "localcluster" / "stages" / "pods.yaml"

GO_MOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.9.1
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
\tk8s.io/klog/v2 v2.130.1
)

require k8s.io/kubectl v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
)
"""


def test_staging_modules_are_the_k8s_modules_at_the_fake_version() -> None:
    assert build.staging_modules_from_go_mod(GO_MOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl"]


def test_binaries_are_cached_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERENNIAL_CACHE", str(tmp_path))
    paths = build.binary_paths()
    assert paths["kube-apiserver"] == tmp_path / "bin" / f"kubernetes-{versions.KUBERNETES}" / "kube-apiserver"
    assert paths["etcd"] == tmp_path / "bin" / f"etcd-{versions.ETCD}" / "etcd"
    assert set(build.PROFILE_BINARIES["api"]) < set(build.PROFILE_BINARIES["full"])


def test_version_stamp_sets_what_version_endpoints_report() -> None:
    flags = build._version_ldflags("v1.36.3")
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.3" in flags
    assert "-X k8s.io/component-base/version.gitMinor=36" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMajor=1" in flags


def test_pod_stages_cover_the_simulation_contract() -> None:
    stages = [doc for doc in yaml.safe_load_all(STAGES.read_text()) if doc]
    names = [stage["metadata"]["name"] for stage in stages]
    assert len(names) == len(set(names))
    keys = " ".join(
        expression["key"] for stage in stages for expression in stage["spec"]["selector"]["matchExpressions"]
    )
    for annotation in ("sim.perennial.dev/ready", "sim.perennial.dev/exit-code"):
        assert annotation in keys
    templates = " ".join(stage["spec"]["next"].get("statusTemplate", "") for stage in stages)
    assert "sim.perennial.dev/result" in templates
    delays = [stage["spec"].get("delay", {}).get("durationFrom", {}).get("expressionFrom", "") for stage in stages]
    assert sum("sim.perennial.dev/duration" in delay for delay in delays) == 2
