"""Reading metrics from Prometheus: the operator's endpoints and one evaluator for every kind.

A DriftPolicy's metrics and a canary's analysis metrics (``spec.rollout.analysis``) have
one shape (``DriftMetric``: a PromQL ``query``, or a ``distribution`` test over histogram
buckets) and are read the same way: the endpoint chosen by ``choose_endpoint`` (a named
endpoint of the operator's settings, whose credentials, headers and TLS context go with
each request, or a raw URL the operator allows, sent without credentials), each request
bounded by the asked timeout capped by the operator's, every failure turned into a
``MetricResult`` error the plans know how to read.

The endpoints come from the operator's settings and, with an endpoints file, from that
file, which the leader reads again within ``ENDPOINTS_RELOAD_SECONDS`` of a change (a
mounted Secret is updated in place; an invalid new version is logged and the endpoints
loaded before stay in use). The operator never reads a Secret of a user's namespace.

Identical queries in flight at the same moment are sent once: a query to the same
endpoint (the same URL, or the same named endpoint with the same credentials), with the
same expanded expression, evaluation time (``at``: none, or a ``sincePromotion``
baseline's), timeout and byte cap as one already in flight waits for that request's
answer instead of sending its own (``perennial_prometheus_queries_total{outcome="shared"}``).
Nothing is cached: the entry goes when the request ends, so a later evaluation asks
again. Policies that read one shared series (a fleet-wide metric) at the same time, a new
leader evaluating every policy at once, cost Prometheus one request per distinct query.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from perennial.adapters import metrics
from perennial.adapters.prometheus import (
    PrometheusClient,
    PrometheusTimeoutError,
    PrometheusUnauthorizedError,
    PrometheusUnreachableError,
    QueryError,
)
from perennial.api.driftpolicy import DriftMetric, PrometheusEndpoint
from perennial.api.durations import parse_duration
from perennial.domain import drift
from perennial.domain.driftpolicy import EndpointCatalog, EndpointChoice, MetricResult, choose_endpoint
from perennial.settings import (
    EndpointSettings,
    InvalidSettingsError,
    Settings,
    endpoint_warnings,
    prometheus_endpoints,
    read_endpoints_file,
)

logger = logging.getLogger(__name__)

ENDPOINTS_RELOAD_SECONDS = 10.0
"""How often the leader looks for a changed endpoints file (the kubelet takes up to a
minute or so to update a mounted Secret; reading a small file costs nothing)."""

Endpoint = str | EndpointSettings
"""What a request goes to: a raw URL the operator allows, or a named endpoint."""


def _raised(answer: dict[str, Any] | BaseException) -> dict[str, Any]:
    if isinstance(answer, BaseException):
        raise answer
    return answer


QueryKey = tuple[Endpoint, str, datetime | None, float, int]
"""What makes two queries the same: endpoint, expanded expression, ``at``, timeout, byte cap."""


@dataclass
class _InFlight:
    """One request to Prometheus and the queries waiting for its answer."""

    task: asyncio.Task[dict[str, Any]]
    waiting: int = field(default=0)


@dataclass(frozen=True)
class Target:
    """Where one set of metrics is read: the choice, and what to send requests to (None: nothing)."""

    choice: EndpointChoice
    endpoint: Endpoint | None


class MetricReader:
    """The operator's Prometheus endpoints, and the one way metrics are read from them."""

    def __init__(self, settings: Settings, prometheus: PrometheusClient) -> None:
        self.settings = settings
        self.prometheus = prometheus
        self._endpoints: dict[str, EndpointSettings] = {}
        self._catalog = EndpointCatalog()
        self._endpoints_text: str | None = None  # the endpoints file's text in use
        self._refused_text: str | None = None  # its last text refused, not parsed again
        self._refused_message = ""  # why, logged once
        self._reloading: asyncio.Task[None] | None = None
        self._logged_endpoints = ""
        self._in_flight: dict[QueryKey, _InFlight] = {}
        self._use_endpoints(settings.prometheus_endpoints)

    @property
    def catalog(self) -> EndpointCatalog:
        return self._catalog

    def target(self, prometheus: PrometheusEndpoint) -> Target:
        """Where ``spec.prometheus`` (or a rollout analysis's) sends its queries."""
        choice = choose_endpoint(prometheus, self._catalog)
        endpoint = self._endpoints.get(choice.endpoint) if choice.endpoint else choice.url
        return Target(choice, endpoint if choice.problem is None else None)

    # ------------------------------------------------------------ the endpoints file
    def start(self) -> None:
        if self.settings.prometheus_endpoints_file and self._reloading is None:
            self.reload_endpoints()  # what changed while this replica was not leading
            self._reloading = asyncio.create_task(self._reload_endpoints_loop(), name="prometheus-endpoints-reload")

    async def stop(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
            self._reloading = None

    def _use_endpoints(self, endpoints: Sequence[EndpointSettings]) -> None:
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._catalog = EndpointCatalog(
            named={endpoint.name: endpoint.url for endpoint in endpoints},
            allowed_urls=self.settings.allowed_prometheus_urls,
        )
        # Names, URLs and which kinds of credentials: never a credential. Once per change.
        summary = "; ".join(endpoint.summary() for endpoint in endpoints)
        if summary != self._logged_endpoints:
            self._logged_endpoints = summary
            if endpoints:
                logger.info("Prometheus endpoints: %s", summary)
            for warning in endpoint_warnings(endpoints):
                logger.warning("%s", warning)

    def reload_endpoints(self) -> bool:
        """Read the endpoints file again; True if a changed, valid file is now in use.

        A file that cannot be read or is invalid leaves the endpoints in use as they are,
        and is logged once (an ERROR naming the endpoint and field, never a value).
        """
        path = self.settings.prometheus_endpoints_file
        try:
            text = read_endpoints_file(path)
        except InvalidSettingsError as error:
            self._refuse(None, str(error))
            return False
        if text == self._endpoints_text:
            self._refused_text, self._refused_message = None, ""  # back to what is in use
            return False
        if text == self._refused_text:
            return False
        try:
            endpoints = prometheus_endpoints(text, path, self.settings.prometheus_url)
        except InvalidSettingsError as error:
            self._refuse(text, str(error))
            return False
        if self._endpoints_text is not None:
            logger.info("the Prometheus endpoints file %s changed: reloaded", path)
        self._endpoints_text, self._refused_text, self._refused_message = text, None, ""
        self._use_endpoints(endpoints)
        return True

    def _refuse(self, text: str | None, message: str) -> None:
        self._refused_text = text
        if message != self._refused_message:
            self._refused_message = message
            logger.error("the Prometheus endpoints file is not used: %s; the endpoints loaded before stay", message)

    async def _reload_endpoints_loop(self) -> None:
        while True:
            await asyncio.sleep(ENDPOINTS_RELOAD_SECONDS)
            try:
                self.reload_endpoints()
            except Exception:
                # A bug here must not end the reloading for good; the endpoints in use stay.
                logger.exception("reading the Prometheus endpoints file failed")

    # ------------------------------------------------------------ reading metrics
    async def read(
        self,
        metrics_: Sequence[DriftMetric],
        endpoint: Endpoint,
        timeout_text: str,
        *,
        promoted_at: datetime | None,
        now: datetime,
        expand: Callable[[str], str] = str,
    ) -> dict[str, MetricResult]:
        """Every metric's value or error, queried concurrently: one read lasts about one timeout.

        ``timeout_text`` is the spec's (``prometheus.timeout``); ``promoted_at`` anchors
        ``sincePromotion`` baselines; ``expand`` fills a query's placeholders.
        """
        started = time.monotonic()
        values = await asyncio.gather(
            *(self._value(metric, endpoint, timeout_text, promoted_at, now, expand) for metric in metrics_)
        )
        metrics.DRIFT_EVALUATION_DURATION.observe(time.monotonic() - started)
        return {metric.name: value for metric, value in zip(metrics_, values, strict=True)}

    def _timeout(self, asked_text: str, endpoint: Endpoint) -> tuple[float, str]:
        """Seconds one request may take, and what to say when it took longer."""
        asked = parse_duration(asked_text).total_seconds()
        cap = self.settings.prometheus_max_timeout_seconds
        capped_by = "the operator's PERENNIAL_PROMETHEUS_MAX_TIMEOUT"
        named = endpoint if isinstance(endpoint, EndpointSettings) else None
        if named is not None and named.timeout_seconds is not None and named.timeout_seconds < cap:
            cap, capped_by = named.timeout_seconds, f"the timeout of endpoint {named.name}"
        if asked <= cap:
            return asked, f"spec.prometheus.timeout {asked_text}"
        return cap, f"spec.prometheus.timeout {asked_text}, capped at {cap:g}s by {capped_by}"

    async def _value(
        self,
        metric: DriftMetric,
        endpoint: Endpoint,
        timeout_text: str,
        promoted: datetime | None,
        now: datetime,
        expand: Callable[[str], str],
    ) -> MetricResult:
        """One metric's value from Prometheus, or why there is none."""
        timeout, told = self._timeout(timeout_text, endpoint)
        cap = self.settings.prometheus_max_response_bytes

        async def query(expression: str, at: datetime | None = None) -> dict[str, Any]:
            return await self._query((endpoint, expand(expression), at, timeout, cap))

        try:
            if metric.query is not None:
                return MetricResult(drift.single_value(await query(metric.query)))
            distribution = metric.distribution
            assert distribution is not None  # the CRD requires exactly one of query/distribution
            if distribution.baseline.query is not None:
                baseline_query = query(distribution.baseline.query)
            else:
                window = parse_duration(str(distribution.baseline.since_promotion))
                baseline_query = query(distribution.current, drift.baseline_time(promoted, window, now))
            # Both windows at once; the current window's error, if any, is the one told.
            answers = await asyncio.gather(query(distribution.current), baseline_query, return_exceptions=True)
            current_result, baseline_result = (_raised(answer) for answer in answers)
            current = drift.buckets(current_result, "current")
            baseline = drift.buckets(baseline_result, "baseline")
            return MetricResult(
                drift.distribution_statistic(distribution.test, current, baseline, distribution.min_samples)
            )
        except PrometheusTimeoutError as error:
            return MetricResult(error="PrometheusUnreachable", message=f"{error} ({told})")
        except PrometheusUnauthorizedError as error:
            return MetricResult(error="PrometheusUnauthorized", message=str(error))
        except PrometheusUnreachableError as error:
            return MetricResult(error="PrometheusUnreachable", message=str(error))
        except QueryError as error:
            return MetricResult(error="QueryError", message=str(error))
        except drift.NoDataError as error:
            return MetricResult(error="NoData", message=str(error))
        except drift.NonFiniteValueError as error:
            return MetricResult(error="NonFiniteValue", message=str(error))
        except drift.DriftDataError as error:
            return MetricResult(error="QueryError", message=str(error))

    async def _query(self, key: QueryKey) -> dict[str, Any]:
        """One instant query's ``data``: the answer to an identical request in flight, or a new request's.

        The request runs as a task of its own, so a caller cancelled (its policy edited or
        deleted) does not cancel it for the others; once nobody waits for it, it is
        cancelled. Every caller gets the same answer, or the same error.
        """
        shared = self._in_flight.get(key)
        if shared is None:
            endpoint, expression, at, timeout, cap = key
            request = self.prometheus.query(
                endpoint, expression, timeout_seconds=timeout, at=at, max_response_bytes=cap
            )
            shared = self._in_flight[key] = _InFlight(asyncio.ensure_future(request))
            shared.task.add_done_callback(lambda _: self._drop(key, shared))
            metrics.PROMETHEUS_QUERIES.labels(outcome="sent").inc()
        else:
            metrics.PROMETHEUS_QUERIES.labels(outcome="shared").inc()
        shared.waiting += 1
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.waiting -= 1
            if shared.waiting == 0 and not shared.task.done():
                # Every query waiting for it was cancelled: so is the request, and a query
                # arriving now sends its own rather than wait for a cancelled one.
                self._drop(key, shared)
                shared.task.cancel()

    def _drop(self, key: QueryKey, shared: _InFlight) -> None:
        if self._in_flight.get(key) is shared:
            del self._in_flight[key]
        if shared.task.done() and not shared.task.cancelled():
            shared.task.exception()  # retrieved: every waiter has it, asyncio need not log it


def values_of(results: Mapping[str, MetricResult]) -> dict[str, float | None]:
    """The finite values of ``results`` by metric name (None: no value), as the gauges export them."""
    return {
        name: result.value if result.value is not None and math.isfinite(result.value) else None
        for name, result in results.items()
    }
