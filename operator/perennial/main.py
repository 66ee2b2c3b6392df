"""The operator as kopf sees it: importing this module registers every handler.

``perennial run`` runs it; tests run it with ``kopf.testing.KopfRunner`` (``-m
perennial.main``) or as a subprocess, so all three share this one wiring.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from perennial import settings as settings_module
from perennial.adapters.http_server import OperatorHTTPServer

GROUP = "perennial.dev"
logger = logging.getLogger("perennial")

_http_server: OperatorHTTPServer | None = None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's built-ins read KUBECONFIG when called, not when the client library was
    # imported, so an operator embedded in a test process finds the right cluster.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _http_server
    config = settings_module.from_environment()
    # Our own prefixes, so Perennial's bookkeeping never collides with another operator's.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Bounded watches and requests: a dead connection is noticed and re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    _http_server = OperatorHTTPServer(config.metrics_address, config.metrics_port)
    await _http_server.start()
    logger.info(
        "perennial started: metrics on %s:%d, watching %s",
        config.metrics_address,
        config.metrics_port,
        ", ".join(config.namespaces) or "all namespaces",
    )


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    global _http_server
    if _http_server is not None:
        await _http_server.stop()
        _http_server = None
