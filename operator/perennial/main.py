"""The operator as kopf sees it: importing this module registers every handler.

``perennial run`` runs it; tests run it with ``kopf.testing.KopfRunner`` (``-m
perennial.main``) or as a subprocess, so all three share this one wiring.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from perennial import settings as settings_module
from perennial.adapters.http_server import OperatorHTTPServer
from perennial.adapters.kube import Credentials, KubeClient
from perennial.adapters.prometheus import PrometheusClient
from perennial.adapters.store import ObjectStore
from perennial.controllers.context import (
    DEPLOYMENT_WATCH,
    DRIFT_POLICY_WATCH,
    JOB_WATCH,
    MODEL_DEPLOYMENT_WATCH,
    SERVICE_WATCH,
    TRAINING_JOB_WATCH,
    Cluster,
    Resync,
    Watch,
)
from perennial.controllers.driftpolicy import DriftPolicyController
from perennial.controllers.modeldeployment import ModelDeploymentController
from perennial.controllers.trainingjob import TrainingJobController

logger = logging.getLogger("perennial")

_http_server: OperatorHTTPServer | None = None


@dataclass
class Operator:
    """Everything one running operator holds: the shared caches, the three controllers, the resync."""

    cluster: Cluster
    prometheus: PrometheusClient
    trainingjobs: TrainingJobController
    modeldeployments: ModelDeploymentController
    driftpolicies: DriftPolicyController
    resync: Resync

    @classmethod
    def build(cls, cluster: Cluster) -> Operator:
        prometheus = PrometheusClient()
        return cls(
            cluster,
            prometheus,
            TrainingJobController(cluster),
            ModelDeploymentController(cluster),
            DriftPolicyController(cluster, prometheus),
            Resync(cluster),
        )

    def start(self) -> None:
        self.cluster.events.start()
        for controller in (self.trainingjobs, self.modeldeployments, self.driftpolicies):
            controller.start()
        self.resync.start()

    async def stop(self) -> None:
        await self.resync.stop()
        for controller in (self.trainingjobs, self.modeldeployments, self.driftpolicies):
            await controller.stop()
        await self.cluster.events.stop()
        await self.cluster.client.close()
        await self.prometheus.close()


def _cluster(memo: kopf.Memo) -> Cluster:
    operator = getattr(memo, "operator", None)
    if not isinstance(operator, Operator):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return operator.cluster


# ---------------------------------------------------------------- watches
# One watch per kind feeds one cache (an informer); the controllers subscribed to a cache
# queue their keys. Each watch selects what its ``Watch`` says (children by the labels
# Perennial puts on them), the same objects the periodic resync lists.
def _feed(store: ObjectStore, event: Mapping[str, Any]) -> None:
    store.apply_event(event.get("type"), event["object"])


def _labels(watch: Watch) -> dict[str, Any] | None:
    return {key: kopf.PRESENT if value is None else value for key, value in watch.labels.items()} or None


def _watched(watch: Watch) -> kopf.on.WatchingDecorator:
    """kopf's ``on.event`` for ``watch``'s kind and labels."""
    return kopf.on.event(watch.resource.group, watch.resource.version, watch.resource.plural, labels=_labels(watch))


@_watched(TRAINING_JOB_WATCH)
async def trainingjob_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).trainingjobs, event)


@_watched(MODEL_DEPLOYMENT_WATCH)
async def modeldeployment_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).modeldeployments, event)


@_watched(DRIFT_POLICY_WATCH)
async def driftpolicy_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).driftpolicies, event)


@_watched(JOB_WATCH)
async def job_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).jobs, event)


@_watched(DEPLOYMENT_WATCH)
async def deployment_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).deployments, event)


@_watched(SERVICE_WATCH)
async def service_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _feed(_cluster(memo).services, event)


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
    # Every handler is on.event (watch -> cache -> work queue): no finalizers, no handler
    # progress, no diff base for kopf to keep, and Events go through Perennial's recorder.
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.posting.enabled = False
    # Bounded watches and requests: a dead connection is noticed and re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    info = _connection(settings)
    if info is None:
        raise kopf.PermanentError("no cluster credentials: set KUBECONFIG or run in a pod")
    client = KubeClient(_credentials(info), qps=config.api_qps, burst=config.api_burst)
    operator = Operator.build(Cluster(client=client, settings=config))
    operator.start()
    memo.operator = operator
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
    operator = getattr(memo, "operator", None)
    if isinstance(operator, Operator):
        await operator.stop()
    if _http_server is not None:
        await _http_server.stop()
        _http_server = None
