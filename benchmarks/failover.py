"""Failover benchmark: how long after the leader is SIGKILLed the standby reconciles.

``python -m benchmarks.failover --kills 5`` runs on the running (or started) full local
cluster: a fresh namespace with ``--models`` ModelDeployments and DriftPolicies, served;
two replicas (``perennial run`` as the operator's ServiceAccount from ``manifests/``, as
the chart's pods run) with the chart's leader election settings
(``manifests/deployment.yaml``) sharing one Lease in ``perennial-system``. Then, ``--kills`` times: wait a random
0-3 s (so the kill falls anywhere in the renewal cycle), SIGKILL the leader, and poll the
standby's /metrics every 20 ms for ``perennial_leader`` 1 (took the Lease) and its first
``perennial_reconciles_total`` (first reconcile); the killed replica is started again as
the new standby. The target is the lease duration + 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.operator import operator_kubeconfig

from benchmarks.scale import (
    PERENNIAL,
    Operator,
    create_namespace,
    delete_namespace,
    drift_policy,
    md_ready,
    model_deployment,
    ready_cluster,
    start_operator_env,
    stop_operator,
)

POLL_SECONDS = 0.02


async def gauge(session: aiohttp.ClientSession, operator: Operator, name: str) -> float:
    """The sum of one metric's samples in the operator's /metrics (0 if it does not answer)."""
    try:
        async with session.get(operator.metrics_url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


@dataclass
class Kill:
    lease_taken: float  # seconds from SIGKILL to the standby's perennial_leader 1
    first_reconcile: float  # seconds from SIGKILL to the standby's first reconcile


async def one_kill(session: aiohttp.ClientSession, leader: Operator, standby: Operator, limit: float) -> Kill:
    before = await gauge(session, standby, "perennial_reconciles_total")
    leader.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    leader.process.wait()
    lease_taken = first_reconcile = float("nan")
    while time.monotonic() - killed < limit:
        now = time.monotonic()
        if lease_taken != lease_taken and await gauge(session, standby, "perennial_leader") == 1:
            lease_taken = now - killed
        if await gauge(session, standby, "perennial_reconciles_total") > before:
            first_reconcile = time.monotonic() - killed
            if lease_taken != lease_taken:
                lease_taken = first_reconcile
            return Kill(lease_taken, first_reconcile)
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"no reconcile by the standby {limit:.0f}s after the leader was killed")


async def main_async(kills: int, models: int) -> list[Kill]:
    cluster, api = await ready_cluster(fresh=False)
    namespace = await create_namespace(api, "failover")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"perennial-{namespace}"
    workdir.mkdir(parents=True, exist_ok=True)
    election = delivery.leader_election_env()
    lease_duration = float(election["PERENNIAL_LEASE_DURATION"].removesuffix("s"))
    # The ServiceAccount may hold Leases in perennial-system only (the chart's Role).
    kubeconfig = operator_kubeconfig(ClusterInfo.from_env_file(cluster.env_file))
    env = {**election, "PERENNIAL_LEASE_NAMESPACE": "perennial-system", "PERENNIAL_LEASE_NAME": namespace}
    print(f"namespace {namespace}; {models} models; election {election}; logs in {workdir}", flush=True)
    replicas: list[Operator] = []
    results: list[Kill] = []
    try:
        names = [f"m{i:03d}" for i in range(models)]
        for name in names:
            await api.request("POST", f"{PERENNIAL}/namespaces/{namespace}/modeldeployments", model_deployment(name))
            await api.request("POST", f"{PERENNIAL}/namespaces/{namespace}/driftpolicies", drift_policy(name))

        async def start(index: int) -> Operator:
            log = workdir / f"replica-{index}-{time.monotonic_ns()}.log"
            return await start_operator_env(kubeconfig, namespace, cluster.prometheus_url(), log, env)

        replicas = [await start(0), await start(1)]
        async with aiohttp.ClientSession() as session:

            async def leader_index() -> int:
                while True:
                    leading = [i for i, r in enumerate(replicas) if await gauge(session, r, "perennial_leader") == 1]
                    if len(leading) == 1:
                        return leading[0]
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(leader_index(), 60)
            deadline = time.monotonic() + 120
            while True:
                listed = await api.request("GET", f"{PERENNIAL}/namespaces/{namespace}/modeldeployments")
                if sum(md_ready(item) for item in listed["items"]) == models:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("models not Ready within 120 s")
                await asyncio.sleep(0.5)
            print(f"{models} models serving; killing the leader {kills} times", flush=True)
            for number in range(1, kills + 1):
                index = await asyncio.wait_for(leader_index(), 60)
                await asyncio.sleep(random.uniform(0.0, 3.0))
                kill = await one_kill(session, replicas[index], replicas[1 - index], 3 * lease_duration)
                results.append(kill)
                print(
                    f"  kill {number}: Lease taken after {kill.lease_taken:5.2f}s, "
                    f"first reconcile after {kill.first_reconcile:5.2f}s",
                    flush=True,
                )
                replicas[index] = await start(index)
    finally:
        for replica in replicas:
            stop_operator(replica)
        await delete_namespace(api, namespace)
        await api.close()
    firsts = [k.first_reconcile for k in results]
    target = lease_duration + 2
    print(
        f"\nfailover over {len(firsts)} kills (leader SIGKILLed -> first reconcile by the new leader): "
        f"min {min(firsts):.2f}s, median {statistics.median(firsts):.2f}s, max {max(firsts):.2f}s; "
        f"target lease duration + 2 s = {target:g}s: {'met' if max(firsts) <= target else 'MISSED'}"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="how many times the leader is killed (default 5)")
    parser.add_argument("--models", type=int, default=20, help="ModelDeployments + DriftPolicies (default 20)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.kills, args.models))
    sys.exit(0 if results else 1)


if __name__ == "__main__":
    main()
