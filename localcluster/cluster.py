"""Start, inspect and stop the local control plane (no Docker).

Profiles:
  api   etcd + kube-apiserver (RBAC on, default admission plugins)
  full  api + kube-controller-manager, kube-scheduler, kwok (a fake node, pod Stages)
        and a Prometheus server whose scrape targets come from a file_sd file
  real  api + kube-controller-manager, kube-scheduler and a real node instead of kwok:
        containerd, runc, the CNI bridge and a kubelet (node.py); pods really run

Everything listens on 127.0.0.1 at ports chosen free at first start, except on the
`real` profile, where the API server, Prometheus and the kubelet listen on the node's bridge address
(10.244.0.1, which exists only on this machine): pods reach the API server there, and
through the ``kubernetes`` Service (10.96.0.1:443), which kube-proxy turns into that
address, so in-cluster configuration works for pods such as the operator's (which reads
Prometheus at the same address). State (PKI, etcd
data, logs, PIDs) lives in one directory; ``cluster.env`` there tells scripts and
people where the cluster is. Processes are stopped by their recorded PID only, and
only after checking that the PID still runs the binary that was started.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import build, node, pki, versions
from localcluster.errors import ClusterError, tail

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES_DIR = Path(__file__).resolve().parent / "stages"
# Where manifests/ installs the operator, and as whom it runs (charts/perennial defaults).
OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT = "perennial-system", "perennial"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE = "kwok-node-0"
LOOPBACK = "127.0.0.1"

# Start order; stop runs in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "kwok",
    "prometheus",
    "pod-targets",
)
PROFILE_COMPONENTS = {
    "api": ("etcd", "kube-apiserver"),
    "full": ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "prometheus"),
    "real": (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
        "prometheus",
        "pod-targets",
    ),
}
# The `real` profile's Prometheus scrapes the operator and model server pods: a harness
# process (localcluster/podtargets.py) lists pods as this read-only ServiceAccount and keeps
# a file_sd file in sync (Debian's Prometheus has no kubernetes_sd).
POD_TARGETS_RBAC = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: perennial-local-prometheus, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: perennial-local-prometheus}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: perennial-local-prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: perennial-local-prometheus}
subjects:
- {kind: ServiceAccount, name: perennial-local-prometheus, namespace: kube-system}
"""


def state_dir() -> Path:
    return Path(os.environ.get("PERENNIAL_CLUSTER_DIR", REPO_ROOT / ".localcluster"))


@dataclass
class State:
    """What `up` recorded: ports, and the PID and binary of every running component."""

    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, dict[str, object]] = field(default_factory=dict)
    # Where the API server listens and what it advertises: loopback, or on the `real`
    # profile the node's bridge address (pods reach it there).
    api_address: str = LOOPBACK
    # The `real` node's operator image as imported (its tag is a hash of what went into it).
    operator_image: str = ""
    # The churn workload's images (examples/churn) as imported: component -> name.
    churn_images: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> State:
        path = directory / "state.json"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(
            ports=raw.get("ports", {}),
            processes=raw.get("processes", {}),
            api_address=raw.get("api_address", LOOPBACK),
            operator_image=raw.get("operator_image", ""),
            churn_images=raw.get("churn_images", {}),
        )

    def save(self, directory: Path) -> None:
        tmp = directory / "state.json.tmp"
        saved: dict[str, object] = {"ports": self.ports, "processes": self.processes}
        if self.api_address != LOOPBACK:
            saved["api_address"] = self.api_address
        if self.operator_image:
            saved["operator_image"] = self.operator_image
        if self.churn_images:
            saved["churn_images"] = self.churn_images
        tmp.write_text(json.dumps(saved, indent=2))
        os.replace(tmp, directory / "state.json")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_alive(record: dict[str, object]) -> bool:
    """True if the recorded PID still runs the recorded binary (PIDs get reused)."""
    pid = int(str(record["pid"]))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # An empty cmdline means the process is between fork and exec: it is ours, starting.
    if cmdline[0] and cmdline[0].decode(errors="replace") != record["binary"]:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # A zombie (state Z) has exited; it only waits for its parent to reap it.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One `up`/`down` at a time per state directory (parallel test workers race here)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    log: Path | None = None,
    record: dict[str, object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record is not None and not _process_alive(record):
            raise ClusterError(f"{what} exited during start; log: {log}\n{tail(log) if log else ''}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
            pass
        time.sleep(0.25)
    raise ClusterError(f"{what} not ready after {timeout:.0f}s; log: {log}\n{tail(log) if log else ''}")


class LocalCluster:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or state_dir()
        self.pki = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.env_file = self.dir / "cluster.env"
        self.admin_kubeconfig = self.dir / "admin.kubeconfig"
        self.targets_file = self.dir / "prometheus" / "targets.json"
        self.binaries = build.binary_paths()
        self.state = State.load(self.dir)

    # ------------------------------------------------------------------ queries
    def running(self) -> list[str]:
        return [name for name, rec in self.state.processes.items() if _process_alive(rec)]

    def api_url(self) -> str:
        return f"https://{self.state.api_address}:{self.state.ports['kube-apiserver']}"

    def prometheus_url(self) -> str:
        # The API server's address: on the `real` profile the bridge's, so the operator's pod
        # reaches Prometheus too (and it is still this machine's own address).
        return f"http://{self.state.api_address}:{self.state.ports['prometheus']}"

    def _admin_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _get(self, url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return int(response.status), bytes(response.read())

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.binaries["kubectl"]), "--kubeconfig", str(self.admin_kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def operator_kubeconfig(self) -> Path:
        """Install the operator's identity as `kubectl apply -k manifests/` does (its namespace,
        ServiceAccount, RBAC and the admission policy on TrainingJob ownership, not the
        Deployment: pods are simulated here) and return a kubeconfig with only that
        ServiceAccount's token, for an operator process run on this machine (`make run`,
        `make demo`). Its Lease lives in the install's namespace, where its RBAC allows one."""
        manifests = REPO_ROOT / "manifests"
        for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "ownership-policy.yaml"):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifests / name))
        token = self.kubectl("create", "token", OPERATOR_SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=24h")
        path = self.dir / "operator.kubeconfig"
        pki.write_token_kubeconfig(path, self.pki, self.api_url(), OPERATOR_SERVICE_ACCOUNT, token.strip())
        return path

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until every named CRD (``crd/<plural>.<group>``) is Established.

        Not ``kubectl wait``: on a CRD created a moment ago ``status.conditions`` may still
        be null, and kubectl wait then fails at once instead of waiting (seen in CI).
        """

        def established() -> bool:
            try:
                listed = json.loads(self.kubectl("get", *crds, "-o", "json"))
            except ClusterError:
                return False
            items = listed.get("items", [listed])  # a List for several names
            return len(items) == len(crds) and all(
                any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
                for item in items
            )

        _wait(f"{', '.join(crds)} Established", established, timeout)

    # ------------------------------------------------------------------ up
    def up(self, profile: str) -> Path:
        with _locked(self.dir):
            self.state = State.load(self.dir)
            wanted = PROFILE_COMPONENTS[profile]
            running = set(self.running())
            # The API tier is the foundation: if it is not whole, start over cleanly.
            if self.state.processes and not {"etcd", "kube-apiserver"} <= running:
                self._stop_all()
                running = set()
            missing = [name for name in wanted if name not in running]
            if missing:
                build.ensure_binaries(profile)
                self.binaries = build.binary_paths()
                try:
                    self._start(missing, profile)
                except BaseException:
                    self._stop_all()
                    raise
            self._write_env()
            return self.env_file

    def _starters(self) -> dict[str, Callable[[], None]]:
        return {
            "etcd": self._start_etcd,
            "kube-apiserver": self._start_apiserver,
            "kube-controller-manager": self._start_controller_manager,
            "kube-scheduler": self._start_scheduler,
            "containerd": self._start_containerd,
            "kubelet": self._start_kubelet,
            "kube-proxy": self._start_kube_proxy,
            "kwok": self._start_kwok,
            "prometheus": self._start_prometheus,
            "pod-targets": self._start_pod_targets,
        }

    def _start(self, components: list[str], profile: str = "api") -> None:
        if not self.state.processes:
            self._prepare_fresh(profile)
        starters = self._starters()
        for name in COMPONENTS:
            if name in components:
                print(f"  starting {name}", file=sys.stderr, flush=True)
                starters[name]()
        if "kwok" in components:
            self._wait_for_node()
        if "kubelet" in components:
            self._wait_for_real_node()
        if "kube-controller-manager" in components:
            _wait(
                "the default ServiceAccount (kube-controller-manager's serviceaccount controller)",
                lambda: bool(self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name")),
                90,
                self.logs / "kube-controller-manager.log",
            )

    # ------------------------------------------------------------------ faults
    def stop_component(self, name: str) -> None:
        """Stop one running component, keeping its data and port (fault-injection tests)."""
        with _locked(self.dir):
            self.state = State.load(self.dir)
            self._stop(name)

    def start_component(self, name: str) -> None:
        """Start a stopped component again on its old port, with its old data; wait until healthy."""
        with _locked(self.dir):
            self.state = State.load(self.dir)
            record = self.state.processes.get(name)
            if record is not None and _process_alive(record):
                return
            self._starters()[name]()

    def restart_component(self, name: str) -> None:
        self.stop_component(name)
        self.start_component(name)

    def _prepare_fresh(self, profile: str = "api") -> None:
        for sub in ("pki", "etcd", "prometheus", "kube-controller-manager", "kube-scheduler"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for old_log in self.logs.glob("*.log"):
            old_log.unlink()
        self.state = State(
            ports={
                name: _free_port()
                for name in (*COMPONENTS, "etcd-peer", "kubelet-healthz", "kube-proxy-metrics")
                if name != "pod-targets"  # it listens on nothing
            }
        )
        # The `real` profile's pods reach the API server on the node's bridge address.
        self.state.api_address = node.NODE_IP if "kubelet" in PROFILE_COMPONENTS[profile] else LOOPBACK
        pki.generate(self.pki, extra_sans=() if self.state.api_address == LOOPBACK else (f"IP:{node.NODE_IP}",))
        server = self.api_url()
        for client in pki.CLIENTS:
            pki.write_kubeconfig(self.dir / f"{client.name}.kubeconfig", self.pki, server, client.name)
        self.state.save(self.dir)

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None, binary: str | None = None
    ) -> dict[str, object]:
        binary = binary or str(self.binaries[name])
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,
                env=env,
            )
        record: dict[str, object] = {"pid": process.pid, "binary": binary, "log": str(log_path)}
        self.state.processes[name] = record
        self.state.save(self.dir)
        return record

    def _start_etcd(self) -> None:
        port, peer = self.state.ports["etcd"], self.state.ports["etcd-peer"]
        record = self._spawn(
            "etcd",
            [
                "--name=local",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{port}",
                f"--advertise-client-urls=http://127.0.0.1:{port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=local=http://127.0.0.1:{peer}",
                # A throwaway test cluster: durability is not worth an fsync per write.
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        _wait(
            "etcd",
            lambda: b'"health":"true"' in self._get(f"http://127.0.0.1:{port}/health")[1],
            60,
            self.logs / "etcd.log",
            record,
        )

    def _start_apiserver(self) -> None:
        if self.state.api_address != LOOPBACK:
            # The address to listen on is the bridge's: make it first.
            self._ensure_node_network()
        p = self.pki
        kubelet_client = []
        # A cluster whose PKI predates this identity (started by older code) runs without it.
        if (p / "apiserver-kubelet-client.crt").exists():
            kubelet_client = [
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            ]
        record = self._spawn(
            "kube-apiserver",
            [
                *kubelet_client,
                # The real node's name resolves nowhere: dial its InternalIP, never ask a DNS server.
                "--kubelet-preferred-address-types=InternalIP",
                f"--etcd-servers=http://127.0.0.1:{self.state.ports['etcd']}",
                # 127.0.0.1, or on the `real` profile the bridge address only (no other
                # interface): the `kubernetes` Service's endpoint is the advertised address.
                f"--bind-address={self.state.api_address}",
                f"--advertise-address={self.state.api_address}",
                f"--secure-port={self.state.ports['kube-apiserver']}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                # As in kind and most clusters: Pod Security admission, not this flag, is the boundary.
                "--allow-privileged=true",
                "--profiling=false",
                "--enable-garbage-collector=true",
                "--event-ttl=1h",
            ],
        )
        context = self._admin_ssl()
        _wait(
            "kube-apiserver",
            lambda: self._get(f"{self.api_url()}/readyz", context)[0] == 200,
            120,
            self.logs / "kube-apiserver.log",
            record,
        )

    def _component_base_args(self, identity: str, name: str) -> list[str]:
        kubeconfig = self.dir / f"{identity}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.state.ports[name]}",
            f"--cert-dir={self.dir / name}",
            "--leader-elect=false",
        ]

    def _wait_healthz(self, name: str, record: dict[str, object]) -> None:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed serving cert of a loopback component
        _wait(
            name,
            lambda: self._get(f"https://127.0.0.1:{self.state.ports[name]}/healthz", insecure)[0] == 200,
            90,
            self.logs / f"{name}.log",
            record,
        )

    def _start_controller_manager(self) -> None:
        record = self._spawn(
            "kube-controller-manager",
            [
                *self._component_base_args("controller-manager", "kube-controller-manager"),
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-job-syncs=20",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
            ],
        )
        self._wait_healthz("kube-controller-manager", record)

    def _start_scheduler(self) -> None:
        record = self._spawn(
            "kube-scheduler",
            [
                *self._component_base_args("scheduler", "kube-scheduler"),
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        self._wait_healthz("kube-scheduler", record)

    def _kwok_module_dir(self) -> Path:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{versions.KWOK}"],
            capture_output=True,
            text=True,
            cwd=self.dir,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
        )
        if result.returncode != 0:
            raise ClusterError(f"go mod download sigs.k8s.io/kwok@{versions.KWOK} failed: {result.stderr}")
        return Path(json.loads(result.stdout)["Dir"])

    def _start_kwok(self) -> None:
        module = self._kwok_module_dir()
        # kwok's own Stage CRD and node Stages ship inside its module; the pod Stages
        # are ours, because they carry the simulation contract (stages/pods.yaml).
        self.kubectl("apply", "--server-side", "-f", str(module / "kustomize/crd/bases/kwok.x-k8s.io_stages.yaml"))
        self.wait_established("crd/stages.kwok.x-k8s.io")
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            str(module / "kustomize/stage/node/fast/node-initialize.yaml"),
            "-f",
            str(module / "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"),
            "-f",
            str(STAGES_DIR / "pods.yaml"),
        )
        record = self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.dir / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.state.ports['kwok']}",
                "--enable-crds=Stage",
            ],
        )
        _wait(
            "kwok",
            lambda: self._get(f"http://127.0.0.1:{self.state.ports['kwok']}/healthz")[0] == 200,
            60,
            self.logs / "kwok.log",
            record,
        )

    def _wait_for_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": FAKE_NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            # Room for the scale benchmark's N=3000: a serving pod per model beside the Job pods.
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "10000", "nvidia.com/gpu": "8"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "10000", "nvidia.com/gpu": "8"},
            },
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(node))
        _wait(
            f"fake node {FAKE_NODE} Ready (kwok)",
            lambda: (
                self.kubectl(
                    "get", "node", FAKE_NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
                ).strip()
                == "True"
            ),
            60,
            self.logs / "kwok.log",
        )

    # ------------------------------------------------------------------ the real node
    def _node_paths(self) -> node.NodePaths:
        return node.NodePaths(self.dir / "node")

    def ctr(self, *args: str) -> str:
        """``ctr`` against the node's containerd, in the CRI's namespace."""
        socket_path = self._node_paths().containerd_socket
        result = subprocess.run(
            [str(self.binaries["ctr"]), "--address", str(socket_path), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _ensure_node_network(self) -> None:
        """The node's bridge (checked, then made), before the first component that listens on it."""
        paths = self._node_paths()
        node.check_host(fresh=not paths.containerd.exists())
        node.ensure_bridge()
        # From now on this cluster owns the bridge: `down` (or a failed start) removes it.
        paths.containerd.mkdir(parents=True, exist_ok=True)

    def _start_containerd(self) -> None:
        paths = self._node_paths()
        self._ensure_node_network()
        for directory in (paths.containerd, paths.cni_conf_dir, paths.cni_ipam_dir):
            directory.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(
            node.containerd_config(paths, self.binaries["runc"], build.cni_bin_dir(), build.PAUSE_IMAGE)
        )
        (paths.cni_conf_dir / f"10-{node.CNI_NETWORK}.conflist").write_text(node.cni_conflist(paths))
        # containerd finds its runc shim on PATH.
        env = {**os.environ, "PATH": f"{self.binaries['containerd'].parent}:{os.environ.get('PATH', '')}"}
        record = self._spawn("containerd", ["--config", str(paths.containerd_config)], env)
        _wait(
            "containerd",
            lambda: paths.containerd_socket.exists() and bool(self.ctr("version")),
            60,
            self.logs / "containerd.log",
            record,
        )
        # No registry: the node's images are built here and imported (images.py).
        for archive in build.ensure_images().values():
            self.ctr("images", "import", "--platform", "linux/amd64", str(archive))
        # The operator's own image, from the repository's Dockerfile (built once per content).
        name, archive = build.operator_image(REPO_ROOT)
        self.ctr("images", "import", "--platform", "linux/amd64", str(archive))
        self.state.operator_image = name
        # The reference workload's images (examples/churn), built the same way.
        for component, (name, archive) in build.churn_images(REPO_ROOT).items():
            self.ctr("images", "import", "--platform", "linux/amd64", str(archive))
            self.state.churn_images[component] = name
        self.state.save(self.dir)

    def _start_kubelet(self) -> None:
        paths = self._node_paths()
        for directory in (paths.kubelet, paths.pod_logs):
            directory.mkdir(parents=True, exist_ok=True)
        paths.resolv_conf.write_text("")
        paths.kubelet_config.write_text(
            node.kubelet_config(
                paths, self.state.ports["kubelet"], self.state.ports["kubelet-healthz"], self.pki / "ca.crt"
            )
        )
        node.save_sysctls(paths)
        record = self._spawn("kubelet", node.kubelet_args(paths, self.dir / "kubelet.kubeconfig"))
        _wait(
            "kubelet",
            lambda: self._get(f"http://127.0.0.1:{self.state.ports['kubelet-healthz']}/healthz")[0] == 200,
            90,
            self.logs / "kubelet.log",
            record,
        )

    def _start_kube_proxy(self) -> None:
        config = self._node_paths().root / "kube-proxy.json"
        ports = self.state.ports
        config.write_text(
            node.kube_proxy_config(self.dir / "kube-proxy.kubeconfig", ports["kube-proxy"], ports["kube-proxy-metrics"])
        )
        # Its nftables mode runs `nft`: Debian's, from the cache (build.py), first on PATH.
        env = {**os.environ, "PATH": f"{self.binaries['nft'].parent}:{os.environ.get('PATH', '')}"}
        record = self._spawn("kube-proxy", [f"--config={config}", "--v=1"], env)
        _wait(
            "kube-proxy",
            lambda: self._get(f"http://127.0.0.1:{ports['kube-proxy']}/healthz")[0] == 200,
            90,
            self.logs / "kube-proxy.log",
            record,
        )

    def _wait_for_real_node(self) -> None:
        _wait(
            f"node {node.NODE_NAME} Ready (kubelet)",
            lambda: (
                self.kubectl(
                    "get", "node", node.NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
                ).strip()
                == "True"
            ),
            120,
            self.logs / "kubelet.log",
        )

    def _drain_real_node(self) -> None:
        """Let the kubelet stop the node's pods (CNI teardown included) before the node goes away."""
        running = set(self.running())
        if not {"kube-apiserver", "kubelet", "containerd"} <= running:
            return
        # Nothing may recreate the pods while they go.
        self._stop("kube-controller-manager")
        try:
            self.kubectl(
                "delete",
                "pods",
                "--all-namespaces",
                f"--field-selector=spec.nodeName={node.NODE_NAME}",
                "--grace-period=1",
                "--wait=false",
            )
            _wait("the node's pods stopped", lambda: not self.ctr("tasks", "list", "--quiet").strip(), 60)
        except ClusterError as error:
            print(f"  draining {node.NODE_NAME} did not finish, cleaning up by force: {error}", file=sys.stderr)

    def _clean_real_node(self) -> None:
        """Undo what the node did on this machine: containers, shims, mounts, bridge, sysctls, cgroups."""
        paths = self._node_paths()
        if not paths.containerd.exists():
            return
        node.kill_containers(self.binaries["runc"], paths)
        node.kill_shims(self.binaries["containerd-shim-runc-v2"], paths)
        node.unmount_under(self.dir)
        node.remove_nft_tables(self.binaries["nft"])
        node.remove_bridge()
        node.restore_sysctls(paths)
        node.remove_pod_cgroups()
        shutil.rmtree(paths.root, ignore_errors=True)

    def _start_prometheus(self) -> None:
        directory = self.dir / "prometheus"
        directory.mkdir(parents=True, exist_ok=True)
        if not self.targets_file.exists():
            self.targets_file.write_text("[]\n")
        config = directory / "prometheus.yml"
        config.write_text(
            "# Generated by localcluster; scrape targets live in the file_sd file below.\n"
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n"
            "scrape_configs:\n"
            "- job_name: prometheus\n  static_configs:\n"
            f"  - targets: ['{self.state.api_address}:{self.state.ports['prometheus']}']\n"
            "- job_name: file_sd\n  file_sd_configs:\n"
            f"  - files: ['{self.targets_file}']\n    refresh_interval: 1s\n"
        )
        if self.state.api_address != LOOPBACK:
            # The `real` profile: the operator and model server pods, on the bridge (podtargets.py).
            config.write_text(
                config.read_text() + "- job_name: pods\n  file_sd_configs:\n"
                f"  - files: ['{self.pod_targets_file}']\n    refresh_interval: 1s\n"
            )
        record = self._spawn(
            "prometheus",
            [
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.state.api_address}:{self.state.ports['prometheus']}",
                "--storage.tsdb.retention.time=1d",
                "--web.enable-lifecycle",
            ],
        )
        _wait(
            "prometheus",
            lambda: self._get(f"{self.prometheus_url()}/-/ready")[0] == 200,
            60,
            self.logs / "prometheus.log",
            record,
        )

    @property
    def pod_targets_file(self) -> Path:
        return self.dir / "prometheus" / "pods.json"

    def _start_pod_targets(self) -> None:
        """Keep the `pods` job's file_sd file in sync with the API server (podtargets.py)."""
        directory = self.dir / "prometheus"
        directory.mkdir(parents=True, exist_ok=True)
        if not self.pod_targets_file.exists():
            self.pod_targets_file.write_text("[]\n")
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=POD_TARGETS_RBAC)
        token = self.kubectl("create", "token", "perennial-local-prometheus", "-n", "kube-system", "--duration=24h")
        token_file = directory / "pod-targets.token"
        token_file.touch(mode=0o600)
        token_file.write_text(token.strip())
        record = self._spawn(
            "pod-targets",
            [
                "-m",
                "localcluster.podtargets",
                f"--server={self.api_url()}",
                f"--ca={self.pki / 'ca.crt'}",
                f"--token-file={token_file}",
                f"--output={self.pod_targets_file}",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            binary=sys.executable,
        )
        _wait(
            "pod-targets (its first listing of pods)",
            lambda: "listed pods" in (self.logs / "pod-targets.log").read_text(),
            30,
            self.logs / "pod-targets.log",
            record,
        )

    def _write_env(self) -> None:
        running = self.running()
        lines = [
            "# Written by `make cluster-up`; source it: `. " + str(self.env_file) + "`",
            f"KUBECONFIG={self.admin_kubeconfig}",
            f"PERENNIAL_CLUSTER_PROFILE={_profile_of(running)}",
            f"KUBECTL={self.binaries['kubectl']}",
        ]
        if "containerd" in running:
            lines += [
                f"CONTAINERD_ADDRESS={self._node_paths().containerd_socket}",
                f"CTR={self.binaries['ctr']}",
                f"REAL_NODE={node.NODE_NAME}",
                f"HELM={self.binaries['helm']}",
                f"OPERATOR_IMAGE={self.state.operator_image}",
                *(
                    f"CHURN_{component.upper()}_IMAGE={name}"
                    for component, name in sorted(self.state.churn_images.items())
                ),
            ]
        if "prometheus" in running:
            lines += [
                f"PROMETHEUS_URL={self.prometheus_url()}",
                f"PROMETHEUS_TARGETS_FILE={self.targets_file}",
                f"PROMTOOL={self.binaries['promtool']}",
                f"HELM={self.binaries['helm']}",
            ]
        content = "\n".join(lines) + "\n"
        if not self.env_file.exists() or self.env_file.read_text() != content:
            self.env_file.write_text(content)

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        with _locked(self.dir):
            self.state = State.load(self.dir)
            self._stop_all()
            for sub in ("pki", "etcd", "prometheus", "kube-controller-manager", "kube-scheduler"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
            for leftover in ("state.json", "cluster.env", *(f"{c.name}.kubeconfig" for c in pki.CLIENTS)):
                (self.dir / leftover).unlink(missing_ok=True)

    def _stop(self, name: str) -> None:
        record = self.state.processes.get(name)
        if record is None:
            return
        if _process_alive(record):
            pid = int(str(record["pid"]))
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _process_alive(record) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _process_alive(record):
                os.kill(pid, signal.SIGKILL)
        del self.state.processes[name]
        self.state.save(self.dir)

    def _stop_all(self) -> None:
        self._drain_real_node()
        for name in reversed(COMPONENTS):
            self._stop(name)
        self._clean_real_node()
        self.state = State()
        if (self.dir / "state.json").exists():
            (self.dir / "state.json").unlink()

    # ------------------------------------------------------------------ status
    def status(self) -> str:
        self.state = State.load(self.dir)
        if not self.state.processes:
            return "no local cluster (run `make cluster-up`)"
        lines = []
        for name in COMPONENTS:
            record = self.state.processes.get(name)
            if record is None:
                continue
            alive = "running" if _process_alive(record) else "DEAD"
            lines.append(f"{name:<24} pid {record['pid']:<8} {alive:<8} log {record['log']}")
        return "\n".join(lines)


def _profile_of(running: list[str]) -> str:
    if "kubelet" in running:
        return "real"
    return "full" if "kwok" in running else "api"
