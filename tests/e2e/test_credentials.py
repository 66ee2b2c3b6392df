"""Credential refresh, tested (issue 16, item 4): short-lived and rotated credentials, revoked for real.

What is real here:

- The credentials are ServiceAccount tokens of ``perennial-system/perennial`` (the RBAC of
  ``manifests/``), each bound to a Secret of its own (``kubectl create token
  --bound-object-kind Secret``). Deleting that Secret revokes the token in the API server
  itself: from then on it answers 401 (once its cache of successful token reviews, 10 s,
  has let go of the token). The tests prove it each time with ``kubectl`` and the token.
- Exec plugin: the operator's kubeconfig has no token, only an ``exec`` credential plugin
  (a script this test writes) that issues a fresh token per call and reports it expiring
  20 s later. A thread of the test revokes every token 1 s after its reported expiry, so an
  operator that used a token past its expiry would get real 401s. For over 90 s the
  operator trains, gates and rolls out version after version; it must renew on its own
  (the plugin called again and again), with no 401 and no 403. kopf's watches stay open
  throughout (a watch is authenticated once, when it starts), so the test makes kopf send
  requests of its own later (a CRD of the test's own makes kopf re-read discovery): kopf
  must log in again through the operator's ``kopf.on.login`` handler, without a 401.
- In a pod: the operator runs in a private mount namespace (``unshare``) in which
  ``/var/run/secrets/kubernetes.io/serviceaccount`` holds a CA and a token laid out as the
  kubelet's projected volume does (``token -> ..data/token``, ``..data -> ..<timestamp>``),
  with ``KUBERNETES_SERVICE_HOST``/``PORT`` set and ``KUBECONFIG`` pointing nowhere, so only
  the in-cluster credentials can work. The test rotates the token the way the kubelet does
  (a new timestamped directory, then a symlink renamed over ``..data``), revokes the old
  token, and the operator must keep working: a retrain is trained and served after the
  old token is refused by the API server, and kopf, still holding the old token, logs in
  again when its own request is refused.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.operator import (
    OPERATOR_USER,
    admin_cluster_entry,
    api_requests,
    kubeconfig_with_user,
    operator_kubeconfig,
    subprocess_operator,
    whoami,
)
from tests.support.resources import apply, request_retrain, simulated_model, wait_for_status
from tests.support.waiting import wait_until

MODEL = "churn"
RUN_LABEL = "perennial.dev/credentials-test-run"
# The exec plugin's credentials live this long; the operator must renew them itself.
CREDENTIAL_LIFETIME = timedelta(seconds=20)
# A token is revoked this long after the expiry its plugin call reported.
REVOKE_GRACE = timedelta(seconds=1)
# How long the operator works on exec credentials (several credential lifetimes).
WORK_SECONDS = 90.0


# ---------------------------------------------------------------- tokens, kubeconfigs, kubectl
def whoami_with_token(cluster: ClusterInfo, token: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl auth whoami`` with ``token`` alone."""
    kubeconfig = kubeconfig_with_user(cluster, {"token": token}, scratch / f"token-{uuid.uuid4().hex[:8]}.kubeconfig")
    try:
        return whoami(cluster, kubeconfig)
    finally:
        kubeconfig.unlink()


def token_refused(cluster: ClusterInfo, token: str, scratch: Path) -> bool:
    """The API server answers 401 to ``token`` (not any other failure)."""
    result = whoami_with_token(cluster, token, scratch)
    return result.returncode != 0 and "Unauthorized" in result.stderr


def secret_manifest(name: str, run: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": delivery.NAMESPACE, "labels": {RUN_LABEL: run}},
        }
    )


def bound_token(cluster: ClusterInfo, secret: str, run: str) -> str:
    """A token of the operator's ServiceAccount, valid as long as Secret ``secret`` (created here) exists."""
    cluster.kubectl_run("create", "-f", "-", stdin=secret_manifest(secret, run))
    return str(
        cluster.kubectl_run(
            "create",
            "token",
            delivery.SERVICE_ACCOUNT,
            "-n",
            delivery.NAMESPACE,
            "--bound-object-kind",
            "Secret",
            "--bound-object-name",
            secret,
            "--duration=10m",
        ).stdout.strip()
    )


def revoke(cluster: ClusterInfo, secret: str) -> None:
    cluster.kubectl_run("delete", "secret", secret, "-n", delivery.NAMESPACE, "--ignore-not-found", "--wait=false")


@contextmanager
def objects_of_this_run(cluster: ClusterInfo) -> Iterator[str]:
    """A unique run id; every Secret (and CRD) labelled with it is deleted at the end."""
    run = uuid.uuid4().hex[:8]
    try:
        yield run
    finally:
        selector = f"{RUN_LABEL}={run}"
        cluster.kubectl_run("delete", "secret", "-n", delivery.NAMESPACE, "-l", selector, "--ignore-not-found")
        cluster.kubectl_run("delete", "crd", "-l", selector, "--ignore-not-found", "--wait=false")


# ---------------------------------------------------------------- the model's work
def serving(version: str) -> Callable[[dict[str, Any]], bool]:
    """``version`` serves, its rollout over and Ready True."""

    def predicate(status: dict[str, Any]) -> bool:
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return (
            status.get("servingVersion") == version
            and status.get("phase") == "Serving"
            and not status.get("rollout")
            and ready.get("status") == "True"
        )

    return predicate


def wait_serving(api: client.ApiClient, namespace: str, version: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for_status(
        api, namespace, "modeldeployments", MODEL, serving(version), what=f"v{version} serving", timeout=timeout
    )


def unauthorized_lines(text: str) -> list[str]:
    """Log lines about a 401: the status reason, or 401 as a number of its own (not in a
    timestamp such as 12:00:01,401, a uid or a resourceVersion)."""
    return [
        line
        for line in text.splitlines()
        if re.search(r"\bUnauthorized\b", line) or re.search(r"(?<![\w.,:\"'-])401(?![\w\"'-])", line)
    ]


def error_lines(text: str) -> list[str]:
    """Log lines at level ERROR (a failed watch, login or reconcile), and tracebacks.

    Not kopf's retries after a 429: the API server asking to come back later (a CRD's storage
    re-initialising while a test elsewhere in the session applies it, or API Priority and
    Fairness) is no credential failure, and kopf retries as asked."""
    return [
        line
        for line in text.splitlines()
        if ("[ERROR" in line and "APITooManyRequestsError" not in line) or line.startswith("Traceback")
    ]


def codes(requests: dict[tuple[str, str], float], code: str) -> float:
    return sum(n for (_, c), n in requests.items() if c == code)


# ---------------------------------------------------------------- 1. exec credential plugin
PLUGIN = '''\
"""An exec credential plugin: each call, a ServiceAccount token bound to a fresh Secret."""
import fcntl, json, os, subprocess, sys
from datetime import UTC, datetime, timedelta

env = os.environ
kubectl = [env["PLUGIN_KUBECTL"], "--kubeconfig", env["PLUGIN_ADMIN_KUBECONFIG"]]
calls = env["PLUGIN_CALLS"]
namespace, account = env["PLUGIN_NAMESPACE"], env["PLUGIN_SERVICE_ACCOUNT"]


def kubectl_run(*args, stdin=None):
    result = subprocess.run([*kubectl, *args], input=stdin, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"credential plugin: kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


with open(calls + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(calls, "a+") as file:
        file.seek(0)
        n = sum(1 for line in file if line.strip()) + 1
    secret = f"{env['PLUGIN_SECRET_PREFIX']}-{n}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret, "namespace": namespace, "labels": {env["PLUGIN_LABEL"]: env["PLUGIN_RUN"]}},
    }
    kubectl_run("create", "-f", "-", stdin=json.dumps(manifest))
    token = kubectl_run(
        "create", "token", account, "-n", namespace,
        "--bound-object-kind", "Secret", "--bound-object-name", secret, "--duration=10m",
    ).strip()
    now = datetime.now(UTC)
    expiry = (now + timedelta(seconds=float(env["PLUGIN_LIFETIME_SECONDS"]))).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(calls, "a") as file:
        record = {"time": now.isoformat(), "secret": secret, "expiry": expiry, "token": token}
        file.write(json.dumps(record) + "\\n")

print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": token, "expirationTimestamp": expiry},
}))
'''


@dataclass(frozen=True)
class PluginCall:
    time: datetime
    secret: str
    expiry: datetime
    token: str


def plugin_calls(path: Path) -> list[PluginCall]:
    """What the plugin handed out, in call order (read under the plugin's lock)."""
    if not path.exists():
        return []
    with Path(f"{path}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        PluginCall(
            datetime.fromisoformat(line["time"]),
            line["secret"],
            datetime.strptime(line["expiry"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            line["token"],
        )
        for line in lines
    ]


def exec_plugin_kubeconfig(cluster: ClusterInfo, tmp_path: Path, calls: Path, run: str) -> Path:
    plugin = tmp_path / "credential-plugin.py"
    plugin.write_text(PLUGIN)
    env = {
        "PLUGIN_KUBECTL": str(cluster.kubectl),
        "PLUGIN_ADMIN_KUBECONFIG": str(cluster.kubeconfig),
        "PLUGIN_CALLS": str(calls),
        "PLUGIN_NAMESPACE": delivery.NAMESPACE,
        "PLUGIN_SERVICE_ACCOUNT": delivery.SERVICE_ACCOUNT,
        "PLUGIN_SECRET_PREFIX": f"exec-cred-{run}",
        "PLUGIN_LABEL": RUN_LABEL,
        "PLUGIN_RUN": run,
        "PLUGIN_LIFETIME_SECONDS": str(CREDENTIAL_LIFETIME.total_seconds()),
    }
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "env": [{"name": name, "value": value} for name, value in env.items()],
            "interactiveMode": "Never",
        }
    }
    return kubeconfig_with_user(cluster, user, tmp_path / "exec-plugin.kubeconfig")


class Revoker:
    """A thread that deletes each plugin credential's Secret once its reported expiry (+ grace) has passed."""

    def __init__(self, cluster: ClusterInfo, calls: Path) -> None:
        self.cluster = cluster
        self.calls = calls
        self.revoked: dict[str, datetime] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revoker", daemon=True)

    def __enter__(self) -> Revoker:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.sweep()
            except Exception as error:  # reported by the test, not lost in a thread
                if len(self.errors) < 10:
                    self.errors.append(repr(error))

    def sweep(self) -> None:
        now = datetime.now(UTC)
        for call in plugin_calls(self.calls):
            if call.secret not in self.revoked and now >= call.expiry + REVOKE_GRACE:
                revoke(self.cluster, call.secret)
                self.revoked[call.secret] = now


def throwaway_crd(run: str) -> str:
    """A CRD of a group of this run's own. kopf watches CRDs and re-reads the API's
    discovery whenever one changes: a request of kopf's own, made with kopf's credentials."""
    group = f"r{run}.credentials.test"
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"probes.{group}", "labels": {RUN_LABEL: run}},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
                ],
            },
        }
    )


def kopf_logins(log: Path) -> int:
    """How many times kopf ran the operator's ``kopf.on.login`` handler."""
    return log.read_text(errors="replace").count("Activity 'login' is invoked")


@pytest.mark.timeout(300)
def test_exec_plugin_credentials_are_renewed_before_expiry_with_no_401_through_90s_of_work(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    tmp_path: Path,
    report_measurement: Callable[[str], None],
) -> None:
    cluster = perennial_crds
    operator_kubeconfig(cluster)  # the ServiceAccount and its RBAC from manifests/
    calls = tmp_path / "plugin-calls.jsonl"
    log = tmp_path / "operator.log"
    with objects_of_this_run(cluster) as run:
        kubeconfig = exec_plugin_kubeconfig(cluster, tmp_path, calls, run)
        with (
            Revoker(cluster, calls) as revoker,
            subprocess_operator(
                cluster,
                [namespace],
                log,
                cluster.prometheus_url,
                kubeconfig=kubeconfig,
                # Not "in a pod": only the kubeconfig's exec plugin can log in.
                extra_env={"KUBERNETES_SERVICE_HOST": ""},
            ) as running,
        ):
            started = time.monotonic()
            apply(cluster, namespace, simulated_model(MODEL, cooldown="1s", historyLimit=1))
            wait_serving(api_client, namespace, "1")
            version = 1
            crd = ""
            while time.monotonic() - started < WORK_SECONDS:
                # kopf's own requests after its first credentials expired (its watches, open
                # since the start, need none): a discovery re-read at 30 s, another at 60 s.
                if not crd and time.monotonic() - started >= 30:
                    crd = cluster.kubectl_run(
                        "create", "-f", "-", "-o", "name", stdin=throwaway_crd(run)
                    ).stdout.strip()
                    wait_until(lambda: kopf_logins(log) >= 2, timeout=30, what="kopf logging in again")
                elif crd and time.monotonic() - started >= 60 and kopf_logins(log) < 3:
                    cluster.kubectl_run("delete", crd, "--wait=false")
                    wait_until(lambda: kopf_logins(log) >= 3, timeout=30, what="kopf logging in a third time")
                version += 1
                request_retrain(cluster, namespace, MODEL, f"r{version}")
                status = wait_serving(api_client, namespace, str(version))
                (record,) = [r for r in status["versions"] if r["version"] == str(version)]
                assert record["trigger"]["reason"] == "Manual", record
            worked = time.monotonic() - started
            requests = api_requests(running.metrics_text())
            assert running.leading()
        assert not revoker.errors, revoker.errors

        handed_out = plugin_calls(calls)
        log_text = log.read_text(errors="replace")
        report_measurement(
            f"{version} versions in {worked:.0f}s of work; {len(handed_out)} plugin calls, "
            f"{len(revoker.revoked)} tokens revoked, {kopf_logins(log)} kopf logins, {codes(requests, '401'):g} 401s"
        )
        # Renewed on its own, again and again: a 20 s credential lasts ~18 s in the operator.
        assert len(handed_out) >= 4, f"{len(handed_out)} plugin calls in {worked:.0f}s of work"
        assert len(handed_out) >= worked / CREDENTIAL_LIFETIME.total_seconds(), (len(handed_out), worked)
        # The revocations were real and happened while the operator ran.
        assert len(revoker.revoked) >= 3, revoker.revoked
        # Never a request with a revoked (expired) token: no 401 anywhere, nor a 403.
        assert codes(requests, "401") == 0, requests
        assert codes(requests, "403") == 0, requests
        assert sum(n for (_, c), n in requests.items() if c.startswith("2")) > 0, requests
        lines = unauthorized_lines(log_text)
        assert not lines, "the operator's log tells of a 401:\n" + "\n".join(lines[:20])
        assert "reconcile failed" not in log_text
        assert not error_lines(log_text), "\n".join(error_lines(log_text)[:20])
        assert version >= 4, f"only {version} versions in {worked:.0f}s"

        # The first credential the plugin handed out is refused now: revocation is no pretence.
        first = handed_out[0]
        assert first.secret in revoker.revoked
        assert token_refused(cluster, first.token, tmp_path), whoami_with_token(cluster, first.token, tmp_path)


# ---------------------------------------------------------------- 2. rotated in-cluster token
class ProjectedToken:
    """A ServiceAccount token volume as the kubelet writes it, atomically swapped on rotation.

    ``token``, ``ca.crt`` and ``namespace`` are symlinks into ``..data``, itself a symlink to
    a timestamped directory; a rotation writes a new directory and renames a fresh symlink
    over ``..data``, so a reader sees the old files or the new ones, never a mix.
    """

    def __init__(self, directory: Path, ca_pem: bytes) -> None:
        self.directory = directory
        self.ca_pem = ca_pem
        directory.mkdir()

    def write(self, token: str) -> None:
        stamp = f"..{datetime.now(UTC):%Y_%m_%d_%H_%M_%S}.{uuid.uuid4().hex[:9]}"
        payload = self.directory / stamp
        payload.mkdir()
        (payload / "token").write_text(token)
        (payload / "ca.crt").write_bytes(self.ca_pem)
        (payload / "namespace").write_text(delivery.NAMESPACE)
        data = self.directory / "..data"
        previous = os.readlink(data) if data.is_symlink() else None
        temporary = self.directory / "..data_tmp"
        temporary.symlink_to(stamp)
        os.rename(temporary, data)
        for name in ("token", "ca.crt", "namespace"):
            if not (self.directory / name).is_symlink():
                (self.directory / name).symlink_to(f"..data/{name}")
        if previous is not None:
            for file in (self.directory / previous).iterdir():
                file.unlink()
            (self.directory / previous).rmdir()


def cluster_ca(cluster: ClusterInfo) -> bytes:
    entry = admin_cluster_entry(cluster)
    if "certificate-authority-data" in entry:
        return base64.b64decode(entry["certificate-authority-data"])
    path = Path(entry["certificate-authority"])
    return (path if path.is_absolute() else cluster.kubeconfig.parent / path).read_bytes()


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# In a private mount namespace: a tmpfs over /run (/var/run links to it), and the pod's
# ServiceAccount directory there, pointing at the test's projected volume ($0). Then the
# operator ("$@") in place of the shell, so its pid is the one the test signals.
IN_A_POD = " && ".join(
    [
        "mount -t tmpfs tmpfs /run",
        "mkdir -p /run/secrets/kubernetes.io",
        'ln -s "$0" /run/secrets/kubernetes.io/serviceaccount',
        'exec "$@"',
    ]
)


@pytest.mark.timeout(240)
def test_rotated_in_cluster_token_is_picked_up_and_the_revoked_one_never_stops_the_work(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    tmp_path: Path,
    report_measurement: Callable[[str], None],
) -> None:
    cluster = perennial_crds
    operator_kubeconfig(cluster)  # the ServiceAccount and its RBAC from manifests/
    server = urlsplit(admin_cluster_entry(cluster)["server"])
    # The API server's address as its serving certificate names it, as in a pod's environment.
    assert server.hostname == "127.0.0.1", server
    assert server.port, server
    # The test process is not in a pod: only the operator's mount namespace has the directory.
    assert not SERVICE_ACCOUNT_DIR.exists()
    log = tmp_path / "operator.log"
    volume = ProjectedToken(tmp_path / "serviceaccount", cluster_ca(cluster))
    with objects_of_this_run(cluster) as run:
        first_secret, second_secret = f"incluster-{run}-1", f"incluster-{run}-2"
        first = bound_token(cluster, first_secret, run)
        volume.write(first)
        in_a_pod = ["unshare", "--mount", "--propagation", "private", "sh", "-c", IN_A_POD, str(volume.directory)]
        env = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port),
            # No kubeconfig to fall back on: in-cluster credentials or nothing.
            "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        }
        with subprocess_operator(
            cluster, [namespace], log, cluster.prometheus_url, extra_env=env, command=in_a_pod
        ) as running:
            apply(cluster, namespace, simulated_model(MODEL, cooldown="1s", historyLimit=1))
            wait_serving(api_client, namespace, "1")

            # The kubelet rotates the token; the old one is then revoked.
            second = bound_token(cluster, second_secret, run)
            volume.write(second)
            assert (volume.directory / "token").read_text() == second
            revoke(cluster, first_secret)
            wait_until(
                lambda: token_refused(cluster, first, tmp_path),
                timeout=60,
                interval=1,
                what="the API server refusing the revoked token",
            )

            # kopf's own request (a discovery re-read) while kopf still holds the revoked
            # token: refused, kopf must log in again through the operator's Login.
            cluster.kubectl_run("create", "-f", "-", stdin=throwaway_crd(run))
            wait_until(lambda: kopf_logins(log) >= 2, timeout=30, what="kopf logging in again")

            # Work after the old token is refused: only the rotated one can do it.
            request_retrain(cluster, namespace, MODEL, "after-rotation")
            status = wait_serving(api_client, namespace, "2")
            (record,) = [r for r in status["versions"] if r["version"] == "2"]
            assert record["trigger"]["reason"] == "Manual", record
            wait_until(running.leading, timeout=30, what="the operator still holding its Lease")
            requests = api_requests(running.metrics_text())
        assert not SERVICE_ACCOUNT_DIR.exists()

        log_text = log.read_text(errors="replace")
        report_measurement(
            f"{codes(requests, '401'):g} 401s after the revocation, "
            f"{log_text.count('logging in again')} fresh logins after a 401, {kopf_logins(log)} kopf logins"
        )
        assert codes(requests, "403") == 0, requests
        assert "reconcile failed" not in log_text, "\n".join(
            line for line in log_text.splitlines() if "reconcile failed" in line
        )
        assert not error_lines(log_text), "\n".join(error_lines(log_text)[:20])
        # A request with the revoked token before the minutely re-read may get one 401; the
        # operator must then have logged in again (read the rotated file) and carried on.
        if codes(requests, "401") or unauthorized_lines(log_text):
            assert "logging in again" in log_text, "\n".join(unauthorized_lines(log_text)[:20])
        # The rotated token is the ServiceAccount's and still good; the first one is refused.
        assert whoami_with_token(cluster, second, tmp_path).stdout == OPERATOR_USER
        assert token_refused(cluster, first, tmp_path)
