"""The local cluster as tests see it: started once per test session, shared by all tests."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localcluster.cluster import LocalCluster

from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClusterInfo:
    kubeconfig: Path
    kubectl: Path
    profile: str
    prometheus_url: str = ""
    targets_file: Path | None = None
    promtool: Path | None = None

    @classmethod
    def from_env_file(cls, path: Path) -> ClusterInfo:
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = shlex.split(value)[0] if value else ""
        return cls(
            kubeconfig=Path(values["KUBECONFIG"]),
            kubectl=Path(values["KUBECTL"]),
            profile=values["PERENNIAL_CLUSTER_PROFILE"],
            prometheus_url=values.get("PROMETHEUS_URL", ""),
            targets_file=Path(values["PROMETHEUS_TARGETS_FILE"]) if "PROMETHEUS_TARGETS_FILE" in values else None,
            promtool=Path(values["PROMTOOL"]) if "PROMTOOL" in values else None,
        )

    def kubectl_run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin, exactly as a user would."""
        result = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result


def cluster_is_up() -> bool:
    return bool(LocalCluster().running())


def bring_up(profile: str) -> ClusterInfo:
    """`python -m localcluster up` in a subprocess, so the cluster outlives no test process by accident
    and its processes are not children of pytest."""
    result = subprocess.run(
        [sys.executable, "-m", "localcluster", "up", "--profile", profile],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"local cluster ({profile}) failed to start:\n{result.stderr}")
    env_file = Path(result.stdout.strip().splitlines()[-1])
    return ClusterInfo.from_env_file(env_file)


def bring_down() -> None:
    subprocess.run([sys.executable, "-m", "localcluster", "down"], cwd=REPO_ROOT, check=True)


class ScrapeTargets:
    """Adds exporters to the local Prometheus through its file_sd targets file.

    Test workers run in parallel processes: every read-modify-write holds a file lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.path.parent / "targets.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, job: str, address: str) -> None:
        with self._locked():
            groups = json.loads(self.path.read_text() or "[]")
            groups.append({"targets": [address], "labels": {"job": job}})
            self._write(groups)

    def remove(self, job: str) -> None:
        with self._locked():
            groups = [g for g in json.loads(self.path.read_text() or "[]") if g["labels"].get("job") != job]
            self._write(groups)

    def _write(self, groups: list[dict[str, object]]) -> None:
        # Prometheus watches the file; replace it atomically so it never reads half of it.
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(groups, indent=2))
        os.replace(tmp, self.path)


CRDS_DIR = REPO_ROOT / "crds"
_crds_installed: set[Path] = set()


def install_crds(cluster: ClusterInfo) -> None:
    """Apply crds/ (server-side, idempotent) once per cluster per session; wait until Established."""
    if cluster.kubeconfig in _crds_installed:
        return
    cluster.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
    names = [
        f"crd/{path.name.removeprefix('perennial.dev_').removesuffix('.yaml')}.perennial.dev"
        for path in sorted(CRDS_DIR.glob("*.yaml"))
    ]
    # Every test cluster is a LocalCluster (the session's, or a test's private one), its
    # admin kubeconfig in its state directory: its wait copes with a CRD whose conditions
    # are still null, which `kubectl wait` does not.
    LocalCluster(cluster.kubeconfig.parent).wait_established(*names)
    # Established is not served: for a moment after a CRD is created or changed, its storage
    # answers 429 "storage is (re)initializing", which an operator started now logs as errors.
    resources = [name.removeprefix("crd/") for name in names]

    def served(resource: str) -> bool:
        listed = cluster.kubectl_run("get", resource, "-A", "-o", "name", "--request-timeout=5s", check=False)
        return listed.returncode == 0

    wait_until(lambda: all(served(r) for r in resources), timeout=60, what=f"{', '.join(resources)} served")
    _crds_installed.add(cluster.kubeconfig)
