"""`bridge web`: the webhook intake and health endpoints without schedules.

Heroku routes HTTP only to `web` dynos and never to `worker` ones, so there the intake runs
as its own process: it verifies and stores deliveries (`webhooks.intake`) and answers
/healthz and /readyz, while the worker dynos drain the inbox, which lives in Postgres. It
holds no lease and writes to no API. `$PORT` is the port Heroku assigns.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import asyncpg

from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.pipeline.run import stop_signals
from bridge.server import WorkerServer
from bridge.store import inbox
from bridge.store.inbox import Delivery
from bridge.webhooks import intake
from bridge.webhooks.intake import WebhookIntake
from bridge.worker import readiness

log = get_logger(__name__)


async def serve(pool: asyncpg.Pool[Any], port: int, secret: bytes) -> None:
    """Serves until SIGTERM or SIGINT."""
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info("stop_signal", signal=sig.name)
        stopping.set()

    metrics = Metrics()

    async def store(delivery: Delivery) -> bool:
        async with pool.acquire() as conn:
            return await inbox.add(conn, delivery)

    async def metrics_text() -> bytes:
        return metrics.render()

    handler = WebhookIntake(secret, store, metrics.observe_delivery)
    server = WorkerServer(port, lambda: readiness(pool, stopping), metrics_text,
                          webhooks=(intake.PATH, handler.handle))  # fmt: skip
    with stop_signals(on_signal):
        await server.start()
        log.info("web_started", port=server.port)
        await stopping.wait()
    await server.stop()
    log.info("web_stopped")
