"""Scale benchmark: the operator against a direct async client on the same API server.

``python -m benchmarks.scale --n 100 --n 300`` runs, for each N, on the running (or
started) full local cluster:

1. **operator**: a fresh namespace, ``perennial run`` as a subprocess watching only it,
   N ModelDeployments + N DriftPolicies created at once; timed until every
   ModelDeployment serves version 1 with ``Ready=True``; then ``--idle`` seconds (120)
   with N policies evaluating.
2. **baseline**: another fresh namespace; at full concurrency, the same N
   ModelDeployments and N DriftPolicies, and per model the same children and status
   writes created directly (TrainingJob, its Job, Deployment and Service), timed the same
   way: from the first POST until every Deployment is Available and every
   ModelDeployment's status says Ready.

Each namespace is deleted, and waited for, before the next phase starts.

Write counts come from the API server's own ``apiserver_request_total`` (diffed around
each phase). That counter is cluster-wide: ``jobs/status``, ``pods``, ``events`` and such
include what kube-controller-manager, the scheduler and kwok write for the same objects,
in both phases alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from localcluster.cluster import LocalCluster
from tests.support.cluster import ScrapeTargets

from benchmarks import recovery
from benchmarks.recovery import RECOVER_MODELS, Recovery

REPO_ROOT = Path(__file__).resolve().parent.parent
GROUP = "perennial.dev"
VERSION = "v1alpha1"
PERENNIAL = f"/apis/{GROUP}/{VERSION}"
SIM = {"sim.perennial.dev/result": json.dumps({"metrics": {"auc": 0.93}})}
TRAINER = "registry.example/bench-trainer:1.0"
SERVER = "registry.example/bench-server:1.0"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
# Resources whose writes the table shows (resource or resource/subresource).
RESOURCES = (
    "modeldeployments",
    "modeldeployments/status",
    "driftpolicies",
    "driftpolicies/status",
    "trainingjobs",
    "trainingjobs/status",
    "jobs",
    "jobs/status",
    "deployments",
    "deployments/status",
    "services",
    "events",
    "pods",
    "pods/status",
    "replicasets",
)
IDLE_SECONDS = 120.0  # two evaluations of every policy (interval: 1m)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Options:
    idle_seconds: float = IDLE_SECONDS
    api_qps: float = 0.0  # the operator's PERENNIAL_API_QPS (0: no client-side limit, the default)
    baseline: bool = True  # False: the operator phase only (quicker iterations; ratio NaN)
    fresh_cluster: bool = False  # restart the local cluster (wiped) before every phase
    recover: int = RECOVER_MODELS  # models whose time to recover is measured after the idle window (0: none)
    # The `perennial` executable to run; `make bench` passes one from a virtualenv with the
    # runtime dependencies only, as in the image.
    operator: Path = Path(sys.executable).parent / "perennial"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


# ---------------------------------------------------------------- API access
OVERLOADED = (500, 502, 503, 504)


class Api:
    """A thin async client with the admin certificate; no rate limit (full concurrency)."""

    def __init__(self, server: str, context: ssl.SSLContext) -> None:
        self.server = server
        self.context = context
        self.throttled = 0  # 429 answers retried (after Retry-After)
        self.overloaded = 0  # 5xx answers of an overloaded API server, retried
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", retries: int = 8
    ) -> dict[str, Any]:
        """One request, retried as a controller would: 429 after its Retry-After, and the API
        server's own overload answers (500, 502, 503, 504: at full concurrency a request can
        time out inside it) with a growing pause. A POST retried after such an answer may
        find its object created by the first try: that 409 is the object, read back."""
        data = None if body is None else json.dumps(body)
        retried_after_overload = False
        for attempt in range(retries):
            async with self.session.request(
                method, self.server + path, data=data, headers={"Content-Type": content_type}
            ) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
            last = attempt == retries - 1
            if status == 429 and not last:
                self.throttled += 1
                await asyncio.sleep(float(retry_after or "1"))
                continue
            if status in OVERLOADED and not last:
                self.overloaded += 1
                retried_after_overload = True
                await asyncio.sleep(min(2.0**attempt, 30.0))
                continue
            if status == 409 and method == "POST" and retried_after_overload and isinstance(body, Mapping):
                return await self.request("GET", f"{path}/{body['metadata']['name']}")
            if status >= 400:
                raise RuntimeError(f"{method} {path}: {status} {text[:300]}")
            result: dict[str, Any] = json.loads(text) if text else {}
            return result
        raise RuntimeError(f"{method} {path}: retries exhausted")

    async def merge_status(self, path: str, status: Mapping[str, Any]) -> None:
        await self.request("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")

    async def metrics_text(self) -> str:
        async with self.session.get(self.server + "/metrics") as response:
            response.raise_for_status()
            return await response.text()


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def write_counts(api: Api) -> Counter[tuple[str, str]]:
    """apiserver_request_total for write verbs, summed by (verb, resource[/subresource])."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in (await api.metrics_text()).splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels["verb"], resource)] += int(float(match["value"]))
    return counts


def per_object(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], n: int) -> dict[str, float]:
    result: dict[str, float] = {}
    for key in sorted(set(after) | set(before)):
        delta = after[key] - before[key]
        verb, resource = key
        if delta > 0 and resource in RESOURCES:
            result[f"{verb} {resource}"] = delta / n
    return result


class Watcher:
    """One list+watch of a collection; records when each object first satisfies ``done``.

    ``path`` may carry a query (a label or field selector). Waiting for one object parks
    a future under its name, woken when it is done: thousands of waiters (the baseline's
    one per model) cost nothing per event.
    """

    def __init__(self, api: Api, path: str, done: Callable[[dict[str, Any]], bool]) -> None:
        self.api = api
        self.path = path
        self.done = done
        self.first_seen: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self._waiters: dict[Any, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    def _observe(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        moment = time.monotonic()
        self.objects[name] = obj
        self.first_seen.setdefault(name, moment)
        if name not in self.done_at and self.done(obj):
            self.done_at[name] = moment
            self.changed.set()
            self._wake(name)

    def _wake(self, key: Any) -> None:
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(None)

    async def _wait_key(self, key: Any, reached: Mapping[Any, float], limit: float) -> None:
        if key in reached:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        try:
            await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise TimeoutError(f"{self.path}: {key} not reached after {limit:.0f}s") from None

    async def start(self) -> None:
        listed = await self.api.request("GET", self.path)
        for item in listed.get("items", []):
            self._observe(item)
        self._task = asyncio.create_task(self._run(listed["metadata"]["resourceVersion"]))

    async def _run(self, resource_version: str) -> None:
        separator = "&" if "?" in self.path else "?"
        while True:
            url = (
                f"{self.api.server}{self.path}{separator}watch=1&allowWatchBookmarks=true"
                f"&resourceVersion={resource_version}"
            )
            try:
                async with self.api.session.get(url) as response:
                    async for raw in response.content:
                        event = json.loads(raw)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            listed = await self.api.request("GET", self.path)
                            for item in listed.get("items", []):
                                self._observe(item)
                            resource_version = listed["metadata"]["resourceVersion"]
                            break
                        resource_version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._observe(obj)
            except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
                await asyncio.sleep(0.2)

    async def wait_for(self, names: set[str], limit: float) -> None:
        deadline = time.monotonic() + limit
        while not names <= self.done_at.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(names - self.done_at.keys())
                raise TimeoutError(f"{self.path}: {len(missing)} not done, e.g. {missing[:3]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    async def wait_one(self, name: str, limit: float) -> None:
        await self._wait_key(name, self.done_at, limit)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StepWatcher(Watcher):
    """A watch that records when each model first reaches each step.

    ``steps`` maps a step's name to a probe: the model an object is at that step for, or
    None. ``reached[(step, model)]`` is the monotonic time the watch first saw it.
    """

    def __init__(self, api: Api, path: str, steps: Mapping[str, Callable[[dict[str, Any]], str | None]]) -> None:
        super().__init__(api, path, lambda _: False)
        self.steps = steps
        self.reached: dict[tuple[str, str], float] = {}

    def _observe(self, obj: dict[str, Any]) -> None:
        super()._observe(obj)
        moment = time.monotonic()
        for step, probe in self.steps.items():
            model = probe(obj)
            if model is not None and (step, model) not in self.reached:
                self.reached[(step, model)] = moment
                self._wake((step, model))

    async def wait_step(self, step: str, model: str, limit: float) -> None:
        await self._wait_key((step, model), self.reached, limit)


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def md_ready(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return obj.get("status", {}).get("servingVersion") == "1" and ready is not None and ready["status"] == "True"


def is_true(obj: Mapping[str, Any], type_: str) -> bool:
    found = condition(obj, type_)
    return found is not None and found["status"] == "True"


def job_complete(obj: dict[str, Any]) -> bool:
    cond = condition(obj, "Complete")
    return cond is not None and cond["status"] == "True"


def deployment_available(obj: dict[str, Any]) -> bool:
    cond = condition(obj, "Available")
    status = obj.get("status", {})
    return (
        cond is not None
        and cond["status"] == "True"
        and status.get("updatedReplicas", 0) >= 1
        and status.get("availableReplicas", 0) >= 1
    )


# ---------------------------------------------------------------- manifests
def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "training": {
                "image": TRAINER,
                "dataset": {"uri": "s3://data/bench/", "version": "1"},
                "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
                "validation": [{"metric": "auc", "min": 0.9}],
                "podAnnotations": SIM,
            },
            "serving": {"image": SERVER, "replicas": 1},
        },
    }


def drift_policy(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": f"{name}-drift"},
        "spec": {
            "targetRef": {"name": name},
            "interval": "1m",
            "metrics": [{"name": "absent", "query": "max(bench_absent_metric)", "max": 1}],
        },
    }


def owner(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def labels(model: str, version: str | None) -> dict[str, str]:
    result = {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/model": model}
    if version is not None:
        result["perennial.dev/version"] = version
    return result


def training_job(md: Mapping[str, Any]) -> dict[str, Any]:
    name = md["metadata"]["name"]
    spec = dict(md["spec"]["training"])
    spec.update({"model": name, "version": "1", "trigger": {"reason": "Initial"}})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": f"{name}-v1", "labels": labels(name, "1"), "ownerReferences": [owner(md)]},
        "spec": spec,
    }


def batch_job(tj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """What the operator's desired_job builds for this TrainingJob (env, restricted pod, owner)."""
    name = tj["metadata"]["name"]
    model = tj["spec"]["model"]
    uri = f"s3://models/{namespace}/{model}/1"
    job_labels = {**labels(model, "1"), "perennial.dev/training-job": name}
    env = [
        {"name": "PERENNIAL_MODEL", "value": model},
        {"name": "PERENNIAL_VERSION", "value": "1"},
        {"name": "PERENNIAL_MODEL_URI", "value": uri},
        {"name": "PERENNIAL_DATASET_URI", "value": "s3://data/bench/"},
        {"name": "PERENNIAL_DATASET_VERSION", "value": "1"},
        {"name": "PERENNIAL_HYPERPARAMETERS", "value": "{}"},
        {"name": "PERENNIAL_TRIGGER", "value": json.dumps({"reason": "Initial"})},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": job_labels, "ownerReferences": [owner(tj)]},
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 86400,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "metadata": {"labels": job_labels, "annotations": dict(SIM)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": TRAINER,
                            "env": env,
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "securityContext": RESTRICTED,
                        }
                    ],
                },
            },
        },
    }


def deployment(md: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    name = md["metadata"]["name"]
    selector = {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/model": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(name, "1"), "ownerReferences": [owner(md)]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": labels(name, "1")},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "server",
                            "image": SERVER,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "MODEL_URI", "value": f"s3://models/{namespace}/{name}/1"}],
                            "securityContext": RESTRICTED,
                        }
                    ],
                },
            },
        },
    }


def service(md: Mapping[str, Any]) -> dict[str, Any]:
    name = md["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name, None), "ownerReferences": [owner(md)]},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/model": name},
            "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def cond(type_: str, status: str, reason: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": now_iso()}


# ---------------------------------------------------------------- namespaces and the operator
async def create_namespace(api: Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await api.request(
        "POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": {"perennial.dev/bench": "true"}}}
    )
    deadline = time.monotonic() + 60
    while True:  # pods need the default ServiceAccount (kube-controller-manager creates it)
        try:
            await api.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return name
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def delete_namespace(api: Api, namespace: str, limit: float = 900.0, wait: bool = True) -> None:
    """Drop Perennial finalizers (the operator is gone), delete, and wait until it is gone.

    Waiting keeps the next phase's write counts clean: garbage collection of N objects
    (and their pods and ReplicaSets) would otherwise land in them. ``wait=False`` (the
    next phase runs on a wiped cluster) leaves the garbage collection running: with
    N = 3000 it takes many minutes, which a fresh cluster makes moot.
    """
    for plural in ("modeldeployments", "driftpolicies", "trainingjobs"):
        path = f"{PERENNIAL}/namespaces/{namespace}/{plural}"
        with contextlib.suppress(RuntimeError):
            listed = await api.request("GET", path)
            patches = [
                api.request(
                    "PATCH",
                    f"{path}/{item['metadata']['name']}",
                    {"metadata": {"finalizers": None}},
                    "application/merge-patch+json",
                )
                for item in listed.get("items", [])
                if item["metadata"].get("finalizers")
            ]
            await asyncio.gather(*patches, return_exceptions=True)
    with contextlib.suppress(RuntimeError):
        await api.request("DELETE", f"/api/v1/namespaces/{namespace}")
    if not wait:
        print(f"  {namespace} deleting (not waited for: the next phase starts on a wiped cluster)", flush=True)
        return
    started = time.monotonic()
    while True:
        try:
            await api.request("GET", f"/api/v1/namespaces/{namespace}", retries=1)
        except RuntimeError as error:
            if " 404 " in str(error):
                print(f"  {namespace} deleted in {time.monotonic() - started:.0f}s", flush=True)
                return
            raise
        if time.monotonic() - started > limit:
            raise TimeoutError(f"namespace {namespace} still exists after {limit:.0f}s")
        await asyncio.sleep(1.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def control_plane_cpu(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds so far of every local-cluster process (etcd, kube-apiserver, ...)."""
    seconds = {}
    for name, record in cluster.state.processes.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            seconds[name] = cpu_seconds(int(str(record["pid"])))
    return seconds


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in sorted(after) if name in before}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    metrics_url: str
    log_path: Path


def spawn(executable: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(executable), "run"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


async def start_operator(
    kubeconfig: Path, namespace: str, prometheus_url: str, log_path: Path, options: Options
) -> Operator:
    env = {"PERENNIAL_API_QPS": str(options.api_qps)}
    return await start_operator_env(kubeconfig, namespace, prometheus_url, log_path, env, options.operator)


async def start_operator_env(
    kubeconfig: Path,
    namespace: str,
    prometheus_url: str,
    log_path: Path,
    extra_env: Mapping[str, str],
    executable: Path = Options.operator,
) -> Operator:
    """``perennial run`` watching ``namespace`` (its Lease there too); returns once /healthz answers."""
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PERENNIAL_NAMESPACES": namespace,
        "PERENNIAL_LEASE_NAMESPACE": namespace,
        "PERENNIAL_METRICS_ADDRESS": "127.0.0.1",
        "PERENNIAL_METRICS_PORT": str(port),
        "PERENNIAL_LOG_LEVEL": "INFO",
        "PERENNIAL_PROMETHEUS_URL": prometheus_url,
        **extra_env,
    }
    process = spawn(executable, env, log_path)
    operator = Operator(process, f"http://127.0.0.1:{port}/metrics", log_path)
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"operator exited with {process.returncode}; log: {log_path}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return operator
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator /healthz not answering; log: {log_path}")
            await asyncio.sleep(0.2)


def stop_operator(operator: Operator) -> None:
    if operator.process.poll() is None:
        operator.process.send_signal(signal.SIGTERM)
        try:
            operator.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.process.kill()
            operator.process.wait()


async def operator_samples(operator: Operator, metric: str, by: str) -> dict[str, float]:
    """One series family of the operator's own /metrics, summed by one label."""
    sums: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, session.get(operator.metrics_url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels_text, value = line.rsplit(" ", 1)
            label = dict(_LABEL.findall(labels_text)).get(by, "?")
            sums[label] = sums.get(label, 0.0) + float(value)
    return sums


async def operator_counter(operator: Operator, metric: str, by: str) -> Counter[str]:
    return Counter({k: int(v) for k, v in (await operator_samples(operator, metric, by)).items()})


async def mean_seconds(operator: Operator, histogram: str, by: str) -> dict[str, float]:
    """Mean of a histogram of the operator's, per label value (sum / count)."""
    sums = await operator_samples(operator, f"{histogram}_sum", by)
    counts = await operator_samples(operator, f"{histogram}_count", by)
    return {k: sums[k] / counts[k] for k in sorted(sums) if counts.get(k)}


async def operator_requests(operator: Operator) -> Counter[str]:
    """The operator's own count of API requests by method (reads included, watches excluded)."""
    return await operator_counter(operator, "perennial_api_requests_total", "method")


async def drift_evaluations(operator: Operator) -> int:
    # Not DriftPolicy reconciles: an evaluation is two (the queries run outside the queue).
    return sum((await operator_counter(operator, "perennial_drift_evaluations_total", "result")).values())


# ---------------------------------------------------------------- time to recover under load
def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return obj["metadata"].get("labels") or {}


def _v2_model(obj: Mapping[str, Any]) -> str | None:
    """The model of a TrainingJob or Job of version 2, else None."""
    found = _labels(obj)
    return found.get("perennial.dev/model") if found.get("perennial.dev/version") == "2" else None


def _policy_metric(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metric: Mapping[str, Any] = ((obj.get("status") or {}).get("metrics") or [{}])[0]
    return metric


def _rolled_out(obj: Mapping[str, Any]) -> bool:
    """A Deployment's rollout done, as `kubectl rollout status` judges it, and Available."""
    status = obj.get("status") or {}
    wanted = obj["spec"].get("replicas", 1)
    available = condition(obj, "Available")
    return (
        status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) >= wanted
        and available is not None
        and available["status"] == "True"
    )


def _template_version(obj: Mapping[str, Any]) -> str | None:
    return _labels(obj["spec"]["template"]).get("perennial.dev/version")


async def prometheus_value(session: aiohttp.ClientSession, url: str, query: str) -> float | None:
    async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
        result = (await response.json())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def wait_prometheus(
    session: aiohttp.ClientSession, url: str, query: str, value: float, limit: float, period: float = 0.1
) -> None:
    deadline = time.monotonic() + limit
    while await prometheus_value(session, url, query) != value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus: {query} != {value} after {limit:.0f}s")
        await asyncio.sleep(period)


async def measure_recovery(
    api: Api, cluster: LocalCluster, operator: Operator, namespace: str, models: list[str]
) -> list[Recovery]:
    """Time to recover for ``models``, the phase's N policies evaluating (benchmarks/recovery.py)."""
    print(
        f"  time to recover: {len(models)} DriftPolicies (interval {recovery.INTERVAL_S:.0f}s,"
        f" for {recovery.FOR_S:.0f}s) on {', '.join(models)}",
        flush=True,
    )
    job = f"bench-drift-{namespace}"
    exporter = recovery.GaugeExporter(dict.fromkeys(models, recovery.IN_BOUNDS))
    targets = ScrapeTargets(cluster.targets_file)
    targets.add(job, exporter.address)
    base = f"{PERENNIAL}/namespaces/{namespace}"
    selector = urllib.parse.quote(f"perennial.dev/model in ({','.join(models)})")
    policies = StepWatcher(
        api,
        f"{base}/driftpolicies?labelSelector=perennial.dev%2Fbench-recover%3Dtrue",
        {
            "evaluated": lambda o: (
                o["spec"]["targetRef"]["name"] if _policy_metric(o).get("value") == recovery.IN_BOUNDS else None
            ),
            "seen": lambda o: o["spec"]["targetRef"]["name"] if _policy_metric(o).get("breachedSince") else None,
            "detected": lambda o: (
                o["spec"]["targetRef"]["name"] if (o.get("status") or {}).get("triggerCount", 0) >= 1 else None
            ),
        },
    )
    training_jobs = StepWatcher(
        api,
        f"{base}/trainingjobs?labelSelector={selector}",
        {
            "tj_created": _v2_model,
            "tj_succeeded": lambda o: _v2_model(o) if (o.get("status") or {}).get("phase") == "Succeeded" else None,
        },
    )
    jobs = StepWatcher(
        api,
        f"/apis/batch/v1/namespaces/{namespace}/jobs?labelSelector={selector}",
        {"job_created": _v2_model, "job_complete": lambda o: _v2_model(o) if job_complete(o) else None},
    )
    deployments = StepWatcher(
        api,
        f"/apis/apps/v1/namespaces/{namespace}/deployments?labelSelector={selector}",
        {
            "deployment_updated": lambda o: o["metadata"]["name"] if _template_version(o) == "2" else None,
            "deployment_available": lambda o: (
                o["metadata"]["name"] if _template_version(o) == "2" and _rolled_out(o) else None
            ),
        },
    )
    mds = [
        StepWatcher(
            api,
            f"{base}/modeldeployments?fieldSelector=metadata.name%3D{model}",
            {
                "serving": lambda o: (
                    o["metadata"]["name"]
                    if o.get("status", {}).get("servingVersion") == "2" and is_true(o, "Ready")
                    else None
                )
            },
        )
        for model in models
    ]
    watchers = [policies, training_jobs, jobs, deployments, *mds]
    results = {model: Recovery(model) for model in models}
    url = cluster.prometheus_url()

    async def one(session: aiohttp.ClientSession, model: str) -> None:
        result = results[model]
        # The first evaluation (the policy's first status write) saw the value in bounds.
        await policies.wait_step("evaluated", model, limit=300)
        exporter.set(model, recovery.OUT_OF_BOUNDS)
        result.at["onset"], onset_wall = time.monotonic(), time.time()
        # The onset's phase: how long after that evaluation (the operator's own gauge).
        evaluated = await operator_samples(
            operator, "perennial_drift_policy_last_evaluation_timestamp_seconds", "policy"
        )
        result.onset_after_evaluation = onset_wall - evaluated.get(f"{model}-recover", math.nan)
        await wait_prometheus(session, url, recovery.query(job, model), recovery.OUT_OF_BOUNDS, limit=60)
        result.at["scraped"] = time.monotonic()
        await mds[models.index(model)].wait_step("serving", model, limit=300)

    try:
        async with aiohttp.ClientSession() as session:
            for model in models:
                await wait_prometheus(session, url, recovery.query(job, model), recovery.IN_BOUNDS, limit=60)
            for watcher in watchers:
                await watcher.start()
            await gather_limited(
                [api.request("POST", f"{base}/driftpolicies", recovery.policy(model, job)) for model in models]
            )
            outcomes = await asyncio.gather(*(one(session, model) for model in models), return_exceptions=True)
    finally:
        for watcher in watchers:
            await watcher.stop()
        targets.remove(job)
        exporter.close()
    for model, outcome in zip(models, outcomes, strict=True):
        result = results[model]
        for watcher in watchers:
            result.at.update({step: at for (step, key), at in watcher.reached.items() if key == model})
        if isinstance(outcome, BaseException):
            print(f"  {model}: did not recover: {outcome!r}", flush=True)
        print(f"  {model}: {recovery.timeline(result)} s after the onset", flush=True)
    return list(results.values())


# ---------------------------------------------------------------- the two phases
@dataclass
class Result:
    n: int
    total: float = float("nan")
    ready_p50: float = float("nan")
    ready_p99: float = float("nan")
    job_p50: float = float("nan")
    job_p99: float = float("nan")
    writes: dict[str, float] = field(default_factory=dict)
    operator_requests: dict[str, float] = field(default_factory=dict)
    # Writes in the idle window, cluster-wide, absolute counts (the goal is none).
    idle_writes: dict[str, float] = field(default_factory=dict)
    rss_mib: float = float("nan")
    cpu_run: float = float("nan")
    cpu_total: float = float("nan")
    idle_cpu_pct: float = float("nan")
    idle_cpu_ms_per_evaluation: float = float("nan")
    idle_seconds: float = IDLE_SECONDS
    # Where the operator's time went during the run (its own histograms, means).
    api_latency: dict[str, float] = field(default_factory=dict)
    # CPU seconds each process used during the timed part of each phase.
    machine_cpu: dict[str, float] = field(default_factory=dict)
    baseline_machine_cpu: dict[str, float] = field(default_factory=dict)
    queue_wait: dict[str, float] = field(default_factory=dict)
    baseline_total: float = float("nan")
    baseline_ready_p50: float = float("nan")
    baseline_ready_p99: float = float("nan")
    baseline_writes: dict[str, float] = field(default_factory=dict)
    # Time to recover under load (after the idle window), one per model measured.
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.total / self.baseline_total


async def gather_limited(coroutines: list[Awaitable[Any]]) -> None:
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(results)} requests failed, first: {errors[0]!r}")


async def run_operator_phase(
    api: Api, cluster: LocalCluster, n: int, result: Result, workdir: Path, options: Options
) -> None:
    namespace = await create_namespace(api, f"bench-op-{n}")
    log_path = workdir / f"operator-{n}.log"
    operator = None
    md_path = f"{PERENNIAL}/namespaces/{namespace}/modeldeployments"
    mds = Watcher(api, md_path, md_ready)
    jobs = Watcher(api, f"/apis/batch/v1/namespaces/{namespace}/jobs", lambda _: True)
    try:
        operator = await start_operator(
            cluster.admin_kubeconfig, namespace, cluster.prometheus_url(), log_path, options
        )
        pid = operator.process.pid
        print(f"[N={n}] operator PID {pid} in {namespace}, log {log_path}", flush=True)
        await mds.start()
        await jobs.start()
        names = [f"m{i:04d}" for i in range(n)]
        before = await write_counts(api)
        cpu0 = cpu_seconds(pid)
        plane0 = control_plane_cpu(cluster)
        client0 = time.process_time()
        start = time.monotonic()
        await gather_limited(
            [api.request("POST", md_path, model_deployment(name)) for name in names]
            + [
                api.request("POST", f"{PERENNIAL}/namespaces/{namespace}/driftpolicies", drift_policy(name))
                for name in names
            ]
        )
        print(
            f"[N={n}] created in {time.monotonic() - start:.1f}s ({api.throttled} answers 429, retried);"
            " waiting for Ready",
            flush=True,
        )
        # Generous: about 0.1 s a model was measured at N = 1000; this allows 3 s a model.
        await mds.wait_for(set(names), limit=120 + 3 * n)
        result.total = time.monotonic() - start
        result.cpu_run = cpu_seconds(pid) - cpu0
        result.machine_cpu = {
            **cpu_delta(plane0, control_plane_cpu(cluster)),
            "perennial": result.cpu_run,
            "bench client": time.process_time() - client0,
        }
        after = await write_counts(api)
        result.writes = per_object(before, after, n)
        ready = [mds.done_at[name] - start for name in names]
        result.ready_p50, result.ready_p99 = percentile(ready, 50), percentile(ready, 99)
        # Job created: Job creationTimestamp - ModelDeployment creationTimestamp (1 s resolution).
        job_latency = [
            parse_time(jobs.objects[f"{name}-v1"]["metadata"]["creationTimestamp"])
            - parse_time(mds.objects[name]["metadata"]["creationTimestamp"])
            for name in names
        ]
        result.job_p50, result.job_p99 = percentile(job_latency, 50), percentile(job_latency, 99)
        result.api_latency = await mean_seconds(operator, "perennial_api_request_duration_seconds", "method")
        result.queue_wait = await mean_seconds(operator, "perennial_workqueue_queue_duration_seconds", "controller")
        idle = result.idle_seconds = options.idle_seconds
        print(f"[N={n}] all Ready after {result.total:.1f}s; idle for {idle:.0f}s", flush=True)
        idle_before = await write_counts(api)
        evaluations_before = await drift_evaluations(operator)
        cpu1 = cpu_seconds(pid)
        await asyncio.sleep(idle)
        idle_cpu = cpu_seconds(pid) - cpu1
        evaluations = await drift_evaluations(operator) - evaluations_before
        result.idle_cpu_pct = 100 * idle_cpu / idle
        result.idle_cpu_ms_per_evaluation = 1000 * idle_cpu / evaluations if evaluations else float("nan")
        result.idle_writes = per_object(idle_before, await write_counts(api), 1)
        print(f"[N={n}] idle {idle:.0f}s: writes {fmt_counts(result.idle_writes)}", flush=True)
        result.rss_mib = peak_rss_mib(pid)
        result.cpu_total = cpu_seconds(pid)
        result.operator_requests = {k: v / n for k, v in (await operator_requests(operator)).items()}
        await mds.stop()
        await jobs.stop()
        if options.recover:
            result.recoveries = await measure_recovery(
                api, cluster, operator, namespace, [f"m{i:04d}" for i in range(min(options.recover, n))]
            )
    finally:
        await mds.stop()
        await jobs.stop()
        if operator is not None:
            stop_operator(operator)
        await delete_namespace(api, namespace, limit=900 + n, wait=not options.fresh_cluster)


async def baseline_one(
    api: Api, namespace: str, md: dict[str, Any], jobs: Watcher, deployments: Watcher, limit: float
) -> None:
    name = md["metadata"]["name"]
    md_path = f"{PERENNIAL}/namespaces/{namespace}/modeldeployments/{name}"
    tj_path = f"{PERENNIAL}/namespaces/{namespace}/trainingjobs"
    tj = await api.request("POST", tj_path, training_job(md))
    tj_path += f"/{tj['metadata']['name']}"
    await api.merge_status(
        md_path,
        {
            "phase": "Training",
            "latestVersion": "1",
            "activeTrainingJob": tj["metadata"]["name"],
            "conditions": [cond("Training", "True", "Initial"), cond("Ready", "False", "NothingServed")],
        },
    )
    await api.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", batch_job(tj, namespace))
    await api.merge_status(tj_path, {"phase": "Pending", "jobName": tj["metadata"]["name"], "version": "1"})
    await jobs.wait_one(tj["metadata"]["name"], limit=limit)
    # The operator lists the run's pods once, to read the termination message.
    await api.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3D{tj['metadata']['name']}")
    await api.merge_status(
        tj_path,
        {"phase": "Succeeded", "metrics": {"auc": 0.93}, "conditions": [cond("Succeeded", "True", "AllGatesPassed")]},
    )
    await asyncio.gather(
        api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment(md, namespace)),
        api.request("POST", f"/api/v1/namespaces/{namespace}/services", service(md)),
    )
    await api.merge_status(
        md_path,
        {
            "phase": "Rolling",
            "activeTrainingJob": None,
            "conditions": [cond("Training", "False", "Succeeded"), cond("Progressing", "True", "RollingOut")],
        },
    )
    await deployments.wait_one(name, limit=limit)
    await api.merge_status(
        md_path,
        {
            "phase": "Serving",
            "servingVersion": "1",
            "conditions": [cond("Ready", "True", "Serving"), cond("Progressing", "False", "RolledOut")],
        },
    )


async def run_baseline_phase(api: Api, cluster: LocalCluster, n: int, result: Result, options: Options) -> None:
    namespace = await create_namespace(api, f"bench-base-{n}")
    jobs = Watcher(api, f"/apis/batch/v1/namespaces/{namespace}/jobs", job_complete)
    deployments = Watcher(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment_available)
    try:
        md_path = f"{PERENNIAL}/namespaces/{namespace}/modeldeployments"
        dp_path = f"{PERENNIAL}/namespaces/{namespace}/driftpolicies"
        names = [f"m{i:04d}" for i in range(n)]
        await jobs.start()
        await deployments.start()
        before = await write_counts(api)
        # Timed from the same start as the operator phase: nothing exists yet, and the N
        # ModelDeployments and N DriftPolicies a user applies are created in the window.
        plane0 = control_plane_cpu(cluster)
        client0 = time.process_time()
        start = time.monotonic()
        done: dict[str, float] = {}

        async def one(name: str) -> None:
            md = await api.request("POST", md_path, model_deployment(name))
            await baseline_one(api, namespace, md, jobs, deployments, limit=120 + 3 * n)
            done[name] = time.monotonic() - start

        await gather_limited(
            [one(name) for name in names] + [api.request("POST", dp_path, drift_policy(name)) for name in names]
        )
        result.baseline_total = time.monotonic() - start
        if api.throttled or api.overloaded:
            print(
                f"[N={n}] baseline: {api.throttled} answers 429 (retried after Retry-After),"
                f" {api.overloaded} answers 5xx of an overloaded API server (retried with backoff)",
                flush=True,
            )
        result.baseline_machine_cpu = {
            **cpu_delta(plane0, control_plane_cpu(cluster)),
            "bench client": time.process_time() - client0,
        }
        result.baseline_writes = per_object(before, await write_counts(api), n)
        result.baseline_ready_p50 = percentile(list(done.values()), 50)
        result.baseline_ready_p99 = percentile(list(done.values()), 99)
        print(f"[N={n}] baseline done after {result.baseline_total:.1f}s", flush=True)
    finally:
        await jobs.stop()
        await deployments.stop()
        await delete_namespace(api, namespace, limit=900 + n, wait=not options.fresh_cluster)


# ---------------------------------------------------------------- reporting
def fmt_writes(writes: Mapping[str, float]) -> str:
    return ", ".join(f"{key} {value:.2f}" for key, value in writes.items()) or "-"


def fmt_counts(writes: Mapping[str, float], n: int | None = None) -> str:
    """Absolute write counts (the idle window's goal is none), with per-object rates for ``n``."""
    if not writes:
        return "none"
    return ", ".join(
        f"{key} {value:.0f}" + (f" ({value / n:.3f} / object)" if n else "") for key, value in writes.items()
    )


def table(results: list[Result]) -> str:
    header = (
        "| N | total s | ready p50/p99 s | job p50/p99 s | peak RSS MiB | CPU s (run/total) "
        "| idle CPU % (ms / evaluation) "
        "| baseline s (p50/p99) | ratio | recover s (overhead s) |"
    )
    lines = [header, "|---" * 10 + "|"]
    for r in results:
        lines.append(
            f"| {r.n} | {r.total:.1f} | {r.ready_p50:.1f} / {r.ready_p99:.1f} | {r.job_p50:.0f} / {r.job_p99:.0f} "
            f"| {r.rss_mib:.0f} | {r.cpu_run:.1f} / {r.cpu_total:.1f} "
            f"| {r.idle_cpu_pct:.1f} ({r.idle_cpu_ms_per_evaluation:.1f}) "
            f"| {r.baseline_total:.1f} ({r.baseline_ready_p50:.1f} / {r.baseline_ready_p99:.1f}) | {r.ratio:.2f} "
            f"| {recovery.summary(r.recoveries)} |"
        )
    lines.append("")
    lines.append("API writes per ModelDeployment (apiserver_request_total, cluster-wide, verb resource):")
    lines.append("")
    lines.append("| N | phase | writes / object |")
    lines.append("|---|---|---|")
    for r in results:
        lines.append(f"| {r.n} | operator | {fmt_writes(r.writes)} |")
        lines.append(f"| {r.n} | baseline | {fmt_writes(r.baseline_writes)} |")
        lines.append(
            f"| {r.n} | operator idle: {r.idle_seconds:.0f} s after all Ready, {r.n} policies evaluating"
            f" (all writes in the window, goal none) | {fmt_counts(r.idle_writes, r.n)} |"
        )
        ops = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.operator_requests.items()))
        lines.append(f"| {r.n} | operator's own requests (all, reads too) | {ops} |")
        latency = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in r.api_latency.items())
        waits = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in r.queue_wait.items())
        lines.append(f"| {r.n} | operator's mean API latency; mean work-queue wait | {latency}; {waits} |")
    if any(r.recoveries for r in results):
        lines.append("")
        lines.append(
            f"Time to recover under load, N policies evaluating: drift onset to the new version serving,"
            f" interval {recovery.INTERVAL_S:.0f}s, for {recovery.FOR_S:.0f}s; goal: recover ≤ interval + for +"
            f" training (the Job's run) + rollout (the Deployment's) + {recovery.GOAL_OVERHEAD_S:.0f} s:"
        )
        lines.append("")
        lines.extend(recovery.TABLE_HEADER)
        for r in results:
            lines.extend(recovery.table_rows(r.n, r.recoveries))
    lines.append("")
    lines.append(
        f"CPU seconds per process during the timed part of each phase ({os.cpu_count()} CPUs: as many CPU-s a second):"
    )
    lines.append("")
    lines.append("| N | phase | CPU s by process | total CPU s / wall s |")
    lines.append("|---|---|---|---|")
    for r in results:
        for phase, cpu, wall in (
            ("operator", r.machine_cpu, r.total),
            ("baseline", r.baseline_machine_cpu, r.baseline_total),
        ):
            by_process = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
            lines.append(f"| {r.n} | {phase} | {by_process or '-'} | {sum(cpu.values()):.1f} / {wall:.1f} |")
    return "\n".join(lines)


def versions() -> str:
    import kopf
    from localcluster import versions as pinned

    python = ".".join(str(p) for p in sys.version_info[:3])
    return (
        f"Kubernetes {pinned.KUBERNETES}, etcd {pinned.ETCD}, kwok {pinned.KWOK}, "
        f"kopf {getattr(kopf, '__version__', '?')}, Python {python}, "
        f"{os.cpu_count()} CPUs"
    )


def append_to_readme(text: str, options: Options) -> None:
    readme = Path(__file__).resolve().parent / "README.md"
    content = readme.read_text() if readme.exists() else ""
    if "## Results on this machine" not in content:
        content += "\n## Results on this machine\n"
    limit = f"PERENNIAL_API_QPS={options.api_qps:g}" + (", a fresh cluster per phase" if options.fresh_cluster else "")
    content += f"\n### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {versions()}, {limit}\n\n{text}\n"
    readme.write_text(content)


async def ready_cluster(fresh: bool) -> tuple[LocalCluster, Api]:
    """The full local cluster with the CRDs installed, and an admin client for it.

    ``fresh``: stopped, wiped and started again first, so every phase starts from the same
    state; an API server that has churned through earlier phases (a bigger heap, etcd
    history) was measured to be up to 15% slower for the phase that runs on it.
    """
    cluster = LocalCluster()
    if fresh:
        cluster.down()
    cluster.up("full")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    cluster.wait_established(*[f"crd/{p}.{GROUP}" for p in _crd_plurals()])
    context = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    context.load_cert_chain(str(cluster.pki / "admin.crt"), str(cluster.pki / "admin.key"))
    api = Api(cluster.api_url(), context)
    # Established is not served: for a moment after a CRD is created its storage answers
    # 429 "storage is (re)initializing", and a POST in the timed run would wait a
    # Retry-After second for it.
    deadline = time.monotonic() + 60
    for plural in _crd_plurals():
        while True:
            try:
                await api.request("GET", f"{PERENNIAL}/{plural}?limit=1", retries=1)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    return cluster, api


async def main_async(ns: list[int], record: bool, options: Options) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="perennial-bench-"))
    results: list[Result] = []
    try:
        for n in ns:
            result = Result(n)
            cluster, api = await ready_cluster(options.fresh_cluster)
            try:
                await run_operator_phase(api, cluster, n, result, workdir, options)
            finally:
                await api.close()
            if options.baseline:
                cluster, api = await ready_cluster(options.fresh_cluster)
                try:
                    await run_baseline_phase(api, cluster, n, result, options)
                finally:
                    await api.close()
            results.append(result)
            print(table([result]), flush=True)
    finally:
        # A failed phase (say the largest N) keeps the sizes measured before it.
        if results:
            print("\n" + table(results))
            if record:
                append_to_readme(table(results), options)
    return results


def _crd_plurals() -> list[str]:
    return ["trainingjobs", "modeldeployments", "driftpolicies"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="number of ModelDeployments (repeatable)")
    parser.add_argument("--no-record", action="store_true", help="do not append the table to benchmarks/README.md")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS, help="seconds of idle measured after all are Ready")
    parser.add_argument(
        "--api-qps", type=float, default=0.0, help="the operator's PERENNIAL_API_QPS (default 0: no client-side limit)"
    )
    parser.add_argument("--operator", type=Path, help="the perennial executable to run (default: this venv's)")
    parser.add_argument("--no-baseline", action="store_true", help="operator phase only (implies --no-record)")
    parser.add_argument(
        "--fresh-cluster",
        action="store_true",
        help="stop, wipe and restart the local cluster before every phase (make bench does)",
    )
    parser.add_argument(
        "--recover",
        type=int,
        default=RECOVER_MODELS,
        help=f"models whose time to recover is measured after the idle window (default {RECOVER_MODELS}; 0: none)",
    )
    args = parser.parse_args()
    options = Options(
        idle_seconds=args.idle,
        api_qps=args.api_qps,
        baseline=not args.no_baseline,
        fresh_cluster=args.fresh_cluster,
        recover=args.recover,
    )
    if args.operator:
        options = dataclasses.replace(options, operator=args.operator.resolve())
    asyncio.run(main_async(args.n or [50, 100], record=not (args.no_record or args.no_baseline), options=options))


if __name__ == "__main__":
    main()
