"""Leader election's rules: who may take a Lease, when, and what a claim writes."""

from datetime import UTC, datetime

from perennial.domain.lease import LeaseRecord, claimed, held_by_another, released, seconds_until_free

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def lease(holder: str, transitions: int = 2, acquired: str = "2026-11-30T11:00:00.000000Z") -> dict[str, object]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "perennial", "namespace": "ops", "resourceVersion": "41"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": acquired,
            "renewTime": "2026-11-30T11:59:58.000000Z",
            "leaseTransitions": transitions,
        },
    }


def test_a_lease_renewed_within_its_duration_is_held_by_its_holder() -> None:
    record = LeaseRecord.of(lease("a_1"))
    # Seen at t=100 on our clock: held until t=115 whatever the holder's clock wrote.
    assert held_by_another(record, "b_2", observed_at=100.0, now=114.9, lease_duration=15)
    assert seconds_until_free(record, "b_2", 100.0, 110.0, 15) == 5.0
    assert not held_by_another(record, "b_2", observed_at=100.0, now=115.0, lease_duration=15)
    assert seconds_until_free(record, "b_2", 100.0, 120.0, 15) == 0.0


def test_a_released_lease_and_our_own_are_free_at_once() -> None:
    assert not held_by_another(LeaseRecord.of(lease("")), "b_2", 100.0, 100.0, 15)
    assert not held_by_another(LeaseRecord.of(lease("b_2")), "b_2", 100.0, 100.0, 15)


def test_a_renewal_keeps_the_acquire_time_and_transitions_and_the_read_version() -> None:
    body = claimed(lease("a_1"), "a_1", 15, NOW, name="perennial", namespace="ops")
    assert body["metadata"]["resourceVersion"] == "41"  # the write is refused if anyone wrote since
    assert body["spec"] == {
        "holderIdentity": "a_1",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-30T11:00:00.000000Z",
        "renewTime": "2026-11-30T12:00:00.123456Z",
        "leaseTransitions": 2,
    }


def test_a_takeover_counts_a_transition_and_starts_a_new_term() -> None:
    spec = claimed(lease("a_1"), "b_2", 15, NOW, name="perennial", namespace="ops")["spec"]
    assert spec["holderIdentity"] == "b_2"
    assert spec["leaseTransitions"] == 3
    assert spec["acquireTime"] == spec["renewTime"] == "2026-11-30T12:00:00.123456Z"


def test_a_first_claim_creates_the_lease() -> None:
    body = claimed(None, "a_1", 15.4, NOW, name="perennial", namespace="ops")
    assert body["metadata"] == {"name": "perennial", "namespace": "ops"}
    assert body["spec"]["leaseTransitions"] == 0
    assert body["spec"]["leaseDurationSeconds"] == 15


def test_a_release_frees_the_lease_and_keeps_the_count() -> None:
    body = released(lease("a_1", transitions=5), NOW)
    assert body["spec"]["holderIdentity"] == ""
    assert body["spec"]["leaseTransitions"] == 5
    assert body["metadata"]["resourceVersion"] == "41"
