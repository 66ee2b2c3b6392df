"""Leader election against the real API server: one leader, a prompt and safe handover.

Two electors (``perennial.adapters.leader``) with their own clients campaign for one Lease
in the test's namespace, with the shortest durations client-go allows (lease 3 s, renew
deadline 2 s, retry 1 s). Each records when it started and stopped leading; a watcher
samples both throughout and fails the test if both ever lead at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from perennial.adapters.kube import KubeClient
from perennial.adapters.leader import LeaderElector, LeaseConfig
from perennial.adapters.login import Login
from perennial.controllers.context import Cluster
from perennial.main import Operator
from perennial.settings import Settings
from tests.support.cluster import ClusterInfo

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3.0, 2.0, 1.0
pytestmark = pytest.mark.timeout(120)


@dataclass
class Candidate:
    elector: LeaderElector
    led_at: list[float] = field(default_factory=list)
    followed_at: list[float] = field(default_factory=list)

    @property
    def identity(self) -> str:
        return self.elector.config.identity


@dataclass
class Election:
    cluster: ClusterInfo
    namespace: str
    candidates: list[Candidate] = field(default_factory=list)
    both_led: list[float] = field(default_factory=list)

    def candidate(self, name: str) -> Candidate:
        config = LeaseConfig("perennial", self.namespace, name, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD)
        candidate: Candidate

        async def lead() -> None:
            candidate.led_at.append(time.monotonic())

        async def follow() -> None:
            candidate.followed_at.append(time.monotonic())

        kube = KubeClient(Login(str(self.cluster.kubeconfig)))
        candidate = Candidate(LeaderElector(kube, config, lead=lead, follow=follow))
        self.candidates.append(candidate)
        return candidate

    async def watch(self) -> None:
        while True:
            if sum(c.elector.leading for c in self.candidates) > 1:
                self.both_led.append(time.monotonic())
            await asyncio.sleep(0.01)


async def until(condition: Any, within: float, what: str) -> float:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within:g}s waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic()


@pytest.fixture
async def election(perennial_crds: ClusterInfo, namespace: str) -> AsyncIterator[Election]:
    held = Election(perennial_crds, namespace)
    watcher = asyncio.create_task(held.watch())
    yield held
    watcher.cancel()
    for candidate in held.candidates:
        await candidate.elector.stop()
        await candidate.elector.client.close()
    assert not held.both_led, "two candidates led at the same time"


def lease_spec(api: client.ApiClient, namespace: str) -> client.V1LeaseSpec:
    return client.CoordinationV1Api(api).read_namespaced_lease("perennial", namespace).spec


async def test_one_candidate_leads_and_the_other_takes_over_at_once_when_it_releases(
    election: Election, api_client: client.ApiClient, namespace: str
) -> None:
    a, b = election.candidate("a"), election.candidate("b")
    a.elector.start()
    await until(lambda: a.elector.leading, 10, "a to lead")
    b.elector.start()
    # Two lease durations: b keeps seeing a renew, and never leads.
    await asyncio.sleep(2 * LEASE_DURATION)
    assert not b.led_at
    assert lease_spec(api_client, namespace).holder_identity == "a"

    released = time.monotonic()
    await a.elector.stop()  # a graceful shutdown: stops leading, releases the Lease
    took_over = await until(lambda: b.elector.leading, 10, "b to lead")
    assert a.followed_at
    assert a.followed_at[0] <= took_over
    # A released Lease is free at once: b takes it at its next look, not after the duration.
    assert took_over - released <= RETRY_PERIOD + 0.5
    spec = lease_spec(api_client, namespace)
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)


async def test_a_dead_leader_is_replaced_one_lease_duration_after_its_last_renewal(
    election: Election, api_client: client.ApiClient, namespace: str
) -> None:
    a, b = election.candidate("a"), election.candidate("b")
    a.elector.start()
    await until(lambda: a.elector.leading, 10, "a to lead")
    b.elector.start()
    await until(lambda: b.elector.observed_holder == a.identity, 10, "b to see a holding the Lease")

    async def crashed() -> None:  # a SIGKILL: nothing released, nothing said
        return None

    a.elector._release = crashed  # type: ignore[method-assign]
    a.elector.leading = False  # what a dead process holds no longer counts for the watcher
    killed = time.monotonic()
    await a.elector.stop()
    took_over = await until(lambda: b.elector.leading, 3 * LEASE_DURATION, "b to take over")
    # b saw a's last renewal at most one retry period before the kill, and waits one lease
    # duration from then; it wakes when the lease expires, not at its next period.
    assert LEASE_DURATION - RETRY_PERIOD - 0.2 <= took_over - killed <= LEASE_DURATION + RETRY_PERIOD + 0.5
    assert lease_spec(api_client, namespace).holder_identity == "b"


async def test_a_leader_that_cannot_renew_stops_leading_before_anyone_else_starts(election: Election) -> None:
    a, b = election.candidate("a"), election.candidate("b")
    a.elector.start()
    await until(lambda: a.elector.leading, 10, "a to lead")
    b.elector.start()
    await until(lambda: b.elector.observed_holder == a.identity, 10, "b to see a holding the Lease")

    async def hang(*_: Any, **__: Any) -> dict[str, Any]:  # the API server unreachable for a
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    a.elector.client.replace = hang  # type: ignore[method-assign]
    a.elector.client.get = hang  # type: ignore[method-assign]
    cut_off = time.monotonic()
    stopped = await until(lambda: not a.elector.leading, 3 * LEASE_DURATION, "a to stop leading")
    # No renewal for the renew deadline: a stops, however long its requests would hang.
    assert stopped - cut_off <= RENEW_DEADLINE + RETRY_PERIOD + 0.5
    took_over = await until(lambda: b.elector.leading, 3 * LEASE_DURATION, "b to take over")
    assert a.followed_at[0] < b.led_at[0]
    assert took_over > stopped


async def test_a_stop_that_lands_as_a_renewal_completes_stops_the_elector(election: Election) -> None:
    """A cancellation delivered in the loop iteration a renewal's response arrives must end
    the elector. Around ``asyncio.wait_for`` (Python 3.11) it was swallowed: the renewal's
    result was returned instead, the leader went on renewing, and ``stop()`` never returned
    (a CI run's teardown hung on it)."""
    a = election.candidate("a")
    a.elector.start()
    await until(lambda: a.elector.leading, 10, "a to lead")
    running = a.elector._task
    assert running is not None
    renew = a.elector.client.replace
    armed = True

    async def renew_then_cancel(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal armed
        written = await renew(*args, **kwargs)
        if armed:
            armed = False
            # The cancellation lands after the response, before the elector resumes.
            asyncio.get_running_loop().call_soon(running.cancel)
        return written

    a.elector.client.replace = renew_then_cancel  # type: ignore[method-assign]
    await until(lambda: not armed, 3 * RETRY_PERIOD, "a renewal")
    await until(running.done, 2 * RETRY_PERIOD, "the cancelled elector to end")
    assert running.cancelled()
    assert not a.elector.leading
    assert a.followed_at, "a stopped leading without following"


async def test_the_operator_keeps_its_lease_while_every_connection_of_its_client_is_busy(
    perennial_crds: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    """Under load each of the operator's connections carries a reconcile or an Event; a renewal
    queued behind them missed its deadline and the leader stepped down every renew deadline
    (N=1000 in benchmarks/README.md). Wired as ``perennial run`` wires it, the Lease has
    connections of its own."""
    settings = dataclasses.replace(
        Settings(),
        namespaces=(namespace,),
        lease_namespace=namespace,
        identity="busy",
        lease_duration_seconds=LEASE_DURATION,
        lease_renew_deadline_seconds=RENEW_DEADLINE,
        lease_retry_period_seconds=RETRY_PERIOD,
    )
    connections = 4
    kube = KubeClient(Login(str(perennial_crds.kubeconfig)), max_in_flight=connections)
    operator = Operator.build(Cluster(client=kube, settings=settings))
    assert operator.elector is not None
    # Watches that wait for events hold every connection of the operator's client.
    watch = {"watch": "true", "timeoutSeconds": "60"}
    busy = [
        asyncio.create_task(kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps", params=watch))
        for _ in range(connections)
    ]
    try:
        await asyncio.sleep(0.5)  # let the watches take their connections
        assert not any(task.done() for task in busy), "the watches ended before the test began"
        operator.start()
        await until(lambda: operator.elector is not None and operator.elector.leading, 5, "the operator to lead")
        first = lease_spec(api_client, namespace).renew_time
        held_until = time.monotonic() + 3 * LEASE_DURATION
        while time.monotonic() < held_until:
            assert operator.elector.leading, "the operator stopped leading while its client was busy"
            await asyncio.sleep(0.05)
        spec = lease_spec(api_client, namespace)
        assert spec.holder_identity.startswith("busy_")
        assert spec.renew_time > first, "the Lease was not renewed"
        assert not any(task.done() for task in busy), "a watch ended: the client was not busy throughout"
    finally:
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        await operator.stop()
