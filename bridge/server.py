"""The worker's HTTP endpoints on `$PORT`: /healthz, /readyz, /metrics and the webhook intake.

- `/healthz` answers 200 while the event loop runs: the process is alive (liveness).
- `/readyz` answers 200 only when the database answers and every migration is applied, and
  503 otherwise (or while the worker is stopping), within CHECK_TIMEOUT_S whatever the check
  does. The body gives a short reason only: never error text, which can name hosts, users
  or SQL. The detail goes to the log (`readiness_changed`), once per change.
- `/metrics` is the Prometheus text of `bridge.metrics`; database-backed gauges are refreshed
  first, within a short timeout, and left as they were if the database is down.
- `POST /webhooks/outreach` exists only when a webhook handler is given (the secret is set);
  without one it is a 404 like any unknown path (`bridge.webhooks.intake`).
No answer names the server software. Checks are handed in as callables, so this module knows
nothing of Postgres or the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bridge.logs import get_logger

log = get_logger(__name__)

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str  # short and fixed, served to anyone who asks
    detail: str = ""  # redacted error text, for the log only


ReadinessCheck = Callable[[], Awaitable[Readiness]]
MetricsSource = Callable[[], Awaitable[bytes]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WorkerServer:
    """An aiohttp server for the endpoints; `port` 0 picks a free one."""

    def __init__(
        self, port: int, readiness: ReadinessCheck, metrics: MetricsSource, host: str = "0.0.0.0",
        *, webhooks: tuple[str, Handler] | None = None,
    ) -> None:  # fmt: skip
        self._readiness, self._metrics = readiness, metrics
        self.host, self.port = host, port
        app = web.Application()
        app.on_response_prepare.append(_no_banner)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_text)
        if webhooks is not None:
            app.router.add_post(*webhooks)
        self._runner = web.AppRunner(app, access_log=None)
        self._stopped = asyncio.Event()
        self._last: Readiness | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health_listening", port=self.port)

    async def serve(self) -> None:
        """A side task that ends only when `stop` is called."""
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopped.set()
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                result = await self._readiness()
        except TimeoutError:
            result = Readiness(False, "the readiness check did not finish in time")
        except Exception as exc:  # noqa: BLE001 - a broken check means not ready, never a 500
            result = Readiness(False, "the readiness check failed", detail=repr(exc))
        self._log_change(result)
        body = {"status": "ready" if result.ready else "not ready", "reason": result.reason}
        return web.json_response(body, status=200 if result.ready else 503)

    def _log_change(self, result: Readiness) -> None:
        last, self._last = self._last, result
        if last is None or (last.ready, last.reason) != (result.ready, result.reason):
            log.info("readiness_changed", ready=result.ready, reason=result.reason, detail=result.detail)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        body = await self._metrics()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def _no_banner(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "bridge"  # not aiohttp's "Python/x aiohttp/y"
