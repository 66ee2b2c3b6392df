"""The operator's HTTP endpoint: ``/metrics`` (Prometheus exposition) and ``/healthz``."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from perennial.adapters.metrics import REGISTRY


class OperatorHTTPServer:
    """Runs on the operator's event loop; started and stopped by kopf's startup/cleanup."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _: web.Request) -> web.Response:
        # Rendering walks every series; keep it off the loop that runs the handlers.
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        # Answering at all proves the event loop is not blocked; kopf restarts its own
        # watch streams, so a live loop is what liveness needs to know.
        return web.Response(text=json.dumps({"status": "ok"}), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.address, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
