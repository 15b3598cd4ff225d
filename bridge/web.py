"""`bridge web`: the webhook intake and health endpoints without schedules.

Heroku routes HTTP only to `web` dynos and never to `worker` ones, so there the intake runs
as its own process: it verifies and stores deliveries (`webhooks.intake`) and answers
/healthz and /readyz, while the worker dynos drain the inbox, which lives in Postgres. It
holds no lease and writes to no API. `$PORT` is the port Heroku assigns.
"""

from __future__ import annotations

import asyncio
import signal

from bridge import wiring
from bridge.errors import ConfigError
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.pipeline.run import stop_signals
from bridge.server import WorkerServer
from bridge.settings import Settings
from bridge.store import inbox
from bridge.store import migrate as store_migrate
from bridge.store.inbox import Delivery
from bridge.webhooks import intake
from bridge.webhooks.intake import WebhookIntake
from bridge.worker import readiness

log = get_logger(__name__)


async def run(settings: Settings) -> None:
    secret = settings.outreach_webhook_secret.get_secret_value() if settings.outreach_webhook_secret else ""
    if not secret:
        raise ConfigError(
            "OUTREACH_WEBHOOK_SECRET is not set; `bridge web` only serves the webhook intake, "
            "so set it (the same value as in `bridge webhooks ensure`) or do not run a web process"
        )
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info("stop_signal", signal=sig.name)
        stopping.set()

    async with wiring.open_pool(settings) as pool:
        await store_migrate.require_current(pool)
        metrics = Metrics()

        async def store(delivery: Delivery) -> bool:
            async with pool.acquire() as conn:
                return await inbox.add(conn, delivery)

        async def metrics_text() -> bytes:
            return metrics.render()

        handler = WebhookIntake(secret.encode(), store, metrics.observe_delivery)
        server = WorkerServer(settings.port, lambda: readiness(pool, stopping), metrics_text,
                              webhooks=(intake.PATH, handler.handle))  # fmt: skip
        with stop_signals(on_signal):
            await server.start()
            log.info("web_started", port=server.port)
            await stopping.wait()
        await server.stop()
        log.info("web_stopped")
