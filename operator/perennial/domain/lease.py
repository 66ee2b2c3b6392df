"""Leader election's rules on a coordination.k8s.io/v1 Lease, as client-go applies them.

Pure: the elector (``perennial.adapters.leader``) reads and writes the Lease; these
functions decide. Expiry is judged by *this replica's* clock from the moment it first saw
the holder's latest renewal, never by comparing the holder's ``renewTime`` with our clock:
two machines' clocks may disagree, the rate at which time passes does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The renewTime/acquireTime format of a Lease (metav1.MicroTime).
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says about its holder; compared between reads to notice a renewal."""

    holder: str
    duration_seconds: int
    acquire_time: str
    renew_time: str
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


def micro_time(moment: datetime) -> str:
    return moment.strftime(MICRO_TIME)


def held_by_another(record: LeaseRecord, identity: str, observed_at: float, now: float, lease_duration: float) -> bool:
    """Whether someone else holds the lease: named in it, and renewed within ``lease_duration``.

    ``observed_at`` is when this replica first saw ``record`` (its monotonic clock); a
    released lease (no holder) is free at once.
    """
    return bool(record.holder) and record.holder != identity and now < observed_at + lease_duration


def seconds_until_free(
    record: LeaseRecord, identity: str, observed_at: float, now: float, lease_duration: float
) -> float:
    """How long a candidate waits before the lease it saw may be taken (0: now)."""
    if not held_by_another(record, identity, observed_at, now, lease_duration):
        return 0.0
    return observed_at + lease_duration - now


def claimed(
    lease: dict[str, Any] | None, identity: str, lease_duration: float, now: datetime, *, name: str, namespace: str
) -> dict[str, Any]:
    """The Lease with ``identity`` holding it from ``now``: a renewal, a takeover or a first claim.

    A renewal keeps the acquire time and the transition count; a takeover counts one more
    transition. The returned object carries the read's resourceVersion, so writing it is
    refused (409) if anyone wrote the Lease since: two candidates never both win.
    """
    record = LeaseRecord.of(lease) if lease is not None else None
    renewing = record is not None and record.holder == identity
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(lease_duration)),
        "acquireTime": record.acquire_time if renewing and record and record.acquire_time else micro_time(now),
        "renewTime": micro_time(now),
        "leaseTransitions": (record.transitions if renewing else record.transitions + 1) if record else 0,
    }
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if lease is not None:
        metadata = {**lease.get("metadata", {}), **metadata}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def released(lease: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The Lease given up by its holder at shutdown (client-go's ReleaseOnCancel): free at once."""
    record = LeaseRecord.of(lease)
    spec = {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": micro_time(now),
        "renewTime": micro_time(now),
        "leaseTransitions": record.transitions,
    }
    return {**lease, "spec": spec}
