"""Running the Argo CD health-check harness (argocd/harness, a Go module) from pytest.

The harness runs each health.lua with gopher-lua exactly as Argo CD does; ``go test``
downloads its few modules from the module proxy on a cold cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.cluster import REPO_ROOT

ARGOCD_DIR = REPO_ROOT / "argocd"
HARNESS_DIR = ARGOCD_DIR / "harness"


def go_env(argocd_dir: Path | None = None) -> dict[str, str]:
    """The environment localcluster's builds use for Go (no cgo, no VCS stamping), plus the harness's input."""
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    if argocd_dir is not None:
        env["PERENNIAL_ARGOCD_DIR"] = str(argocd_dir)
    else:
        env.pop("PERENNIAL_ARGOCD_DIR", None)
    return env


def run_harness(argocd_dir: Path | None = None, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``go test -count=1 -v ./...`` in argocd/harness (never a cached result: the inputs are files)."""
    go = shutil.which("go")
    if go is None:
        raise AssertionError("the Argo CD health checks are tested with Go: install it (see README, Quick start)")
    return subprocess.run(
        [go, "test", "-count=1", "-v", "./..."],
        cwd=HARNESS_DIR,
        env=go_env(argocd_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_for_testing(destination: Path) -> Path:
    """argocd/ without its testdata: the health checks, their expectations and argocd-cm.yaml."""
    shutil.copytree(
        ARGOCD_DIR / "resource_customizations",
        destination / "resource_customizations",
        ignore=shutil.ignore_patterns("testdata", ".*"),
    )
    shutil.copy2(ARGOCD_DIR / "argocd-cm.yaml", destination / "argocd-cm.yaml")
    return destination
