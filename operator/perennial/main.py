"""The operator as kopf sees it: importing this module registers every handler.

``perennial run`` runs it; tests run it with ``kopf.testing.KopfRunner`` (``-m
perennial.main``) or as a subprocess, so all three share this one wiring.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from perennial import settings as settings_module
from perennial.adapters.http_server import OperatorHTTPServer
from perennial.adapters.kube import Credentials, KubeClient
from perennial.controllers import driftpolicy, modeldeployment, trainingjob  # noqa: F401 - registers handlers
from perennial.controllers.runtime import Runtime

GROUP = "perennial.dev"
logger = logging.getLogger("perennial")

_http_server: OperatorHTTPServer | None = None


def _connection(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    # kopf's built-ins read KUBECONFIG when called, not when the client library was
    # imported, so an operator embedded in a test process finds the right cluster.
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    return _connection(settings)


def _credentials(info: kopf.ConnectionInfo) -> Credentials:
    def path(value: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None) -> str | None:
        return os.fsdecode(value) if value is not None else None

    return Credentials(
        server=info.server,
        ca_data=info.ca_data,
        ca_path=path(info.ca_path),
        insecure=bool(info.insecure),
        certificate_data=info.certificate_data,
        certificate_path=path(info.certificate_path),
        private_key_data=info.private_key_data,
        private_key_path=path(info.private_key_path),
        token=info.token,
    )


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """No diff base: every Perennial handler is ``on.event`` (watch -> cache -> work queue).

    Those handlers never diff, yet kopf builds the diff base of every watch event anyway,
    a deep copy of the whole object: about a tenth of the operator's CPU at N=1000
    (benchmarks/README.md). ``tests/unit/test_wiring.py`` fails if a handler that diffs
    (``on.create``/``on.update``/``on.field``/daemons/timers) is ever registered.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    global _http_server
    config = settings_module.from_environment()
    # Our own prefixes, so Perennial's bookkeeping never collides with another operator's.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.posting.level = logging.INFO
    # Bounded watches and requests: a dead connection is noticed and re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    info = _connection(settings)
    if info is None:
        raise kopf.PermanentError("no cluster credentials: set KUBECONFIG or run in a pod")
    client = KubeClient(_credentials(info), qps=config.api_qps, burst=config.api_burst)
    runtime = Runtime(client=client, settings=config)
    runtime.start()
    memo.runtime = runtime
    _http_server = OperatorHTTPServer(config.metrics_address, config.metrics_port)
    await _http_server.start()
    logger.info(
        "perennial started: metrics on %s:%d, watching %s",
        config.metrics_address,
        config.metrics_port,
        ", ".join(config.namespaces) or "all namespaces",
    )


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    global _http_server
    runtime = getattr(memo, "runtime", None)
    if isinstance(runtime, Runtime):
        await runtime.stop()
    if _http_server is not None:
        await _http_server.stop()
        _http_server = None
