"""``kubectl perennial`` against the real API server, run as a user runs it: the console
script ``kubectl-perennial`` in a subprocess (and once through the real ``kubectl``, which
finds the plugin on PATH), with the admin kubeconfig or a ServiceAccount's token.

What a user relies on: the screens show what the operator decided, the write commands
change what the operator acts on (and the operator then does it: a TrainingJob starts, a
pinned version serves), a refused request and a missing object or permission are one
clear line with an exit code a script can test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.cluster import ClusterInfo
from tests.support.operator import kubeconfig_with_user
from tests.support.resources import GROUP, VERSION, apply, get_custom, simulated_model, wait_for_status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

MODEL = "churn"
PLUGIN = Path(sys.executable).parent / "kubectl-perennial"
NOT_FOUND, FORBIDDEN, REFUSED = 2, 3, 1


def plugin_command(cluster: ClusterInfo, namespace: str, kubeconfig: Path | None = None) -> list[str]:
    return [str(PLUGIN), "--kubeconfig", str(kubeconfig or cluster.kubeconfig), "-n", namespace]


def plugin(
    cluster: ClusterInfo, namespace: str, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [*plugin_command(cluster, namespace, kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def model_status(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return dict(get_custom(api, namespace, "modeldeployments", MODEL).get("status") or {})


def record(status: dict[str, Any], version: str) -> dict[str, Any]:
    return next((r for r in status.get("versions") or [] if r["version"] == version), {})


def serves(version: str) -> Callable[[dict[str, Any]], bool]:
    """``version`` serves, its rollout finished, and the Deployment is available."""

    def predicate(status: dict[str, Any]) -> bool:
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return (
            status.get("servingVersion") == version
            and not status.get("rollout")
            and record(status, version).get("state") == "Serving"
            and ready.get("status") == "True"
        )

    return predicate


def wait_serving(api: client.ApiClient, namespace: str, version: str) -> dict[str, Any]:
    return wait_for_status(api, namespace, "modeldeployments", MODEL, serves(version), what=f"v{version} serves")


def drift_policy(value: float) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": "churn-drift"},
        "spec": {
            "targetRef": {"name": MODEL},
            "interval": "10s",
            "metrics": [{"name": "constant", "query": f"vector({value})", "max": 0.5}],
        },
    }


def spec_of(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return dict(get_custom(api, namespace, "modeldeployments", MODEL)["spec"])


# ---------------------------------------------------------------- reading
@pytest.mark.usefixtures("operator_in_process")
def test_status_history_and_why_show_a_serving_model_and_its_drift_policy(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, simulated_model(MODEL, cooldown="1s"))
    apply(perennial_crds, namespace, drift_policy(0.1))
    wait_serving(api_client, namespace, "1")
    wait_for_status(
        api_client,
        namespace,
        "driftpolicies",
        "churn-drift",
        lambda s: any(m.get("value") == 0.1 for m in s.get("metrics") or []),
        what="the policy's first evaluation",
    )

    screen = ok(plugin(perennial_crds, namespace, "status", MODEL))
    assert f"Namespace:         {namespace}" in screen
    assert "Phase:             Serving" in screen
    assert f"Serving:           version 1  s3://models/{namespace}/{MODEL}/1" in screen
    assert "Latest:            version 1 (Serving)" in screen
    assert "Replicas:          1/1 ready" in screen
    assert "Auto retrains:     Active" in screen
    assert "churn-drift: Ready, not drifting" in screen
    assert "constant   0.1     <= 0.5   no" in screen
    assert "Promoted: validated; no version serving yet" in screen
    assert "Ready: version 1 is serving and available" in screen

    data = json.loads(ok(plugin(perennial_crds, namespace, "status", MODEL, "-o", "json")))
    assert data["servingVersion"] == "1"
    assert data["driftPolicies"][0]["metrics"][0]["value"] == 0.1
    assert data["recentVersions"][0]["state"] == "Serving"

    history = ok(plugin(perennial_crds, namespace, "history", MODEL)).splitlines()
    assert history[0].split() == ["VERSION", "STATE", "TRIGGER", "DATA", "METRICS", "DECISION"]
    assert history[1].split()[:5] == ["1", "*", "Serving", "Initial", "-"]
    assert "auc=0.93" in history[1]
    lineage = yaml.safe_load(ok(plugin(perennial_crds, namespace, "history", MODEL, "-o", "yaml")))
    assert [(v["version"], v["state"], v["trigger"]["reason"]) for v in lineage["versions"]] == [
        ("1", "Serving", "Initial")
    ]

    explanation = ok(plugin(perennial_crds, namespace, "why", MODEL))
    assert explanation.startswith("Retraining: Idle\n")
    assert "DriftPolicy churn-drift is not drifting: constant 0.1 within <= 0.5" in explanation
    assert "Promotion: UpToDate" in explanation

    # The same screen through kubectl itself, which finds kubectl-perennial on PATH.
    env = {
        **os.environ,
        "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(perennial_crds.kubeconfig),
    }
    through_kubectl = subprocess.run(
        [str(perennial_crds.kubectl), "perennial", "status", MODEL, "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert through_kubectl.returncode == 0, through_kubectl.stderr
    assert "churn-drift: Ready, not drifting" in through_kubectl.stdout


# ---------------------------------------------------------------- writing
@pytest.mark.usefixtures("operator_in_process")
def test_pause_resume_and_retrain_change_what_the_operator_acts_on(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    apply(perennial_crds, namespace, simulated_model(MODEL, cooldown="1s"))
    wait_serving(api_client, namespace, "1")

    # status -w, left running: it redraws when the model changes, and Ctrl-C ends it cleanly.
    watch_log = tmp_path / "watch.txt"
    with watch_log.open("w") as out:
        watcher = subprocess.Popen(
            [*plugin_command(perennial_crds, namespace), "status", MODEL, "-w", "--interval", "0.5"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: "Auto retrains:     Active" in watch_log.read_text(), what="the first frame")

        dry = ok(plugin(perennial_crds, namespace, "pause", MODEL, "--dry-run"))
        assert "(dry run: nothing stored)" in dry
        assert spec_of(api_client, namespace)["suspend"] is False

        paused = plugin(perennial_crds, namespace, "pause", MODEL)
        assert ok(paused).splitlines()[:2] == [
            f"modeldeployment.perennial.dev/{MODEL} patched",
            "  spec.suspend: false -> true",
        ]
        assert paused.stderr.count("make the same change in Git") == 1
        assert spec_of(api_client, namespace)["suspend"] is True
        body = get_custom(api_client, namespace, "modeldeployments", MODEL)
        assert "kubectl-perennial" in {entry["manager"] for entry in body["metadata"]["managedFields"]}
        assert "already paused" in ok(plugin(perennial_crds, namespace, "pause", MODEL))

        wait_until(lambda: "Auto retrains:     Suspended" in watch_log.read_text(), what="a redraw after pause")
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0, watch_log.read_text()
    assert "Traceback" not in watch_log.read_text()

    explanation = ok(plugin(perennial_crds, namespace, "why", MODEL))
    assert explanation.startswith("Retraining: Blocked\n")
    assert "spec.suspend is true: automatic retrains (Drift, Schedule, spec changes) are paused" in explanation
    assert f"kubectl perennial resume {MODEL}" in explanation

    # A manual retrain runs even while paused: a new TrainingJob for version 2.
    requested = ok(plugin(perennial_crds, namespace, "retrain", MODEL, "--reason", "fresh labels"))
    assert "metadata.annotations[perennial.dev/retrain-request]: (unset) -> " in requested
    status = wait_for_status(
        api_client, namespace, "modeldeployments", MODEL, lambda s: bool(record(s, "2")), what="v2 allocated"
    )
    trigger = record(status, "2")["trigger"]
    assert trigger["reason"] == "Manual"
    assert trigger["source"].endswith(" fresh labels")
    job = get_custom(api_client, namespace, "trainingjobs", record(status, "2")["trainingJob"])
    assert job["spec"]["trigger"]["reason"] == "Manual"
    wait_serving(api_client, namespace, "2")

    resumed = ok(plugin(perennial_crds, namespace, "resume", MODEL))
    assert "  spec.suspend: true -> false" in resumed
    assert spec_of(api_client, namespace)["suspend"] is False
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        MODEL,
        lambda s: s.get("automaticRetrains") == "Active",
        what="automatic retrains active again",
    )


@pytest.mark.usefixtures("operator_in_process")
def test_promote_rollback_and_unpin_serve_the_versions_asked_for(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, simulated_model(MODEL, cooldown="1s"))
    wait_serving(api_client, namespace, "1")
    ok(plugin(perennial_crds, namespace, "retrain", MODEL))
    wait_serving(api_client, namespace, "2")

    # rollback: the version that served before 2 is 1; it is pinned and serves again.
    rolled = ok(plugin(perennial_crds, namespace, "rollback", MODEL))
    assert '  spec.pinnedVersion: (unset) -> "1"' in rolled
    assert "version 1 served before version 2" in rolled
    status = wait_serving(api_client, namespace, "1")
    assert record(status, "2")["state"] == "Retired"
    assert "Promotion: Pinned" in ok(plugin(perennial_crds, namespace, "why", MODEL))

    # promote: pin 2 back; it serves.
    promoted = ok(plugin(perennial_crds, namespace, "promote", MODEL, "2"))
    assert '  spec.pinnedVersion: "1" -> "2"' in promoted
    wait_serving(api_client, namespace, "2")

    # A version that does not exist, and one that failed its gates, are refused with exit 1.
    missing = plugin(perennial_crds, namespace, "promote", MODEL, "7")
    assert missing.returncode == REFUSED
    assert missing.stderr == (
        f"error: modeldeployment {MODEL} has no version 7 (its versions: 1, 2); see kubectl perennial history {MODEL}\n"
    )
    apply(perennial_crds, namespace, simulated_model(MODEL, auc=0.5, cooldown="1s"))  # a spec change: v3, rejected
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        MODEL,
        lambda s: record(s, "3").get("state") == "Rejected",
        what="v3 rejected",
    )
    rejected = plugin(perennial_crds, namespace, "promote", MODEL, "3")
    assert rejected.returncode == REFUSED
    assert rejected.stderr.startswith(f"error: version 3 of {MODEL} was Rejected: training Rejected: ")
    assert spec_of(api_client, namespace)["pinnedVersion"] == "2"

    # unpin: the pin is gone; what serves keeps serving.
    unpinned = ok(plugin(perennial_crds, namespace, "unpin", MODEL))
    assert '  spec.pinnedVersion: "2" -> (unset)' in unpinned
    assert "pinnedVersion" not in spec_of(api_client, namespace)
    assert model_status(api_client, namespace)["servingVersion"] == "2"
    assert "is not pinned" in ok(plugin(perennial_crds, namespace, "unpin", MODEL))


@pytest.mark.usefixtures("operator_in_process")
def test_why_explains_an_open_circuit_breaker_and_rollback_refuses_with_nothing_served(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, simulated_model(MODEL, auc=0.5, maxConsecutiveFailures=1))
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        MODEL,
        lambda s: s.get("automaticRetrains") == "CircuitOpen",
        what="the circuit breaker open",
    )
    explanation = ok(plugin(perennial_crds, namespace, "why", MODEL))
    assert explanation.startswith("Retraining: Blocked\n")
    assert (
        "The circuit breaker is open: 1 runs in a row failed or were rejected (retraining.maxConsecutiveFailures 1)."
        " The last one, version 1: training Rejected: MetricBelowMin"
    ) in explanation
    assert "Version 1 was rejected by its validation gates" in explanation
    screen = ok(plugin(perennial_crds, namespace, "status", MODEL))
    assert "Auto retrains:     CircuitOpen: 1 runs in a row failed or were rejected" in screen

    refused = plugin(perennial_crds, namespace, "rollback", MODEL)
    assert refused.returncode == REFUSED
    assert refused.stderr == f"error: nothing serves {MODEL} yet: there is no version to roll back from\n"


# ---------------------------------------------------------------- errors
def test_a_missing_model_and_missing_permissions_are_clear_errors_with_exit_codes(
    perennial_crds: ClusterInfo, namespace: str, tmp_path: Path
) -> None:
    for command in (["status", "nope"], ["history", "nope"], ["pause", "nope"], ["promote", "nope", "1"]):
        missing = plugin(perennial_crds, namespace, *command)
        assert missing.returncode == NOT_FOUND, missing.stderr
        assert missing.stderr == f'error: modeldeployment "nope" not found in namespace "{namespace}"\n'
        assert missing.stdout == ""

    # A ServiceAccount nobody granted anything.
    perennial_crds.kubectl_run("create", "serviceaccount", "nobody", "-n", namespace)
    token = perennial_crds.kubectl_run("create", "token", "nobody", "-n", namespace).stdout.strip()
    nobody = kubeconfig_with_user(perennial_crds, {"token": token}, tmp_path / "nobody.kubeconfig")
    user = f"system:serviceaccount:{namespace}:nobody"
    for command, verb in ((["status", MODEL], "get"), (["retrain", MODEL], "get")):
        refused = plugin(perennial_crds, namespace, *command, kubeconfig=nobody)
        assert refused.returncode == FORBIDDEN, refused.stderr
        assert refused.stderr.startswith(
            f'error: forbidden: you may not {verb} modeldeployments.perennial.dev "{MODEL}" in namespace'
            f' "{namespace}": User "{user}" cannot {verb} resource "modeldeployments"'
        )
        assert "Traceback" not in refused.stderr

    # Allowed to read but not to write: the write names the verb it was refused.
    perennial_crds.kubectl_run(
        "create", "role", "reader", "-n", namespace, "--verb=get,list", "--resource=modeldeployments.perennial.dev"
    )
    perennial_crds.kubectl_run(
        "create",
        "rolebinding",
        "nobody-reads",
        "-n",
        namespace,
        "--role=reader",
        f"--serviceaccount={namespace}:nobody",
    )
    apply(perennial_crds, namespace, simulated_model(MODEL))

    def pause_refused() -> subprocess.CompletedProcess[str] | None:
        result = plugin(perennial_crds, namespace, "pause", MODEL, kubeconfig=nobody)
        return result if result.returncode == FORBIDDEN and "may not patch" in result.stderr else None

    refused = wait_until(pause_refused, timeout=30, what="RBAC to let nobody read (and not patch)")
    assert refused.stderr.startswith(
        f'error: forbidden: you may not patch modeldeployments.perennial.dev "{MODEL}" in namespace "{namespace}"'
    )
    # The status screen still draws; the policies it may not list are named, not fatal.
    screen = ok(plugin(perennial_crds, namespace, "status", MODEL, kubeconfig=nobody))
    assert "(not shown: forbidden: you may not list driftpolicies.perennial.dev" in screen
