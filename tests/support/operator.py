"""Running the operator under test: in-process (kopf's KopfRunner) or as a subprocess.

Both run exactly what ``perennial run`` runs (the handlers registered by
``perennial.main``); the subprocess also goes through the console script, as a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kopf.testing import KopfRunner

from tests.support.waiting import StopWaitingError, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningOperator:
    metrics_url: str
    healthz_url: str
    log_path: Path | None = None
    pid: int | None = None
    """The operator's process id when it runs as a subprocess (a test may SIGKILL it)."""

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def operator_environment(
    kubeconfig: Path, namespaces: list[str], port: int, prometheus_url: str = ""
) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "PERENNIAL_NAMESPACES": ",".join(namespaces),
        "PERENNIAL_METRICS_ADDRESS": "127.0.0.1",
        "PERENNIAL_METRICS_PORT": str(port),
        "PERENNIAL_LOG_LEVEL": "DEBUG",
        "PERENNIAL_PROMETHEUS_URL": prometheus_url,
    }


@contextmanager
def in_process(kubeconfig: Path, namespaces: list[str], prometheus_url: str = "") -> Iterator[RunningOperator]:
    port = free_port()
    env = operator_environment(kubeconfig, namespaces, port, prometheus_url)
    args = ["run", "--standalone", "-m", "perennial.main"]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    running = RunningOperator(f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port}/healthz")
    with KopfRunner(args, env=env) as runner:
        wait_until(lambda: _healthy(running.healthz_url), timeout=60, what="in-process operator /healthz")
        yield running
    # KopfRunner re-raises the operator's own exception; also fail on a non-zero exit.
    assert runner.exit_code == 0, runner.output


@contextmanager
def subprocess_operator(
    kubeconfig: Path, namespaces: list[str], log_path: Path, prometheus_url: str = ""
) -> Iterator[RunningOperator]:
    port = free_port()
    env = {**os.environ, **operator_environment(kubeconfig, namespaces, port, prometheus_url)}
    console_script = Path(sys.executable).parent / "perennial"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(console_script), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = RunningOperator(
        f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port}/healthz", log_path, pid=process.pid
    )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise StopWaitingError(f"operator exited with {process.returncode}:\n{log_path.read_text()}")
            return _healthy(running.healthz_url)

        wait_until(ready, timeout=60, what="operator subprocess /healthz")
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
