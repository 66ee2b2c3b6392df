"""What runs on the `real` profile's node, shared by `make demo PROFILE=real` and tests/real.

- the operator, installed by its Helm chart from the image `up` built and imported (no
  registry: ``imagePullPolicy: Never``), one replica, which still holds its Lease;
- a claim on a static local PersistentVolume: the local cluster has no storage
  provisioner, so the cluster's admin (PersistentVolumes are cluster objects an admin
  creates, never a ModelDeployment) makes a directory on this machine (the node), owned by
  the images' user, and a ``local`` PV on it, pre-bound to the claim. TrainingJobs and
  ModelDeployments only name the claim, as on a cluster with a provisioner;
- one-off restricted pods run to their end (a request through a Service, say).

Everything goes through the admin's kubectl and the cached helm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from localcluster import build, node
from localcluster.cluster import OPERATOR_NAMESPACE, REPO_ROOT, LocalCluster
from localcluster.errors import ClusterError

RELEASE, RELEASE_NAMESPACE = "perennial", OPERATOR_NAMESPACE
OPERATOR_SELECTOR = f"app.kubernetes.io/name=perennial,app.kubernetes.io/instance={RELEASE}"
IMAGE_USER = 65532  # the numeric user of the operator's and the churn images (their Dockerfiles)
RESTRICTED_POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float, interval: float = 0.5) -> T:
    """``probe()``'s first truthy answer; a ClusterError (the object not there yet) counts as not yet."""
    deadline, last = time.monotonic() + timeout, ""
    while True:
        try:
            answer = probe()
            if answer:
                return answer
        except (ClusterError, json.JSONDecodeError) as error:
            last = f"; last: {error}"
        if time.monotonic() >= deadline:
            raise ClusterError(f"{what}: not within {timeout:.0f}s{last}")
        time.sleep(interval)


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    """``kubectl get ... -o json``, as the admin."""
    document: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json"))
    return document


def _helm(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.binaries["helm"]), "--kubeconfig", str(cluster.admin_kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


# ---------------------------------------------------------------- the operator's release
def install_operator(cluster: LocalCluster, *, prometheus_url: str = "", timeout: str = "5m") -> str:
    """`helm upgrade --install` of charts/perennial with the image `up` imported; returns the image.

    Idempotent (an unchanged release is left as it is). ``prometheus_url``: the operator's
    default Prometheus (``prometheusUrl``), an address a pod can reach."""
    image = cluster.state.operator_image
    if not image:
        raise ClusterError("the `real` profile imported no operator image (start it with this code's `up`)")
    repository, tag = image.rsplit(":", 1)
    installed = _helm(
        cluster,
        "upgrade",
        "--install",
        RELEASE,
        str(REPO_ROOT / "charts" / "perennial"),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        # There is no registry: the image is on the node or nowhere.
        "--set=image.pullPolicy=Never",
        # One replica: one pod to look at; it still elects itself leader through the Lease.
        "--set=replicaCount=1",
        f"--set=prometheusUrl={prometheus_url}",
        "--wait",
        f"--timeout={timeout}",
    )
    if installed.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide")
        described = cluster.kubectl("describe", "pods", "-n", RELEASE_NAMESPACE)
        raise ClusterError(f"helm install failed:\n{installed.stderr}\n{pods}\n{described[-4000:]}")
    return image


def uninstall_operator(cluster: LocalCluster) -> None:
    _helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout=2m")


def operator_pods(cluster: LocalCluster) -> list[dict[str, Any]]:
    """The release's operator pods that are not going away."""
    listed = get_json(cluster, "pods", "-n", RELEASE_NAMESPACE, "-l", OPERATOR_SELECTOR)
    return [pod for pod in listed.get("items") or [] if not pod["metadata"].get("deletionTimestamp")]


# ---------------------------------------------------------------- a claim on a static local PV
def create_local_claim(cluster: LocalCluster, namespace: str, claim: str, *, timeout: float = 60) -> tuple[str, Path]:
    """A claim ``claim`` in ``namespace`` bound to a new static local PV (on the node, owned by
    the images' user); returns the PV's name and its directory on this machine."""
    pv_name = f"{namespace}-{claim}-{uuid.uuid4().hex[:8]}"[:63]
    directory = cluster.dir / "volumes" / pv_name
    directory.mkdir(parents=True)
    os.chown(directory, IMAGE_USER, IMAGE_USER)
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {"perennial.dev/local-volume": "true"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "local": {"path": str(directory)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node.NODE_NAME]}
                            ]
                        }
                    ]
                }
            },
            # Pre-bound: this PV is for this claim only.
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    request = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl(
        "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [volume, request]})
    )
    wait_for(
        lambda: get_json(cluster, "pvc", claim, "-n", namespace).get("status", {}).get("phase") == "Bound",
        f"claim {namespace}/{claim} bound to {pv_name}",
        timeout,
    )
    return pv_name, directory


def delete_local_volume(cluster: LocalCluster, pv_name: str) -> None:
    """The PV (Retain: its claim's namespace may be gone already) and its directory."""
    cluster.kubectl("delete", "pv", pv_name, "--ignore-not-found", "--wait=false")
    shutil.rmtree(cluster.dir / "volumes" / pv_name, ignore_errors=True)


def local_volumes_of(cluster: LocalCluster, namespace: str) -> list[str]:
    """The static local PVs made for claims in ``namespace`` (a previous run's, say)."""
    listed = get_json(cluster, "pv", "-l", "perennial.dev/local-volume=true")
    return [
        pv["metadata"]["name"]
        for pv in listed.get("items") or []
        if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace
    ]


# ---------------------------------------------------------------- pods
def restricted_pod(
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    restart: str = "Never",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod of one container that passes the restricted Pod Security profile, with no API token."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",  # no registry: the image is on the node
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "securityContext": RESTRICTED_POD_SECURITY,
            "containers": [container],
        },
    }


def run_pod(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    timeout: float = 120,
) -> tuple[dict[str, Any], str]:
    """Run a one-off restricted pod to its end; return it and its log."""
    pod = restricted_pod(name, image, command=command, args=args)
    cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(pod))

    def finished() -> dict[str, Any] | None:
        body = get_json(cluster, "pod", name, "-n", namespace)
        return body if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(finished, f"pod {namespace}/{name} finished", timeout)
    return done, cluster.kubectl("logs", "-n", namespace, name)


def busybox_request(
    cluster: LocalCluster, namespace: str, name: str, url: str, body: str
) -> tuple[dict[str, Any], str]:
    """POST ``body`` to ``url`` from a pod (busybox wget as a non-root user); the pod and the answer."""
    command = ["/bin/busybox", "wget", "-q", "-O", "-", "--post-data", body, url]
    return run_pod(cluster, namespace, name, build.BUSYBOX_NONROOT_IMAGE, command=command)
