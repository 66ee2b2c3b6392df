"""Operator settings, read once at start from environment variables (and the Prometheus endpoints file).

Parsing and validation only (no network), so every rule is unit-tested. docs/operations.md
("Settings", kept true by tests/unit/test_docs.py) and the Helm chart's values document the same variables.

Named Prometheus endpoints (``PERENNIAL_PROMETHEUS_ENDPOINTS_FILE``) carry credentials:
their secret fields are left out of every ``repr``, and no error message quotes a value
of a secret field (a token, a password, a header value, a private key).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    # Named Prometheus endpoints (url, credentials, headers, TLS), read from this file
    # (PERENNIAL_PROMETHEUS_ENDPOINTS_FILE), plus the endpoint "default" that
    # PERENNIAL_PROMETHEUS_URL stands for when it is set. Sorted by name.
    prometheus_endpoints_file: str = ""
    prometheus_endpoints: tuple[EndpointSettings, ...] = ()

    @property
    def allowed_prometheus_urls(self) -> tuple[str, ...]:
        """Where DriftPolicies may send queries: the allowlist, else the default Prometheus."""
        if self.prometheus_allowed_urls:
            return self.prometheus_allowed_urls
        return (self.prometheus_url,) if self.prometheus_url else ()

    @property
    def default_prometheus(self) -> EndpointSettings | None:
        """The endpoint of DriftPolicies that name none: the endpoint named ``default``."""
        return endpoint_named(self.prometheus_endpoints, DEFAULT_ENDPOINT)

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
    endpoints_file = env.get(ENDPOINTS_FILE_VARIABLE, "").strip()
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
        prometheus_endpoints_file=endpoints_file,
        prometheus_endpoints=read_prometheus_endpoints(endpoints_file, prometheus_url),
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


# ---------------------------------------------------------------- named Prometheus endpoints
ENDPOINTS_FILE_VARIABLE = "PERENNIAL_PROMETHEUS_ENDPOINTS_FILE"
DEFAULT_ENDPOINT = "default"
"""The endpoint of DriftPolicies that name none: defined in the endpoints file, or by
PERENNIAL_PROMETHEUS_URL (then an endpoint without credentials); never by both."""
MAX_ENDPOINTS = 100
MAX_ENDPOINT_HEADERS = 32
_MAX_ENDPOINTS_FILE_BYTES = 1024 * 1024  # a Secret holds at most 1 MiB
_ENDPOINT_TIMEOUT = (1.0, 600.0)  # seconds, as PERENNIAL_PROMETHEUS_MAX_TIMEOUT
# RFC 9110 field names; values are one line without control characters (no header injection).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: one bearer token
# Headers the client sets itself (the byte cap needs an uncompressed answer) or that
# describe the connection rather than the request.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "accept",
        "accept-encoding",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    }
)
_ENDPOINT_KEYS = ("url", "bearerToken", "bearerTokenFile", "basicAuth", "headers", "tls", "timeout")
_BASIC_AUTH_KEYS = ("username", "password", "passwordFile")
_TLS_KEYS = ("ca", "caFile", "cert", "certFile", "key", "keyFile", "insecureSkipVerify")


@dataclass(frozen=True)
class EndpointTls:
    """How the operator checks an https endpoint, and the client certificate it presents."""

    ca: str = field(default="", repr=False)
    """PEM of the CA certificate(s) trusted for this endpoint, instead of the system's."""
    ca_file: str = ""
    cert: str = field(default="", repr=False)
    """PEM of the client certificate (with ``key``): mutual TLS."""
    cert_file: str = ""
    key: str = field(default="", repr=False)
    key_file: str = ""
    insecure_skip_verify: bool = False
    """Accept any server certificate (discouraged: anyone in the path can answer, and read the credentials)."""

    @property
    def custom(self) -> bool:
        return bool(self.has_ca or self.has_client_certificate or self.insecure_skip_verify)

    @property
    def has_ca(self) -> bool:
        return bool(self.ca or self.ca_file)

    @property
    def has_client_certificate(self) -> bool:
        return bool(self.cert or self.cert_file)

    @property
    def files(self) -> tuple[str, ...]:
        """The files this configuration reads (a change of any of them changes the TLS context)."""
        return tuple(path for path in (self.ca_file, self.cert_file, self.key_file) if path)


@dataclass(frozen=True)
class BasicAuth:
    username: str = field(repr=False)
    password: str = field(default="", repr=False)
    password_file: str = ""
    """Read at each request (cached while the file is unchanged), so a rotated password is used at once."""


@dataclass(frozen=True)
class EndpointSettings:
    """One named Prometheus endpoint: where it is, and how the operator authenticates to it."""

    name: str
    url: str
    """Base URL (no trailing slash): queries go to ``<url>/api/v1/query``."""
    bearer_token: str = field(default="", repr=False)
    bearer_token_file: str = ""
    """Read at each request (cached while the file is unchanged), as client-go reads token files."""
    basic_auth: BasicAuth | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Extra request headers (e.g. X-Scope-OrgID for Mimir, Cortex and Loki tenants)."""
    tls: EndpointTls = field(default_factory=EndpointTls)
    timeout_seconds: float | None = None
    """The longest one request to this endpoint may take (None: no bound beyond the policy's and the operator's)."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.bearer_token or self.bearer_token_file or self.basic_auth)

    def summary(self) -> str:
        """What the endpoint is configured with, for logs: never a secret value."""
        parts = []
        if self.bearer_token:
            parts.append("bearer token")
        if self.bearer_token_file:
            parts.append(f"bearer token from {self.bearer_token_file}")
        if self.basic_auth is not None:
            parts.append("basic auth")
        if self.headers:
            parts.append("headers " + ", ".join(name for name, _ in self.headers))
        if self.tls.has_ca:
            parts.append("its own CA")
        if self.tls.has_client_certificate:
            parts.append("a client certificate")
        if self.tls.insecure_skip_verify:
            parts.append("TLS verification off")
        if self.timeout_seconds is not None:
            parts.append(f"timeout {self.timeout_seconds:g}s")
        return f"{self.name} ({self.url}{'; ' if parts else ''}{', '.join(parts)})"


def endpoint_named(endpoints: Iterable[EndpointSettings], name: str) -> EndpointSettings | None:
    return next((endpoint for endpoint in endpoints if endpoint.name == name), None)


def endpoint_warnings(endpoints: Iterable[EndpointSettings]) -> list[str]:
    """Configurations that work but should not be used in production, one line each."""
    warnings = []
    for endpoint in endpoints:
        if endpoint.tls.insecure_skip_verify:
            credentials = " and sends its credentials to them" if endpoint.has_credentials else ""
            warnings.append(
                f"Prometheus endpoint {endpoint.name}: tls.insecureSkipVerify is on: the operator does not check"
                f" who answers at {endpoint.url}{credentials}"
            )
        if endpoint.has_credentials and endpoint.url.startswith("http://"):
            warnings.append(
                f"Prometheus endpoint {endpoint.name}: its credentials travel unencrypted to {endpoint.url}: use https"
            )
    return warnings


def read_prometheus_endpoints(path: str, prometheus_url: str = "") -> tuple[EndpointSettings, ...]:
    """The endpoints of the endpoints file at ``path`` (none if empty), plus ``default`` from PERENNIAL_PROMETHEUS_URL.

    Raises InvalidSettingsError naming the file, the endpoint and the field. Run at start
    and again whenever the file changes (a mounted Secret is updated in place).
    """
    return prometheus_endpoints(read_endpoints_file(path) if path else "", path, prometheus_url)


def prometheus_endpoints(text: str, path: str, prometheus_url: str = "") -> tuple[EndpointSettings, ...]:
    """``read_prometheus_endpoints`` of a file's text, read by the caller (who compares it with the last one)."""
    endpoints = parse_prometheus_endpoints(text, f"{ENDPOINTS_FILE_VARIABLE} ({path})") if path else []
    if prometheus_url:
        if endpoint_named(endpoints, DEFAULT_ENDPOINT) is not None:
            raise InvalidSettingsError(
                f"PERENNIAL_PROMETHEUS_URL and the endpoint named {DEFAULT_ENDPOINT} in {ENDPOINTS_FILE_VARIABLE}"
                f" ({path}) both define the default Prometheus: keep one (chart values prometheusUrl and"
                f" prometheus.endpoints.{DEFAULT_ENDPOINT})"
            )
        endpoints.append(EndpointSettings(DEFAULT_ENDPOINT, prometheus_url))
    return tuple(sorted(endpoints, key=lambda endpoint: endpoint.name))


def read_endpoints_file(path: str) -> str:
    """The endpoints file's text (at most 1 MiB of UTF-8)."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_ENDPOINTS_FILE_BYTES + 1)
    except OSError as error:
        raise InvalidSettingsError(f"{ENDPOINTS_FILE_VARIABLE}={path!r}: cannot read it ({error.strerror})") from None
    if len(data) > _MAX_ENDPOINTS_FILE_BYTES:
        raise InvalidSettingsError(f"{ENDPOINTS_FILE_VARIABLE}={path!r}: larger than 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSettingsError(f"{ENDPOINTS_FILE_VARIABLE}={path!r}: not UTF-8 text") from None


def parse_prometheus_endpoints(text: str, source: str = ENDPOINTS_FILE_VARIABLE) -> list[EndpointSettings]:
    """Endpoints from the file's text (YAML or JSON): ``{endpoints: {<name>: {url, ...}}}``."""
    import yaml  # only an operator with an endpoints file loads the parser

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # Only the position and the parser's complaint: the line itself may hold a secret.
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None)
        raise InvalidSettingsError(
            f"{source}: not valid YAML or JSON{at}{f' ({problem})' if problem else ''}"
        ) from None
    if document is None:
        return []
    if not isinstance(document, dict) or set(document) - {"endpoints"}:
        raise InvalidSettingsError(f"{source}: expected a mapping with one key, endpoints: {{<name>: {{url: ...}}}}")
    raw = document.get("endpoints") or {}
    if not isinstance(raw, dict):
        raise InvalidSettingsError(f"{source}: endpoints must be a mapping of endpoint names to endpoints")
    if len(raw) > MAX_ENDPOINTS:
        raise InvalidSettingsError(f"{source}: {len(raw)} endpoints; at most {MAX_ENDPOINTS}")
    return [_endpoint(name, spec, source) for name, spec in raw.items()]


def _endpoint(name: Any, spec: Any, source: str) -> EndpointSettings:
    if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
        raise InvalidSettingsError(
            f"{source}: endpoint name {str(name)[:80]!r} must be a DNS label (at most 63 lower-case letters,"
            " digits and '-', starting and ending with a letter or digit): DriftPolicies name it in"
            " spec.prometheus.endpoint"
        )
    where = f"{source}: endpoint {name}"
    fields = _mapping(spec, where, _ENDPOINT_KEYS)
    url = _url(fields.get("url"), where)
    token = _text(fields, "bearerToken", where, secret=True)
    token_file = _text(fields, "bearerTokenFile", where)
    basic_auth = _basic_auth(fields.get("basicAuth"), f"{where}: basicAuth")
    schemes = [key for key, given in (("bearerToken", token), ("bearerTokenFile", token_file)) if given]
    if basic_auth is not None:
        schemes.append("basicAuth")
    if len(schemes) > 1:
        raise InvalidSettingsError(f"{where}: {' and '.join(schemes)} are exclusive: give one way to authenticate")
    if token and not _TOKEN.match(token):
        raise InvalidSettingsError(f"{where}: bearerToken must be one line of printable characters, without spaces")
    if token_file:
        _check_secret_file(token_file, f"{where}: bearerTokenFile", token=True)
    headers = _headers(fields.get("headers"), f"{where}: headers", authenticated=bool(schemes))
    tls = _tls(fields.get("tls"), f"{where}: tls")
    if tls.custom and url.startswith("http://"):
        raise InvalidSettingsError(f"{where}: tls is set but url is http://: TLS settings apply to https:// URLs")
    timeout = None
    if fields.get("timeout") is not None:
        timeout = _endpoint_timeout(fields["timeout"], f"{where}: timeout")
    endpoint = EndpointSettings(name, url, token, token_file, basic_auth, headers, tls, timeout)
    ssl_context(endpoint, where=f"{where}: tls")  # the CA parses, the certificate matches its key
    return endpoint


def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidSettingsError(f"{where}: expected a mapping with {', '.join(keys)}")
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown:
        raise InvalidSettingsError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(keys)}")
    return value


def _text(fields: Mapping[str, Any], key: str, where: str, *, secret: bool = False, numbers: bool = False) -> str:
    """A string field ('' when absent); ``numbers``: a YAML number (a numeric user id) is taken as its text."""
    value = fields.get(key)
    if value is None:
        return ""
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidSettingsError(f"{where}: {key} must be a string{' (quote it)' if numbers else ''}")
    if _CONTROL.search(value.strip()):
        # Not a word of the value itself: it may be a secret.
        raise InvalidSettingsError(f"{where}: {key} must be one line without control characters")
    # A password may begin or end with a space; a line break at its end is the file's.
    return value.strip("\r\n") if secret else value.strip()


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettingsError(f"{where}: url is required (the base URL, e.g. https://thanos.monitoring:10902)")
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        raise InvalidSettingsError(f"{where}: url is not a valid URL") from None
    if "@" in parts.netloc:
        # Not quoted: the user-info part is a credential.
        raise InvalidSettingsError(f"{where}: url must not hold credentials: use basicAuth")
    # The URL is not quoted in these messages either: a query string may carry a key.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSettingsError(f"{where}: url is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or _CONTROL.search(url) or " " in url:
        raise InvalidSettingsError(f"{where}: url must be a base URL, without a query, fragment or spaces")
    return url


def _check_secret_file(path: str, where: str, *, token: bool) -> None:
    """A credential file must exist and hold something at start; its content is read again at each use."""
    if not os.path.isabs(path):
        raise InvalidSettingsError(f"{where}: {path!r} must be an absolute path")
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise InvalidSettingsError(f"{where}: cannot read {path} ({reason})") from None
    if not content:
        raise InvalidSettingsError(f"{where}: {path} is empty")
    if (token and not _TOKEN.match(content)) or _CONTROL.search(content):
        raise InvalidSettingsError(f"{where}: {path} must hold one line of printable characters")


def _basic_auth(value: Any, where: str) -> BasicAuth | None:
    if value is None:
        return None
    fields = _mapping(value, where, _BASIC_AUTH_KEYS)
    username = _text(fields, "username", where, numbers=True)
    if not username or ":" in username:
        raise InvalidSettingsError(f"{where}: username is required and may not contain ':'")
    password = _text(fields, "password", where, secret=True, numbers=True)
    password_file = _text(fields, "passwordFile", where)
    if ("password" in fields) == bool(password_file):
        raise InvalidSettingsError(f"{where}: give exactly one of password or passwordFile")
    if password_file:
        _check_secret_file(password_file, f"{where}: passwordFile", token=False)
    return BasicAuth(username, password, password_file)


def _headers(value: Any, where: str, *, authenticated: bool) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidSettingsError(f"{where}: expected a mapping of header names to values")
    if len(value) > MAX_ENDPOINT_HEADERS:
        raise InvalidSettingsError(f"{where}: {len(value)} headers; at most {MAX_ENDPOINT_HEADERS}")
    headers: dict[str, tuple[str, str]] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidSettingsError(f"{where}: {str(name)[:80]!r} is not an HTTP header name")
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS:
            raise InvalidSettingsError(f"{where}: {name} is set by the operator itself")
        if lowered == "authorization" and authenticated:
            raise InvalidSettingsError(f"{where}: Authorization conflicts with bearerToken or basicAuth: give one")
        if lowered in headers:
            raise InvalidSettingsError(f"{where}: {name} is given twice")
        text = _text({name: raw}, name, where, secret=True, numbers=True)
        headers[lowered] = (name, text)
    return tuple(headers.values())


def _tls(value: Any, where: str) -> EndpointTls:
    if value is None:
        return EndpointTls()
    fields = _mapping(value, where, _TLS_KEYS)
    pems = {key: _pem(fields.get(key), f"{where}: {key}") for key in ("ca", "cert", "key")}
    files = {key: _text(fields, key, where) for key in ("caFile", "certFile", "keyFile")}
    for path_key, path in files.items():
        if path and not os.path.isabs(path):
            raise InvalidSettingsError(f"{where}: {path_key} {path!r} must be an absolute path")
    for key in ("ca", "cert", "key"):
        if pems[key] and files[f"{key}File"]:
            raise InvalidSettingsError(f"{where}: {key} and {key}File are exclusive")
    has_cert, has_key = bool(pems["cert"] or files["certFile"]), bool(pems["key"] or files["keyFile"])
    if has_cert != has_key:
        raise InvalidSettingsError(f"{where}: a client certificate needs both cert (or certFile) and key (or keyFile)")
    insecure = fields.get("insecureSkipVerify", False)
    if not isinstance(insecure, bool):
        raise InvalidSettingsError(f"{where}: insecureSkipVerify must be true or false")
    if insecure and (pems["ca"] or files["caFile"]):
        raise InvalidSettingsError(f"{where}: insecureSkipVerify turns off the verification ca is for: give one")
    return EndpointTls(
        ca=pems["ca"],
        ca_file=files["caFile"],
        cert=pems["cert"],
        cert_file=files["certFile"],
        key=pems["key"],
        key_file=files["keyFile"],
        insecure_skip_verify=insecure,
    )


def _pem(value: Any, where: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or "-----BEGIN " not in value:
        raise InvalidSettingsError(f"{where}: expected PEM text (-----BEGIN ...)")
    return value.strip() + "\n"


def _endpoint_timeout(value: Any, where: str) -> float:
    low, high = _ENDPOINT_TIMEOUT
    try:
        seconds = parse_duration(str(value)).total_seconds() if isinstance(value, str) else -1.0
    except InvalidDurationError:
        seconds = -1.0
    if not low <= seconds <= high:
        raise InvalidSettingsError(f"{where}: use a duration such as 10s, between {low:g}s and {high:g}s")
    return seconds


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise _EncryptedKeyError


def ssl_context(endpoint: EndpointSettings, *, where: str | None = None) -> ssl.SSLContext | None:
    """The TLS context of an endpoint with TLS settings of its own; None: the system's defaults.

    The one place TLS contexts are built: at start (to refuse a bad CA or a certificate
    that does not match its key) and by the Prometheus client. With a CA of its own an
    endpoint trusts only that CA, as Prometheus's own ``tls_config.ca`` does.
    """
    tls = endpoint.tls
    if not tls.custom:
        return None
    where = where or f"Prometheus endpoint {endpoint.name}: tls"
    context = ssl.create_default_context()
    if tls.has_ca:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if tls.ca:
                context.load_verify_locations(cadata=tls.ca)
            else:
                context.load_verify_locations(cafile=tls.ca_file)
        except (ssl.SSLError, ValueError) as error:
            key = "ca" if tls.ca else f"caFile {tls.ca_file}"
            raise InvalidSettingsError(f"{where}: {key}: not a PEM certificate ({_ssl_reason(error)})") from None
        except OSError as error:
            raise InvalidSettingsError(f"{where}: caFile: cannot read {tls.ca_file} ({error.strerror})") from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.has_client_certificate:
        _load_client_certificate(context, tls, where)
    return context


def _load_client_certificate(context: ssl.SSLContext, tls: EndpointTls, where: str) -> None:
    # ssl loads a certificate and key only from files: PEM given inline goes to a private
    # temporary directory for the moment it is read.
    with contextlib.ExitStack() as stack:
        cert_path, key_path = tls.cert_file, tls.key_file
        if tls.cert or tls.key:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perennial-tls-")))
            if tls.cert:
                cert_path = _private_file(directory / "cert.pem", tls.cert)
            if tls.key:
                key_path = _private_file(directory / "key.pem", tls.key)
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _EncryptedKeyError:
            raise InvalidSettingsError(f"{where}: key: the private key is encrypted; give it unencrypted") from None
        except ssl.SSLError as error:
            raise InvalidSettingsError(
                f"{where}: cert and key: not a PEM certificate and its private key ({_ssl_reason(error)})"
            ) from None
        except OSError as error:
            raise InvalidSettingsError(
                f"{where}: certFile/keyFile: cannot read {error.filename or cert_path} ({error.strerror})"
            ) from None


def _private_file(path: Path, text: str) -> str:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return str(path)


def _ssl_reason(error: Exception) -> str:
    """OpenSSL's short reason (KEY_VALUES_MISMATCH -> "key values mismatch"): never file content."""
    reason = getattr(error, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    text = str(error.args[-1]) if error.args else "invalid"
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
