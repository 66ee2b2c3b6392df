"""Running the Argo CD harness (argocd/harness, a Go module) from pytest.

The harness runs each health.lua and each action with gopher-lua exactly as Argo CD does;
``go test`` downloads its few modules from the module proxy on a cold cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def _captured_testdata(directory: str, names: list[str]) -> set[str]:
    """The health checks' testdata folders (captured live); the actions' own (written by hand) stay."""
    return {
        name for name in names if name.startswith(".") or (name == "testdata" and Path(directory).name != "actions")
    }


def copy_for_testing(destination: Path) -> Path:
    """argocd/ without the health checks' captured testdata: the scripts, their expectations,
    the actions' testdata and argocd-cm.yaml."""
    shutil.copytree(
        ARGOCD_DIR / "resource_customizations",
        destination / "resource_customizations",
        ignore=_captured_testdata,
    )
    shutil.copy2(ARGOCD_DIR / "argocd-cm.yaml", destination / "argocd-cm.yaml")
    return destination


def run_lua(obj: dict[str, Any], *command: str, timeout: float = 300) -> Any:
    """argocd/argocd-cm.yaml's scripts on ``obj``, as Argo CD runs them (cmd/argocd-lua):
    ``health``, ``discovery`` or ``action NAME`` (the JSON merge patch Argo CD would send)."""
    go = shutil.which("go")
    if go is None:
        raise AssertionError("the Argo CD scripts are run with Go: install it (see README, Quick start)")
    result = subprocess.run(
        [go, "run", "./cmd/argocd-lua", "-cm", str(ARGOCD_DIR / "argocd-cm.yaml"), *command],
        cwd=HARNESS_DIR,
        env=go_env(),
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
