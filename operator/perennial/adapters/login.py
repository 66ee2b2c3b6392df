"""Which cluster, as whom: credentials loaded by the official client and kept fresh.

One ``Login`` serves both of the operator's API clients: kopf's watches (through the
``kopf.on.login`` handler in ``perennial.main``) and the operator's own requests
(``KubeClient``). The ``kubernetes.aio`` config loaders do the reading: in-cluster
ServiceAccount files, and kubeconfigs with client certificates, static tokens, token
files, exec credential plugins (EKS, GKE, AKS, kubelogin) and OIDC. What they do not do
is decide *when* to read again; that is here:

- in a pod, the projected token is re-read every minute (the kubelet rotates it well
  before it expires; client-go re-reads it the same way);
- a kubeconfig's exec plugin runs again shortly before the expiry it reported, and a
  ``tokenFile`` is re-read every minute;
- any 401 logs in afresh at once (``refresh``), whatever the expiry said.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.aio.client import Configuration
from kubernetes.aio.config import ConfigException, kube_config
from kubernetes.aio.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)

logger = logging.getLogger(__name__)

# How long a token read from a file is used before the file is read again (client-go: 1m).
TOKEN_FILE_REREAD = timedelta(minutes=1)
# Credentials with an expiry are renewed this share of their lifetime early (bounded),
# so no request goes out with a token about to expire.
RENEW_EARLY_SHARE = 0.1
RENEW_EARLY_MIN = timedelta(seconds=1)
RENEW_EARLY_MAX = timedelta(minutes=5)


class LoginError(Exception):
    """No usable credentials: not in a pod, and no readable kubeconfig."""


@dataclass(frozen=True)
class Credentials:
    """One login's result: where the API server is, how to trust it, and who we are."""

    configuration: Configuration  # host and TLS material, as the official client holds them
    authorization: str | None  # the Authorization header (``Bearer <token>``), if any
    renew_at: datetime | None  # log in again from then on; None: only after a 401
    source: str  # for logs: "in-cluster" or the kubeconfig's path
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def server(self) -> str:
        return str(self.configuration.host).rstrip("/")

    @property
    def token(self) -> str | None:
        """The bearer token alone (kopf's ConnectionInfo wants it without its scheme)."""
        if self.authorization and self.authorization.lower().startswith("bearer "):
            return self.authorization[len("bearer ") :].strip()
        return None

    @property
    def transport(self) -> tuple[Any, ...]:
        """What an HTTP connection pool is built from: a change needs a new pool."""
        c = self.configuration
        return (c.host, c.ssl_ca_cert, c.ca_cert_data, c.cert_file, c.key_file, c.verify_ssl, c.tls_server_name)

    def due(self, now: datetime | None = None) -> bool:
        return self.renew_at is not None and (now or datetime.now(UTC)) >= self.renew_at


def renew_time(loaded_at: datetime, expires_at: datetime | None) -> datetime | None:
    """When to log in again, given when the credentials expire (None: never on our own)."""
    if expires_at is None:
        return None
    early = (expires_at - loaded_at) * RENEW_EARLY_SHARE
    return expires_at - min(max(early, RENEW_EARLY_MIN), RENEW_EARLY_MAX)


def in_cluster(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get(SERVICE_HOST_ENV_NAME)) and Path(SERVICE_TOKEN_FILENAME).is_file()


class Login:
    """Loads credentials on first use and again whenever they are due or refused.

    ``kubeconfig``: a path (or ``os.pathsep``-separated paths, as ``KUBECONFIG``); None
    reads ``KUBECONFIG`` when logging in (not when imported: a test process points it
    at its cluster after start), else ``~/.kube/config``. In a pod (the in-cluster
    environment and token file present) the ServiceAccount wins, as for the operator;
    ``in_cluster_first=False`` reads the kubeconfig even there (a command-line tool
    given a kubeconfig, as kubectl does).
    """

    def __init__(
        self, kubeconfig: str | None = None, context: str | None = None, *, in_cluster_first: bool = True
    ) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._in_cluster_first = in_cluster_first
        self._current: Credentials | None = None
        self._loader: kube_config.KubeConfigLoader | None = None
        self._lock = asyncio.Lock()

    async def credentials(self, fresh_for: timedelta = timedelta(0)) -> Credentials:
        """The credentials to use now: the cached ones unless they are due for renewal.

        ``fresh_for``: also renew the cached ones if they fall due within that time (for a
        holder that keeps them until they expire, as kopf does).
        """
        current = self._current
        if current is not None and not current.due(datetime.now(UTC) + fresh_for):
            return current
        async with self._lock:
            if self._current is current or self._current is None:  # nobody logged in meanwhile
                self._current = await self._load()
            return self._current

    async def refresh(self, refused: Credentials) -> Credentials:
        """Log in afresh after ``refused`` got a 401, unless another request already did."""
        async with self._lock:
            if self._current is refused or self._current is None:
                logger.info("the API server refused our credentials (401): logging in again")
                self._current = await self._load()
            return self._current

    async def _load(self) -> Credentials:
        first = self._current is None
        use_pod = self._in_cluster_first and in_cluster()
        credentials = self._load_in_cluster() if use_pod else await self._load_kubeconfig()
        logger.log(
            logging.INFO if first else logging.DEBUG,
            "credentials for %s from %s%s",
            credentials.server,
            credentials.source,
            f", renewed from {credentials.renew_at.isoformat()}" if credentials.renew_at else "",
        )
        return credentials

    def _load_in_cluster(self) -> Credentials:
        configuration = Configuration()
        InClusterConfigLoader(SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME, try_refresh_token=False).load_and_set(
            configuration
        )
        now = datetime.now(UTC)
        return Credentials(
            configuration,
            _authorization(configuration),
            renew_at=now + TOKEN_FILE_REREAD,
            source="in-cluster",
            loaded_at=now,
        )

    def _kubeconfig_path(self) -> str:
        path = self._kubeconfig or os.environ.get("KUBECONFIG") or kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        return os.path.expanduser(path)

    async def _load_kubeconfig(self) -> Credentials:
        path = self._kubeconfig_path()
        configuration = Configuration()
        try:
            if self._loader is None:
                self._loader = await kube_config.load_kube_config(
                    config_file=path, context=self._context, client_configuration=configuration, persist_config=False
                )
            else:
                # The same loader keeps what it refreshed in memory (an OIDC id-token and
                # its rotated refresh token); we only log in again when the credentials
                # are due or refused, so its exec plugin must run again whatever the
                # plugin's cached expiry says.
                vars(self._loader).pop("exec_plugin_expiry", None)
                await self._loader.load_and_set(configuration)
        except (ConfigException, OSError) as error:
            raise LoginError(f"no usable kubeconfig at {path}: {error}") from error
        now = datetime.now(UTC)
        return Credentials(
            configuration,
            _authorization(configuration),
            renew_at=renew_time(now, _expiry(self._loader, now)),
            source=path,
            loaded_at=now,
        )


def _authorization(configuration: Configuration) -> str | None:
    # The loaders store the header value whole ("Bearer <token>", "bearer <token>" in a pod,
    # "Basic ..." for a username and password).
    value = configuration.api_key.get("BearerToken")
    return str(value).strip() if value else None


def _expiry(loader: kube_config.KubeConfigLoader | None, now: datetime) -> datetime | None:
    """When the kubeconfig's credentials stop working, as far as the kubeconfig tells."""
    if loader is None:
        return None
    expiry = getattr(loader, "exec_plugin_expiry", None)
    if isinstance(expiry, datetime):
        return expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
    # The loader keeps the current user's section privately; a token file is re-read
    # every minute, as client-go does, so a rotated file takes effect.
    user = getattr(loader, "_user", None)
    if user is not None and "tokenFile" in user:
        return now + TOKEN_FILE_REREAD
    return None
