"""The churn model server: loads the model at MODEL_URI and serves its predictions.

- ``POST /predict``: ``{"rows": [{"tenure_months": 12, ...}, ...]}`` -> ``{"scores": [...], "model", "version"}``
  (the churn probability of each row; 400 with a message for a bad body, 503 until the model is loaded).
- ``GET /ready``: 200 once the model is loaded, 503 (with the reason) before. The model is
  loaded in the background and retried every LOAD_RETRY_SECONDS while it is missing or
  unreadable, so a server whose model never appears never becomes Ready.
- ``GET /healthz``: 200 while the process serves (liveness).
- ``GET /metrics``: Prometheus metrics, every model series labelled ``model`` and ``version``.

The ``model`` and ``version`` labels are PERENNIAL_MODEL and PERENNIAL_VERSION when set
(e.g. from the pod's labels perennial.dev/model and perennial.dev/version through the
downward API); otherwise the names the trainer recorded in the model itself.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

import churnlib
from churnlib import ChurnError

LOG = logging.getLogger("churn.server")
MAX_ROWS = 1000
MAX_BODY_BYTES = 1024 * 1024
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

REQUESTS = Counter(
    "churn_requests",
    "Prediction requests (POST /predict) answered, by HTTP status code.",
    ["model", "version", "code"],
)
LATENCY = Histogram(
    "churn_request_duration_seconds",
    "Time to answer a prediction request (POST /predict), in seconds.",
    ["model", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SCORES = Histogram(
    "churn_prediction_score",
    "Predicted churn probability, one observation per row.",
    ["model", "version"],
    buckets=SCORE_BUCKETS,
)


class FeatureHistograms(Collector):
    """``churn_input_feature{model, version, feature}``: one histogram family, each feature with its own buckets.

    prometheus_client's Histogram has one bucket layout per metric; the features' ranges
    differ (months, money, counts), so this collector keeps the cumulative counts itself.
    Everything runs on the event loop: no lock needed.
    """

    NAME = "churn_input_feature"

    def __init__(self) -> None:
        self.labels: tuple[str, str] | None = None
        self.counts = {feature.name: [0] * (len(feature.buckets) + 1) for feature in churnlib.FEATURES}
        self.sums = dict.fromkeys(churnlib.FEATURE_NAMES, 0.0)

    def observe(self, matrix: list[list[float]]) -> None:
        for index, feature in enumerate(churnlib.FEATURES):
            counts = self.counts[feature.name]
            for row in matrix:
                # The first bucket whose upper bound is >= the value; the last is +Inf.
                counts[bisect.bisect_left(feature.buckets, row[index])] += 1
                self.sums[feature.name] += row[index]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.NAME,
            "Input feature values of predicted rows, one histogram per feature (label feature).",
            labels=["model", "version", "feature"],
        )
        if self.labels is not None:
            for feature in churnlib.FEATURES:
                cumulative, buckets = 0, []
                for bound, count in zip((*feature.buckets, math.inf), self.counts[feature.name], strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                family.add_metric([*self.labels, feature.name], buckets, self.sums[feature.name])
        yield family


def _le(bound: float) -> str:
    # As prometheus_client's Histogram writes le ("12.0", "0.05", "+Inf"): one spelling in every series.
    return "+Inf" if bound == math.inf else repr(float(bound))


@dataclass
class Server:
    directory: Path
    label_overrides: tuple[str | None, str | None]
    retry_seconds: float
    features: FeatureHistograms = field(default_factory=FeatureHistograms)
    bundle: dict[str, Any] | None = None
    labels: tuple[str, str] | None = None
    not_ready: str = "loading the model"

    def __post_init__(self) -> None:
        model, version = self.label_overrides
        if model is not None and version is not None:
            self.use_labels((model, version))

    def use_labels(self, labels: tuple[str, str]) -> None:
        self.labels = self.features.labels = labels

    async def load_until_loaded(self) -> None:
        """Load the model, retrying while it is missing or unreadable; each new reason is logged once."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                bundle = await loop.run_in_executor(None, churnlib.load_model, self.directory)
            except FileNotFoundError:
                reason = f"no model at {self.directory / churnlib.MODEL_FILE} yet"
            except (ChurnError, OSError) as error:
                reason = str(error)
            else:
                self.loaded(bundle)
                return
            if reason != self.not_ready:
                LOG.warning("not ready: %s (retrying every %gs)", reason, self.retry_seconds)
                self.not_ready = reason
            await asyncio.sleep(self.retry_seconds)

    def loaded(self, bundle: dict[str, Any]) -> None:
        model, version = self.label_overrides
        labels = (model or str(bundle.get("model") or "unknown"), version or str(bundle.get("version") or "unknown"))
        self.use_labels(labels)
        # The series exist (at 0) from the start, so the first requests count in increase().
        REQUESTS.labels(*labels, "200")
        LATENCY.labels(*labels)
        SCORES.labels(*labels)
        self.bundle = bundle
        window = bundle.get("dataset", {})
        LOG.info(
            "model loaded from %s: model=%s version=%s, trained on %s .. %s",
            self.directory, *labels, window.get("windowStart", "?"), window.get("windowEnd", "?"),
        )  # fmt: skip

    # ------------------------------------------------------------ handlers
    async def ready(self, request: web.Request) -> web.Response:
        if self.bundle is None or self.labels is None:
            return web.Response(status=503, text=f"not ready: {self.not_ready}\n")
        return web.Response(text=f"ready: model {self.labels[0]} version {self.labels[1]}\n")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def predict(self, request: web.Request) -> web.Response:
        began = time.perf_counter()
        try:
            status, body = await self._predict(request)
        except Exception:
            LOG.exception("prediction failed")
            status, body = 500, {"error": "prediction failed: see the server's log"}
        if self.labels is not None:
            REQUESTS.labels(*self.labels, str(status)).inc()
            LATENCY.labels(*self.labels).observe(time.perf_counter() - began)
        return web.json_response(body, status=status)

    async def _predict(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        if self.bundle is None or self.labels is None:
            return 503, {"error": f"not ready: {self.not_ready}"}
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return 413, {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"}
        try:
            document = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as error:
            return 400, {"error": f"the body is not JSON: {error}"}
        rows = document.get("rows") if isinstance(document, dict) else None
        if not isinstance(rows, list) or not rows:
            return 400, {"error": 'the body must be {"rows": [{feature: number, ...}, ...]} with at least one row'}
        if len(rows) > MAX_ROWS:
            return 413, {"error": f"{len(rows)} rows: at most {MAX_ROWS} a request"}
        try:
            matrix = churnlib.feature_matrix(rows)
        except ChurnError as error:
            return 400, {"error": str(error), "features": list(churnlib.FEATURE_NAMES)}
        scores = [float(p) for p in self.bundle["estimator"].predict_proba(matrix)[:, 1]]
        self.features.observe(matrix)
        observe = SCORES.labels(*self.labels).observe
        for score in scores:
            observe(score)
        return 200, {"model": self.labels[0], "version": self.labels[1], "scores": [round(s, 6) for s in scores]}


def build_app(server: Server) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app.router.add_post("/predict", server.predict)
    app.router.add_get("/ready", server.ready)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/metrics", server.metrics)
    return app


@dataclass(frozen=True)
class Config:
    directory: Path
    host: str
    port: int
    retry_seconds: float
    label_overrides: tuple[str | None, str | None]


def read_config(env: Mapping[str, str]) -> Config:
    directory = churnlib.model_directory(env.get("MODEL_URI", ""), "MODEL_URI")
    try:
        port = int(env.get("PORT", "8080"))
        retry = float(env.get("LOAD_RETRY_SECONDS", "2"))
    except ValueError as error:
        raise ChurnError(f"PORT or LOAD_RETRY_SECONDS is not a number: {error}") from None
    if not 0 <= port <= 65535 or not retry > 0:
        raise ChurnError("PORT must be in [0, 65535] (0: any free port) and LOAD_RETRY_SECONDS > 0")
    return Config(
        directory=directory,
        host=env.get("HOST", "0.0.0.0"),
        port=port,
        retry_seconds=retry,
        label_overrides=(env.get("PERENNIAL_MODEL") or None, env.get("PERENNIAL_VERSION") or None),
    )


async def serve(config: Config) -> None:
    server = Server(config.directory, config.label_overrides, config.retry_seconds)
    REGISTRY.register(server.features)
    runner = web.AppRunner(build_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    for address in runner.addresses:
        LOG.info("listening on http://%s:%s", *address[:2])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loader = asyncio.create_task(server.load_until_loaded())
    await stop.wait()
    LOG.info("stopping")
    loader.cancel()
    await runner.cleanup()


def main(env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = read_config(os.environ if env is None else env)
    except ChurnError as error:
        LOG.error("%s", error)
        return 2
    asyncio.run(serve(config))
    return 0
