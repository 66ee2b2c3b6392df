"""The operator as kopf sees it: importing this module registers every handler.

``perennial run`` runs it; tests run it with ``kopf.testing.KopfRunner`` (``-m
perennial.main``) or as a subprocess, so all three share this one wiring.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf

from perennial import settings as settings_module
from perennial.adapters import metrics
from perennial.adapters.http_server import OperatorHTTPServer
from perennial.adapters.kube import KubeClient
from perennial.adapters.leader import LeaderElector, LeaseConfig
from perennial.adapters.login import Credentials, Login, LoginError
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
from perennial.controllers.metric_reader import MetricReader
from perennial.controllers.modeldeployment import ModelDeploymentController
from perennial.controllers.trainingjob import TrainingJobController

logger = logging.getLogger("perennial")

_http_server: OperatorHTTPServer | None = None


# The Lease's own connections: enough for a renewal and a release at shutdown.
LEASE_CONNECTIONS = 2


def lease_client(client: KubeClient) -> KubeClient:
    """A client for the Lease alone, on the same Login as ``client`` but with connections of its own.

    Each of ``client``'s connections carries one request at a time, and under load every
    one is taken by reconciles and Events (16 workers per controller, 16 Event senders,
    32 connections): a renewal queued behind them missed its deadline, the leader stepped
    down, and taking the Lease again relisted and requeued every object (benchmarks/README.md,
    N=1000: the Lease lost every 10 s). client-go's controllers likewise give leader
    election a client of its own.
    """
    return KubeClient(client.login, max_in_flight=LEASE_CONNECTIONS)


@dataclass
class Operator:
    """Everything one running operator holds: the shared caches, the three controllers, the resync.

    The caches are fed by kopf's watches on every replica, leader or not, so a standby is
    warm when it takes over. Only ``lead`` starts what writes: the controllers, the
    periodic resync and the Event senders; ``follow`` stops them all at once.
    """

    cluster: Cluster
    prometheus: PrometheusClient
    reader: MetricReader
    trainingjobs: TrainingJobController
    modeldeployments: ModelDeploymentController
    driftpolicies: DriftPolicyController
    resync: Resync
    elector: LeaderElector | None = field(default=None)
    _starting: asyncio.Task[None] | None = field(default=None)

    @classmethod
    def build(cls, cluster: Cluster) -> Operator:
        prometheus = PrometheusClient()
        reader = MetricReader(cluster.settings, prometheus)
        operator = cls(
            cluster,
            prometheus,
            reader,
            TrainingJobController(cluster),
            ModelDeploymentController(cluster, reader),
            DriftPolicyController(cluster, reader),
            Resync(cluster),
        )
        config = cluster.settings
        if config.leader_election:
            lease = LeaseConfig(
                name=config.lease_name,
                namespace=config.lease_namespace,
                identity=LeaseConfig.unique_identity(config.identity or socket.gethostname()),
                lease_duration=config.lease_duration_seconds,
                renew_deadline=config.lease_renew_deadline_seconds,
                retry_period=config.lease_retry_period_seconds,
            )
            operator.elector = LeaderElector(
                lease_client(cluster.client), lease, lead=operator.lead, follow=operator.follow
            )
        return operator

    @property
    def controllers(self) -> tuple[TrainingJobController, ModelDeploymentController, DriftPolicyController]:
        return self.trainingjobs, self.modeldeployments, self.driftpolicies

    def start(self) -> None:
        """Campaign for the Lease (or, without leader election, lead at once)."""
        if self.elector is not None:
            self.elector.start()
        else:
            metrics.LEADER.set(1)
            self._lead()

    async def lead(self) -> None:
        self._lead()

    def _lead(self) -> None:
        # In a task: the elector renews the Lease while the caches fill.
        self._starting = asyncio.create_task(self._start_writers(), name="lead")

    async def _start_writers(self) -> None:
        # As client-go's WaitForCacheSync: a replica that leads as soon as it starts (a
        # restart, an upgrade) holds the Lease before kopf's watches have listed anything,
        # and a model planned before its Deployment reached the cache would be planned as
        # if it had none (its status written Ready=False, then corrected). One LIST of every
        # watched kind fills the caches first; a standby's, filled by the watches, just relist.
        await self.resync.run_once()
        self.cluster.events.start()
        self.reader.start()
        for controller in self.controllers:
            controller.start()
        self.resync.start()

    async def follow(self) -> None:
        """Stop every writer now; Events not yet posted are dropped (a new leader tells its own story)."""
        await self._stop_writers(flush_timeout=0)
        self.cluster.events.discard_pending()
        metrics.forget_all_objects()  # the new leader exports the per-model series

    async def _stop_writers(self, flush_timeout: float) -> None:
        if self._starting is not None:
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
            self._starting = None
        await self.resync.stop()
        for controller in self.controllers:
            await controller.stop()
        await self.reader.stop()
        await self.cluster.events.stop(flush_timeout=flush_timeout)

    async def stop(self) -> None:
        if self.elector is not None:
            await self.elector.stop()  # follows (if leading) and releases the Lease
            await self.elector.client.close()
        else:
            await self._stop_writers(flush_timeout=5.0)  # the only writer: its Events are posted
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


def _login(memo: kopf.Memo) -> Login:
    """The operator's one Login, shared by kopf's watches and the operator's own client."""
    login = getattr(memo, "login", None)
    if not isinstance(login, Login):
        login = memo.login = Login()
    return login


KOPF_WORKER_IDLE_SECONDS = 0.5

# kopf keeps the credentials it is given until they expire, then closes their connections:
# watches started on credentials about to expire would be cut again at once, mid-request
# (kopf logs an ERROR for each). So kopf gets credentials that stay valid at least this long.
KOPF_CREDENTIALS_FRESH_FOR = timedelta(seconds=5)


@kopf.on.login()
async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    return await kopf_connection_info(memo)


async def kopf_connection_info(memo: kopf.Memo) -> kopf.ConnectionInfo:
    """kopf's credentials: the same Login as the operator's client, renewed the same way."""
    shared = _login(memo)
    given = getattr(memo, "kopf_credentials", None)
    try:
        credentials = await shared.credentials(fresh_for=KOPF_CREDENTIALS_FRESH_FOR)
        if credentials is given:
            # kopf asks again while nothing is due: the API server refused what it had (401).
            credentials = await shared.refresh(given)
    except LoginError as error:
        raise kopf.PermanentError(f"no cluster credentials: {error}") from error
    memo.kopf_credentials = credentials
    return _connection_info(credentials)


def _connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    configuration = credentials.configuration
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=configuration.ssl_ca_cert,
        ca_data=configuration.ca_cert_data,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme="Bearer" if credentials.token else None,
        token=credentials.token,
        # kopf logs in again from then on, through this same handler.
        expiration=credentials.renew_at,
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
    # kopf keeps a worker per object alive this long after its last event, holding that
    # event's whole body (managedFields included). Our handlers only hand events to the
    # caches, so a worker is cheap to start again, and kopf's default (5s) keeps thousands
    # of idle workers and their bodies after a burst (benchmarks/README.md).
    settings.queueing.idle_timeout = KOPF_WORKER_IDLE_SECONDS
    client = KubeClient(_login(memo), qps=config.api_qps, burst=config.api_burst)
    operator = Operator.build(Cluster(client=client, settings=config))
    operator.start()
    memo.operator = operator
    _http_server = OperatorHTTPServer(config.metrics_address, config.metrics_port)
    await _http_server.start()
    logger.info(
        "perennial started: metrics on %s:%d, watching %s, %s",
        config.metrics_address,
        config.metrics_port,
        ", ".join(config.namespaces) or "all namespaces",
        f"leader election on Lease {config.lease_namespace}/{config.lease_name}"
        if config.leader_election
        else "leader election off",
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
