"""Leader election against the real API server: one leader, a prompt and safe handover.

Two electors (``perennial.adapters.leader``) with their own clients campaign for one Lease
in the test's namespace, with the shortest durations client-go allows (lease 3 s, renew
deadline 2 s, retry 1 s). Each records when it started and stopped leading; a watcher
samples both throughout and fails the test if both ever lead at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from perennial.adapters.kube import KubeClient
from perennial.adapters.leader import LeaderElector, LeaseConfig
from perennial.adapters.login import Login
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
