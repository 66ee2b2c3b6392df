"""Identical PromQL queries in flight at the same moment are sent once (``MetricReader``).

The same endpoint, expanded expression, evaluation time (``at``), timeout and byte cap:
the second query waits for the first one's request and gets its answer (or its error).
Nothing is cached beyond the request: once it ended, the next query sends its own. A
policy cancelled while it waits (edited, deleted) leaves the request to the others; a
request nobody waits for any more is cancelled. A fake PrometheusClient holds every
request until the test releases it, so "the same moment" is exact.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from perennial.adapters import metrics
from perennial.adapters.prometheus import DEFAULT_MAX_RESPONSE_BYTES, PrometheusClient, QueryError
from perennial.api.driftpolicy import DriftMetric
from perennial.controllers.metric_reader import MetricReader
from perennial.domain.driftpolicy import MetricResult
from perennial.settings import EndpointSettings, from_environment

URL = "http://prometheus.monitoring:9090"
OTHER = "http://thanos.monitoring:10902"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PROMOTED = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
PSI = "max(churn_feature_psi)"


def vector(value: str) -> dict[str, Any]:
    return {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}


def buckets(*counts: int) -> dict[str, Any]:
    les = ("1", "2", "+Inf")
    return {
        "resultType": "vector",
        "result": [{"metric": {"le": le}, "value": [0, str(c)]} for le, c in zip(les, counts, strict=True)],
    }


class FakePrometheus(PrometheusClient):
    """Answers by expression; every request waits until ``release`` is set."""

    def __init__(self, answers: dict[str, dict[str, Any] | Exception]) -> None:
        super().__init__()
        self.answers = answers
        self.requests: list[tuple[str | EndpointSettings, str, datetime | None, float]] = []
        self.cancelled = 0
        self.release = asyncio.Event()

    async def query(
        self,
        endpoint: str | EndpointSettings,
        expression: str,
        *,
        timeout_seconds: float,
        at: datetime | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> dict[str, Any]:
        self.requests.append((endpoint, expression, at, timeout_seconds))
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        answer = self.answers[expression]
        if isinstance(answer, Exception):
            raise answer
        return answer


def metric(name: str = "feature_psi", query: str = PSI) -> DriftMetric:
    return DriftMetric.model_validate({"name": name, "query": query, "max": 0.2})


def counted(outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value("perennial_prometheus_queries_total", {"outcome": outcome})
    return float(value or 0.0)


async def settle() -> None:
    """Let every task started so far reach its request."""
    for _ in range(5):
        await asyncio.sleep(0)


def reader(answers: dict[str, dict[str, Any] | Exception]) -> tuple[MetricReader, FakePrometheus]:
    prometheus = FakePrometheus(answers)
    return MetricReader(from_environment({}), prometheus), prometheus


async def read(
    metric_reader: MetricReader,
    metrics_: list[DriftMetric],
    endpoint: str | EndpointSettings = URL,
    timeout_text: str = "10s",
    promoted_at: datetime | None = None,
    **options: Any,
) -> dict[str, MetricResult]:
    return await metric_reader.read(metrics_, endpoint, timeout_text, promoted_at=promoted_at, now=NOW, **options)


async def test_the_same_query_from_two_policies_at_the_same_moment_is_sent_once() -> None:
    metric_reader, prometheus = reader({PSI: vector("0.31")})
    sent, shared = counted("sent"), counted("shared")

    churn = asyncio.create_task(read(metric_reader, [metric()]))
    other = asyncio.create_task(read(metric_reader, [metric("psi_again")]))
    await settle()
    prometheus.release.set()

    assert await churn == {"feature_psi": MetricResult(0.31)}
    assert await other == {"psi_again": MetricResult(0.31)}
    assert prometheus.requests == [(URL, PSI, None, 10.0)]
    assert (counted("sent") - sent, counted("shared") - shared) == (1, 1)
    assert metric_reader._in_flight == {}, "dropped when done"


async def test_an_ended_request_is_not_reused() -> None:
    metric_reader, prometheus = reader({PSI: vector("0.31")})
    prometheus.release.set()
    await read(metric_reader, [metric()])
    await read(metric_reader, [metric()])
    assert len(prometheus.requests) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {"endpoint": OTHER}),
        ({}, {"timeout_text": "5s"}),
        ({"query": PSI}, {"query": "max(fraud_feature_psi)"}),
        ({"expand": lambda q: q.replace("{version}", "2")}, {"expand": lambda q: q.replace("{version}", "3")}),
    ],
    ids=["another endpoint", "another timeout", "another query", "other placeholders"],
)
async def test_queries_that_differ_are_each_sent(first: dict[str, Any], second: dict[str, Any]) -> None:
    answers: dict[str, dict[str, Any] | Exception] = {
        PSI: vector("0.31"),
        "max(fraud_feature_psi)": vector("0.1"),
        "max(psi{version='2'})": vector("0.2"),
        "max(psi{version='3'})": vector("0.3"),
    }
    metric_reader, prometheus = reader(answers)

    def call(options: dict[str, Any]) -> asyncio.Task[dict[str, MetricResult]]:
        options = dict(options)
        query = options.pop("query", "max(psi{version='{version}'})" if "expand" in options else PSI)
        return asyncio.create_task(read(metric_reader, [metric(query=query)], **options))

    tasks = [call(first), call(second)]
    await settle()
    prometheus.release.set()
    await asyncio.gather(*tasks)
    assert len(prometheus.requests) == 2, prometheus.requests


async def test_the_same_placeholders_expanded_alike_are_shared() -> None:
    metric_reader, prometheus = reader({"max(psi{version='2'})": vector("0.2")})
    query = "max(psi{version='{version}'})"

    def expand(q: str) -> str:
        return q.replace("{version}", "2")

    tasks = [asyncio.create_task(read(metric_reader, [metric(query=query)], expand=expand)) for _ in range(3)]
    await settle()
    prometheus.release.set()
    assert [r["feature_psi"] for r in await asyncio.gather(*tasks)] == [MetricResult(0.2)] * 3
    assert len(prometheus.requests) == 1


async def test_a_named_endpoint_is_shared_only_with_the_same_settings() -> None:
    metric_reader, prometheus = reader({PSI: vector("0.31")})
    thanos = EndpointSettings("thanos", OTHER, bearer_token="a")
    same = EndpointSettings("thanos", OTHER, bearer_token="a")
    rotated = EndpointSettings("thanos", OTHER, bearer_token="b")
    tasks = [asyncio.create_task(read(metric_reader, [metric()], endpoint=e)) for e in (thanos, same, rotated)]
    await settle()
    prometheus.release.set()
    await asyncio.gather(*tasks)
    assert [request[0] for request in prometheus.requests] == [thanos, rotated]


async def test_distribution_windows_at_the_same_time_are_shared_and_other_baselines_are_not() -> None:
    current = "sum by (le) (increase(churn_tenure_bucket[1h]))"
    metric_reader, prometheus = reader({current: buckets(400, 700, 1000)})

    def tenure(name: str) -> DriftMetric:
        return DriftMetric.model_validate(
            {
                "name": name,
                "distribution": {"test": "psi", "current": current, "baseline": {"sincePromotion": "1h"}},
                "max": 0.25,
            }
        )

    later = datetime(2026, 1, 1, 10, 30, 0, tzinfo=UTC)
    tasks = [
        asyncio.create_task(read(metric_reader, [tenure("a")], promoted_at=PROMOTED)),
        asyncio.create_task(read(metric_reader, [tenure("b")], promoted_at=PROMOTED)),
        asyncio.create_task(read(metric_reader, [tenure("c")], promoted_at=later)),
    ]
    await settle()
    prometheus.release.set()
    results = await asyncio.gather(*tasks)

    assert [r[name] for r, name in zip(results, "abc", strict=True)] == [MetricResult(0.0)] * 3
    times = sorted((at.isoformat() if at else "now") for _, _, at, _ in prometheus.requests)
    assert times == ["2026-01-01T11:00:00+00:00", "2026-01-01T11:30:00+00:00", "now"], "now once, one per baseline"


async def test_an_error_is_every_waiters_error() -> None:
    metric_reader, prometheus = reader({PSI: QueryError("bad_data: 1:5: parse error")})
    tasks = [asyncio.create_task(read(metric_reader, [metric()])) for _ in range(2)]
    await settle()
    prometheus.release.set()
    for result in await asyncio.gather(*tasks):
        assert result == {"feature_psi": MetricResult(error="QueryError", message="bad_data: 1:5: parse error")}
    assert len(prometheus.requests) == 1


async def test_a_cancelled_policy_leaves_the_request_to_the_others_and_the_last_one_cancels_it() -> None:
    metric_reader, prometheus = reader({PSI: vector("0.31")})
    edited = asyncio.create_task(read(metric_reader, [metric()]))
    waiting = asyncio.create_task(read(metric_reader, [metric()]))
    await settle()
    edited.cancel()
    await asyncio.gather(edited, return_exceptions=True)
    assert prometheus.cancelled == 0, "another policy still waits for it"
    prometheus.release.set()
    assert await waiting == {"feature_psi": MetricResult(0.31)}

    prometheus.release.clear()
    alone = [asyncio.create_task(read(metric_reader, [metric()])) for _ in range(2)]
    await settle()
    for task in alone:
        task.cancel()
    await asyncio.gather(*alone, return_exceptions=True)
    await settle()
    assert prometheus.cancelled == 1, "nobody waits: the request is cancelled"
    assert metric_reader._in_flight == {}

    # A query now sends its own request, never waits for the cancelled one.
    prometheus.release.set()
    assert await read(metric_reader, [metric()]) == {"feature_psi": MetricResult(0.31)}
    assert len(prometheus.requests) == 3
