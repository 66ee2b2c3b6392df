"""Running the operator under test: in-process (kopf's KopfRunner) or as a subprocess.

Both run exactly what ``perennial run`` runs (the handlers registered by
``perennial.main``); the subprocess also goes through the console script, as a user would.

Both run with the permissions users give the operator: a kubeconfig that holds only a
token of the ServiceAccount ``perennial-system/perennial``, bound by the RBAC in
``manifests/`` (installed once per cluster). A 403 anywhere, in the operator's own
requests or in kopf's watches, fails the test when the operator stops.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kopf.testing import KopfRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.waiting import StopWaitingError, wait_until

OPERATOR_USER = f"system:serviceaccount:{delivery.NAMESPACE}:{delivery.SERVICE_ACCOUNT}"


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

    def leading(self) -> bool:
        """Whether this operator holds its leader election Lease (its ``perennial_leader`` gauge)."""
        return leader_gauge(self.metrics_text()) == 1

    def forbidden_requests(self) -> float:
        """How many of the operator's own API requests got a 403 so far."""
        return sum(n for (_, code), n in api_requests(self.metrics_text()).items() if code == "403")


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


# ---------------------------------------------------------------- the operator's credentials
_kubeconfigs: dict[Path, Path] = {}


def admin_cluster_entry(cluster: ClusterInfo) -> dict[str, Any]:
    """The admin kubeconfig's cluster entry: the API server's URL and its CA."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    (entry,) = admin["clusters"]
    return dict(entry["cluster"])


def kubeconfig_with_user(cluster: ClusterInfo, user: dict[str, Any], path: Path) -> Path:
    """A kubeconfig with the admin's server and CA, and ``user`` (no admin certificate)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin_cluster_entry(cluster)}],
        "users": [{"name": "perennial", "user": user}],
        "contexts": [{"name": "perennial", "context": {"cluster": "local", "user": "perennial"}}],
        "current-context": "perennial",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def service_account_kubeconfig(cluster: ClusterInfo, path: Path, duration: str = "6h") -> Path:
    """A kubeconfig with the admin's server and CA, and only the ServiceAccount's token."""
    token = cluster.kubectl_run(
        "create", "token", delivery.SERVICE_ACCOUNT, "-n", delivery.NAMESPACE, f"--duration={duration}"
    ).stdout.strip()
    return kubeconfig_with_user(cluster, {"token": token}, path)


def whoami(cluster: ClusterInfo, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl auth whoami`` with ``kubeconfig``'s credentials."""
    return subprocess.run(
        [
            str(cluster.kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _who(cluster: ClusterInfo, kubeconfig: Path) -> str:
    result = whoami(cluster, kubeconfig)
    return result.stdout.strip() if result.returncode == 0 else ""


def operator_kubeconfig(cluster: ClusterInfo) -> Path:
    """The operator's own credentials on this cluster: RBAC from manifests/ and a token.

    pytest-xdist workers share the token's file, under a lock; each process checks it
    once: a cluster started afresh has new keys, so a token for the previous one is replaced.
    """
    if cluster.kubeconfig in _kubeconfigs:
        return _kubeconfigs[cluster.kubeconfig]
    path = cluster.kubeconfig.parent / "operator-serviceaccount.kubeconfig"
    with (cluster.kubeconfig.parent / "operator-serviceaccount.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The RBAC is applied once per test process, so a cluster kept up between runs
        # always has the RBAC of the work tree under test.
        delivery.install_manifests(cluster)
        if not path.exists() or _who(cluster, path) != OPERATOR_USER:
            service_account_kubeconfig(cluster, path)
            assert _who(cluster, path) == OPERATOR_USER
    _kubeconfigs[cluster.kubeconfig] = path
    return path


# ---------------------------------------------------------------- 403s
def forbidden_lines(text: str) -> list[str]:
    """Log lines about a 403: the status reason "Forbidden", kopf's APIForbiddenError or its
    fallback when it may not list or watch, or 403 as a number of its own (not in a
    timestamp such as 12:00:01,403 nor in a uid). Not the word "forbidden" in any message:
    the API server says "is forbidden" in a 422 from an admission policy too."""
    return [
        line
        for line in text.splitlines()
        if re.search(r"\bForbidden\b|APIForbiddenError|not enough permissions", line)
        or re.search(r"(?<![\w.,:-])403(?![\w-])", line)
    ]


def api_requests(metrics_text: str) -> dict[tuple[str, str], float]:
    """perennial_api_requests_total by (method, code)."""
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "perennial_api_requests_total":
                key = (sample.labels["method"], sample.labels["code"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def leader_gauge(metrics_text: str) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "perennial_leader":
                return sample.value
    return None


def _assert_no_403(forbidden_before: float, forbidden_after: float, log_text: str) -> None:
    refused = forbidden_after - forbidden_before
    assert refused == 0, f"the operator's ServiceAccount was refused: {refused:g} requests got 403"
    lines = forbidden_lines(log_text)
    assert not lines, "the operator's log tells of a 403:\n" + "\n".join(lines[:20])


# ---------------------------------------------------------------- running it
def operator_environment(
    kubeconfig: Path,
    namespaces: list[str],
    port: int,
    prometheus_url: str = "",
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "PERENNIAL_NAMESPACES": ",".join(namespaces),
        "PERENNIAL_METRICS_ADDRESS": "127.0.0.1",
        "PERENNIAL_METRICS_PORT": str(port),
        "PERENNIAL_LOG_LEVEL": "DEBUG",
        "PERENNIAL_PROMETHEUS_URL": prometheus_url,
        # Leader election stays on, as users run it; each operator a test starts campaigns
        # for a Lease of its own (tests run in parallel), unless the test names one to share.
        "PERENNIAL_LEASE_NAME": f"test-{uuid.uuid4().hex[:12]}",
        **(extra_env or {}),
    }


@contextmanager
def in_process(
    cluster: ClusterInfo,
    namespaces: list[str],
    prometheus_url: str = "",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningOperator]:
    port = free_port()
    env = operator_environment(operator_kubeconfig(cluster), namespaces, port, prometheus_url, extra_env)
    args = ["run", "--standalone", "-m", "perennial.main"]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    running = RunningOperator(f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port}/healthz")
    with KopfRunner(args, env=env) as runner:
        wait_until(lambda: _healthy(running.healthz_url), timeout=60, what="in-process operator /healthz")
        wait_until(running.leading, timeout=60, what="in-process operator to hold its Lease")
        # The metrics registry is the test process's: count this operator's 403s only.
        forbidden_before = running.forbidden_requests()
        yield running
        forbidden_after = running.forbidden_requests()
    # KopfRunner re-raises the operator's own exception; also fail on a non-zero exit.
    assert runner.exit_code == 0, runner.output
    _assert_no_403(forbidden_before, forbidden_after, runner.output)


@contextmanager
def subprocess_operator(
    cluster: ClusterInfo,
    namespaces: list[str],
    log_path: Path,
    prometheus_url: str = "",
    extra_env: Mapping[str, str] | None = None,
    kubeconfig: Path | None = None,
    forbidden_expected: str = "",
    standby: bool = False,
    command: list[str] | None = None,
) -> Iterator[RunningOperator]:
    """``perennial run`` as its ServiceAccount (or with ``kubeconfig``: a test's own credentials).

    Yields once it serves /healthz and holds its Lease (``standby``: once it serves, for a
    replica that shares a Lease another holds). ``command`` wraps the run (a prefix such
    as ``unshare``). A 403 fails the test, unless ``forbidden_expected`` says why this run
    may see some.
    """
    port = free_port()
    credentials = kubeconfig or operator_kubeconfig(cluster)
    env = {**os.environ, **operator_environment(credentials, namespaces, port, prometheus_url, extra_env)}
    console_script = Path(sys.executable).parent / "perennial"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*(command or []), str(console_script), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = RunningOperator(
        f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port}/healthz", log_path, pid=process.pid
    )
    completed = False
    forbidden = 0.0
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise StopWaitingError(f"operator exited with {process.returncode}:\n{log_path.read_text()}")
            return _healthy(running.healthz_url)

        wait_until(ready, timeout=60, what="operator subprocess /healthz")
        if not standby:
            wait_until(running.leading, timeout=60, what="operator subprocess to hold its Lease")
        yield running
        completed = True
        try:
            forbidden = running.forbidden_requests()
        except OSError:
            # A test killed it on purpose (it is exiting): its counters are gone, its log still tells.
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise  # alive, and /metrics does not answer: that is a failure of its own
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if completed and not forbidden_expected:
        _assert_no_403(0, forbidden, log_path.read_text(errors="replace"))
