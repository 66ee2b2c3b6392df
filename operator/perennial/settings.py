"""Operator settings, read once at start from environment variables.

Pure: parsing only, so every rule is unit-tested. The README ("Settings") and the Helm
chart's values document the same variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


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
    return Settings(
        namespaces=namespaces,
        prometheus_url=prometheus_url,
        log_level=log_level,
        log_format=log_format,
        metrics_address=env.get("PERENNIAL_METRICS_ADDRESS", "0.0.0.0").strip(),
        metrics_port=int(raw_port),
        api_qps=api_qps,
        api_burst=int(raw_burst),
    )
