"""Pods on the real node: a kubelet, containerd and runc run them; nothing is simulated."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from localcluster import build, node, versions
from localcluster.cluster import LocalCluster

from tests.support.cluster import ClusterInfo
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real


def _pod(name: str, script: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    # Built on this machine and imported into the node's containerd: no registry.
                    "image": build.BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/busybox", "sh", "-c", script],
                }
            ],
        },
    }


def _finished(core: client.CoreV1Api, name: str, namespace: str) -> client.V1Pod:
    def terminated() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_until(terminated, timeout=120, what=f"pod {name} finished")


def test_a_job_pod_really_runs_and_writes_its_termination_message(api_client: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    metrics = {"accuracy": 0.91, "auc": 0.88}
    template = _pod("trainer", f"echo '{json.dumps(metrics)}' > /dev/termination-log")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "trainer"},
        "spec": {"backoffLimit": 0, "template": {"spec": template["spec"]}},
    }
    batch.create_namespaced_job(namespace, job)
    wait_until(
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in batch.read_namespaced_job_status("trainer", namespace).status.conditions or []
        ),
        timeout=120,
        what="Job trainer Complete",
    )
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=trainer").items or []
    assert pod.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in pod.metadata.annotations or {})
    (status,) = pod.status.container_statuses or []
    # Written by the kubelet from what runc ran: a containerd container ID and the image's digest.
    assert status.container_id.startswith("containerd://")
    assert status.image_id.startswith("sha256:")
    assert status.state.terminated.exit_code == 0
    assert json.loads(status.state.terminated.message) == metrics
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.NODE_POD_SUBNET)


def test_a_python_pod_from_the_debian_built_base_writes_its_metrics(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    manifest = _pod("python", "")
    program = (
        "import json, platform; "
        "open('/dev/termination-log', 'w').write(json.dumps({'python': platform.python_version()}))"
    )
    manifest["spec"]["containers"][0].update(image=build.PYTHON_IMAGE, command=["python3", "-c", program])
    core.create_namespaced_pod(namespace, manifest)
    terminated = _finished(core, "python", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message)["python"].startswith("3.")


def test_a_pod_reaches_the_api_server_with_in_cluster_credentials(api_client: client.ApiClient, namespace: str) -> None:
    """The `kubernetes` Service (kube-proxy to the API server's bridge address), its CA and a token."""
    core = client.CoreV1Api(api_client)
    manifest = _pod("in-cluster", "")
    program = (
        "import json, os, ssl, urllib.request\n"
        "secrets = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "context = ssl.create_default_context(cafile=secrets + 'ca.crt')\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "url = 'https://%s:%s/version' % (host, port)\n"
        "request = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + open(secrets + 'token').read()})\n"
        "version = json.load(urllib.request.urlopen(request, context=context, timeout=10))\n"
        "open('/dev/termination-log', 'w').write(json.dumps({'url': url, 'gitVersion': version['gitVersion']}))\n"
    )
    manifest["spec"]["automountServiceAccountToken"] = True
    manifest["spec"]["containers"][0].update(image=build.PYTHON_IMAGE, command=["python3", "-c", program])
    core.create_namespaced_pod(namespace, manifest)
    terminated = _finished(core, "in-cluster", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0, terminated.message
    # Verified TLS: the serving certificate names the Service address (and the bridge address).
    assert json.loads(terminated.message) == {"url": "https://10.96.0.1:443/version", "gitVersion": versions.KUBERNETES}


def test_a_failing_container_reports_its_real_exit_code(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _pod("fails", "echo 'out of data' > /dev/termination-log; exit 7"))
    terminated = _finished(core, "fails", namespace).status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (7, "Error", "out of data\n")


def test_a_pod_has_no_route_off_the_machine(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    # 198.51.100.1 (TEST-NET-2) stands for any address outside this machine.
    script = "/bin/busybox ip route > /dev/termination-log; if /bin/busybox ip route get 198.51.100.1; then exit 1; fi"
    core.create_namespaced_pod(namespace, _pod("routes", script))
    terminated = _finished(core, "routes", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0, "the pod found a route to an address outside the machine"
    routes = terminated.message.strip().splitlines()
    assert sorted(route.split()[0] for route in routes) == sorted([node.SERVICE_RANGE, node.NODE_POD_SUBNET])


def test_a_pod_that_routes_itself_out_is_stopped_by_the_node(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    manifest = _pod(
        "escape",
        f"/bin/busybox ip route add default via {node.NODE_IP} || exit 9; "
        "/bin/busybox nc -w 2 198.51.100.1 80 </dev/null 2>/dev/termination-log",
    )
    manifest["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
    core.create_namespaced_pod(namespace, manifest)
    terminated = _finished(core, "escape", namespace).status.container_statuses[0].state.terminated
    # The node's policy route answers for any destination off the machine: unreachable.
    assert "No route to host" in terminated.message, terminated.message


def test_a_service_reaches_its_pod_from_a_pod_and_from_this_machine(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    server = _pod(
        "web",
        "/bin/busybox mkdir -p /www && echo hello > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www",
        labels={"app": "web"},
    )
    server["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/index.html", "port": 8080},
        "periodSeconds": 1,
    }
    core.create_namespaced_pod(namespace, server)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster_ip = core.create_namespaced_service(namespace, service).spec.cluster_ip

    def ready() -> bool:
        slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        )
        return any(e.conditions.ready for s in slices.items or [] for e in s.endpoints or [])

    # The kubelet's readiness probe (from this machine to the pod, over the bridge) passes.
    wait_until(ready, timeout=60, what="Service web has a ready endpoint")
    wait_until(
        lambda: urllib.request.urlopen(f"http://{cluster_ip}/index.html", timeout=2).read() == b"hello\n",
        timeout=30,
        what=f"this machine reaches Service web at {cluster_ip} (kube-proxy)",
    )
    request = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 {cluster_ip} 80"
    core.create_namespaced_pod(namespace, _pod("client", f"{request} | /bin/busybox tail -n1 > /dev/termination-log"))
    terminated = _finished(core, "client", namespace).status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.message) == (0, "hello\n")


def test_a_container_over_its_memory_limit_is_oom_killed(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    manifest = _pod("hungry", "")
    manifest["spec"]["containers"][0].update(
        image=build.PYTHON_IMAGE,
        command=["python3", "-c", "x = bytearray(256 * 1024 * 1024)"],
        resources={"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
    )
    core.create_namespaced_pod(namespace, manifest)
    terminated = _finished(core, "hungry", namespace).status.container_statuses[0].state.terminated
    # The kernel's memory cgroup (v1 here) killed it, and the kubelet says so.
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def _listening_addresses(pid: int) -> set[str]:
    """IPv4/IPv6 addresses the TCP sockets of ``pid`` listen on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                # /proc prints each 32-bit word in host (little-endian) order.
                words = struct.unpack(f"<{len(raw) // 4}I", raw)
                addresses.add(socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words)))
    return addresses


def test_the_node_listens_on_loopback_and_its_bridge_only(cluster: ClusterInfo) -> None:
    local = LocalCluster()
    for name in ("containerd", "kubelet", "kube-proxy", "kube-apiserver"):
        addresses = _listening_addresses(int(str(local.state.processes[name]["pid"])))
        assert addresses <= {"127.0.0.1", "::1", node.NODE_IP}, f"{name} listens on {addresses}"
