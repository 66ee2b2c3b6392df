"""Operator settings, read once at start from environment variables.

Pure: parsing only, so every rule is unit-tested. The README ("Settings") and the Helm
chart's values document the same variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from perennial.api.durations import InvalidDurationError, parse_duration

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
DEFAULT_LEASE_NAMESPACE = "perennial-system"
# A Lease's name: a DNS subdomain (what the API server accepts for metadata.name).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class InvalidSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    # Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    # Prometheus used by DriftPolicies that name none of their own.
    prometheus_url: str = ""
    log_level: str = "INFO"
    log_format: str = "text"
    # /metrics and /healthz. In a pod it must listen on all interfaces; local runs
    # and tests bind 127.0.0.1.
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    # Client-side limit on the operator's own API requests. 0 (the default) leaves the
    # pacing to the API server's Priority and Fairness, as SIG API Machinery advises and
    # controller-runtime does; in-flight requests are bounded either way (see KubeClient).
    api_qps: float = 0.0
    api_burst: int = 100
    # Prometheus endpoints a DriftPolicy may query (base URLs). Empty means only
    # prometheus_url: a DriftPolicy's spec is not a way to make the operator send
    # requests anywhere a namespace user chooses (an SSRF from inside the cluster).
    prometheus_allowed_urls: tuple[str, ...] = ()
    # The largest Prometheus answer read; a bigger one is a QueryError, not an OOM.
    prometheus_max_response_bytes: int = 10 * 1024 * 1024
    # Upper bound of one Prometheus request, whatever a policy's spec.prometheus.timeout.
    prometheus_max_timeout_seconds: float = 30.0
    # A training pod that has not started this long after its Job was created (an
    # unpullable image, an unschedulable pod) fails the run (TrainingJob default).
    training_start_deadline_seconds: float = 600.0
    # Every object is re-queued this often from a fresh LIST, so a missed watch event
    # never leaves an object unreconciled (nor a deleted one cached).
    resync_period_seconds: float = 600.0
    # Leader election: of all replicas, only the holder of the Lease reconciles. The
    # others keep their caches warm and take over when the holder stops renewing.
    leader_election: bool = True
    lease_name: str = "perennial"
    lease_namespace: str = DEFAULT_LEASE_NAMESPACE
    # client-go's defaults: a dead leader is replaced about lease_duration after its last
    # renewal; a leader that cannot renew for renew_deadline stops reconciling first.
    lease_duration_seconds: float = 15.0
    lease_renew_deadline_seconds: float = 10.0
    lease_retry_period_seconds: float = 2.0
    # Who this replica is in the Lease: POD_NAME in a pod; empty: the host name.
    identity: str = ""

    @property
    def allowed_prometheus_urls(self) -> tuple[str, ...]:
        """Where DriftPolicies may send queries: the allowlist, else the default Prometheus."""
        if self.prometheus_allowed_urls:
            return self.prometheus_allowed_urls
        return (self.prometheus_url,) if self.prometheus_url else ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``PERENNIAL_*`` variables; an invalid value names the variable."""
    env = os.environ if environ is None else environ
    namespaces = tuple(
        sorted({name.strip() for name in env.get("PERENNIAL_NAMESPACES", "").split(",") if name.strip()})
    )
    log_level = env.get("PERENNIAL_LOG_LEVEL", "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        raise InvalidSettingsError(f"PERENNIAL_LOG_LEVEL={log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    log_format = env.get("PERENNIAL_LOG_FORMAT", "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise InvalidSettingsError(f"PERENNIAL_LOG_FORMAT={log_format!r}: use one of {', '.join(LOG_FORMATS)}")
    raw_port = env.get("PERENNIAL_METRICS_PORT", "8080").strip()
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise InvalidSettingsError(f"PERENNIAL_METRICS_PORT={raw_port!r}: use a port number 1-65535")
    prometheus_url = env.get("PERENNIAL_PROMETHEUS_URL", "").strip().rstrip("/")
    if prometheus_url and not prometheus_url.startswith(("http://", "https://")):
        raise InvalidSettingsError(f"PERENNIAL_PROMETHEUS_URL={prometheus_url!r}: use an http:// or https:// URL")
    raw_qps = env.get("PERENNIAL_API_QPS", "0").strip()
    try:
        api_qps = float(raw_qps)
    except ValueError:
        api_qps = -1.0
    if not 0 <= api_qps <= 10_000:
        raise InvalidSettingsError(
            f"PERENNIAL_API_QPS={raw_qps!r}: use requests per second, 0-10000 (0 turns the client-side limit off)"
        )
    raw_burst = env.get("PERENNIAL_API_BURST", "100").strip()
    if not raw_burst.isdigit() or not 1 <= int(raw_burst) <= 100_000:
        raise InvalidSettingsError(f"PERENNIAL_API_BURST={raw_burst!r}: use a whole number 1-100000")
    allowed = []
    for raw in env.get("PERENNIAL_PROMETHEUS_ALLOWED_URLS", "").split(","):
        url = raw.strip().rstrip("/")
        if not url:
            continue
        if not url.startswith(("http://", "https://")):
            raise InvalidSettingsError(f"PERENNIAL_PROMETHEUS_ALLOWED_URLS: {url!r} is not an http:// or https:// URL")
        allowed.append(url)
    raw_cap = env.get("PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES", str(10 * 1024 * 1024)).strip()
    if not raw_cap.isdigit() or not 1024 <= int(raw_cap) <= 1024**3:
        raise InvalidSettingsError(
            f"PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES={raw_cap!r}: use a whole number of bytes, 1024-1073741824"
        )
    leader_election = env.get("PERENNIAL_LEADER_ELECTION", "true").strip().lower()
    if leader_election not in ("true", "false"):
        raise InvalidSettingsError(f"PERENNIAL_LEADER_ELECTION={leader_election!r}: use true or false")
    lease_name = env.get("PERENNIAL_LEASE_NAME", "perennial").strip()
    if len(lease_name) > 253 or not _DNS_SUBDOMAIN.match(lease_name):
        raise InvalidSettingsError(
            f"PERENNIAL_LEASE_NAME={lease_name!r}: use a DNS subdomain name (lower case letters, digits, '-', '.')"
        )
    # The chart sets POD_NAMESPACE from the downward API: the Lease lives beside the pods.
    lease_namespace_variable = "POD_NAMESPACE" if env.get("POD_NAMESPACE", "").strip() else "PERENNIAL_LEASE_NAMESPACE"
    lease_namespace = env.get(lease_namespace_variable, "").strip() or DEFAULT_LEASE_NAMESPACE
    if len(lease_namespace) > 63 or not _DNS_LABEL.match(lease_namespace):
        raise InvalidSettingsError(f"{lease_namespace_variable}={lease_namespace!r}: use a namespace name")
    lease_duration = _seconds(env, "PERENNIAL_LEASE_DURATION", "15s", 1, 3600)
    renew_deadline = _seconds(env, "PERENNIAL_LEASE_RENEW_DEADLINE", "10s", 1, 3600)
    retry_period = _seconds(env, "PERENNIAL_LEASE_RETRY_PERIOD", "2s", 1, 3600)
    # client-go's rules: a leader gives up (renew deadline) before anyone may take over
    # (lease duration), and retries at least once within the deadline.
    if not lease_duration > renew_deadline:
        raise InvalidSettingsError(
            f"PERENNIAL_LEASE_DURATION ({lease_duration:g}s) must be longer than "
            f"PERENNIAL_LEASE_RENEW_DEADLINE ({renew_deadline:g}s)"
        )
    if not renew_deadline > 1.2 * retry_period:
        raise InvalidSettingsError(
            f"PERENNIAL_LEASE_RENEW_DEADLINE ({renew_deadline:g}s) must be longer than 1.2 x "
            f"PERENNIAL_LEASE_RETRY_PERIOD ({retry_period:g}s)"
        )
    return Settings(
        namespaces=namespaces,
        prometheus_url=prometheus_url,
        log_level=log_level,
        log_format=log_format,
        metrics_address=env.get("PERENNIAL_METRICS_ADDRESS", "0.0.0.0").strip(),
        metrics_port=int(raw_port),
        api_qps=api_qps,
        api_burst=int(raw_burst),
        prometheus_allowed_urls=tuple(dict.fromkeys(allowed)),
        prometheus_max_response_bytes=int(raw_cap),
        prometheus_max_timeout_seconds=_seconds(env, "PERENNIAL_PROMETHEUS_MAX_TIMEOUT", "30s", 1, 600),
        training_start_deadline_seconds=_seconds(env, "PERENNIAL_TRAINING_START_DEADLINE", "10m", 1, 7 * 86400),
        resync_period_seconds=_seconds(env, "PERENNIAL_RESYNC_PERIOD", "10m", 1, 86400),
        leader_election=leader_election == "true",
        lease_name=lease_name,
        lease_namespace=lease_namespace,
        lease_duration_seconds=lease_duration,
        lease_renew_deadline_seconds=renew_deadline,
        lease_retry_period_seconds=retry_period,
        identity=env.get("POD_NAME", "").strip(),
    )


def _seconds(env: Mapping[str, str], name: str, default: str, low: float, high: float) -> float:
    """A duration setting (``30s``, ``10m``) in seconds, within [low, high]."""
    raw = env.get(name, default).strip()
    try:
        seconds = parse_duration(raw).total_seconds()
    except InvalidDurationError:
        seconds = -1.0
    if not low <= seconds <= high:
        raise InvalidSettingsError(f"{name}={raw!r}: use a duration such as {default}, between {low:g}s and {high:g}s")
    return seconds
