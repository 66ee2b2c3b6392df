"""promtool, the Prometheus tool the monitoring tests run (from Debian's prometheus package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from localcluster import build


def promtool() -> Path:
    """The cached promtool; fetched (``apt-get download prometheus``, seconds) if this machine lacks it.

    ``make test`` builds it with the full profile; a bare ``make test-unit`` may not have.
    """
    path = build.binary_paths()["promtool"]
    if not path.exists():
        build.cache_root().mkdir(parents=True, exist_ok=True)
        build._install_prometheus()  # the same step as `make cluster-build`, without the control plane
    return path


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )
