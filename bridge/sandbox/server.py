"""Runs both simulators on loopback, each on its own port, with shared faults and counters.

`Sandbox` is what `bridge demo`, the integration tests and the benchmarks start. Every
request passes, outermost first, through: counting (arrival, final status, Retry-After
sent), fault injection, then the simulator's own auth and rate limiting. Every record the
Zendesk simulator stores is also logged in the counters' write log. `/_sandbox/...` is the
control surface for out-of-process callers (faults, counters, touching Outreach records,
reading both simulators' state; on the Zendesk server, `/_sandbox/zendesk/...` also changes
records by hand and switches the exports, see `zendesk_control.py`); it is neither counted nor
faulted.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from bridge.sandbox import faults as faults_mod
from bridge.sandbox import zendesk_control
from bridge.sandbox.counters import UNMATCHED, Counters
from bridge.sandbox.faults import DROPPED, Faults
from bridge.sandbox.outreach import OutreachSandbox
from bridge.sandbox.zendesk import ZendeskSandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTROL_PREFIX = "/_sandbox"


class Sandbox:
    """Both simulators on `host`, each on its own port (0 picks a free one)."""

    def __init__(
        self,
        *,
        outreach: OutreachSandbox | None = None,
        zendesk: ZendeskSandbox | None = None,
        host: str = "127.0.0.1",
        outreach_port: int = 0,
        zendesk_port: int = 0,
    ) -> None:
        self.outreach = outreach or OutreachSandbox()
        self.zendesk = zendesk or ZendeskSandbox()
        self.host = host
        self.faults = Faults()
        self.counters = Counters()
        self.zendesk.write_hooks.append(self.counters.record_write)
        self.outreach_url = ""
        self.zendesk_url = ""
        self._ports = {"outreach": outreach_port, "zendesk": zendesk_port}
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        """Bind both servers and fill in `outreach_url` and `zendesk_url`."""
        self.faults.stopping.clear()
        self.outreach_url = await self._serve("outreach", self.outreach.make_app([self._middleware("outreach")]))
        self.zendesk_url = await self._serve("zendesk", self.zendesk.make_app([self._middleware("zendesk")]))
        self.zendesk.start_jobs()

    async def stop(self) -> None:
        """Stop serving; sleeping faults are woken and background jobs cancelled."""
        self.faults.stopping.set()
        await self.zendesk.stop_jobs()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _serve(self, api: str, app: web.Application) -> str:
        self._add_control_routes(app)
        if api == "zendesk":
            zendesk_control.add_routes(app, self.zendesk)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._ports[api])
        await site.start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://{self.host}:{port}"

    def _middleware(self, api: str) -> Any:
        @web.middleware
        async def count_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(CONTROL_PREFIX):
                return await handler(request)
            status, retry_after = 0, None
            arrived = self.counters.clock()
            try:
                response = await faults_mod.apply(self.faults, api, request, handler)
                status, retry_after = response.status, _retry_after(response.headers.get("Retry-After"))
                if status == DROPPED:
                    status = 0
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.counters.record(api, request.method, _route_name(request), request.path_qs, status,
                                     retry_after, arrived=arrived, connection=_connection(request))  # fmt: skip

        return count_and_fault

    def _add_control_routes(self, app: web.Application) -> None:
        app.router.add_post(f"{CONTROL_PREFIX}/faults", self._post_fault)
        app.router.add_delete(f"{CONTROL_PREFIX}/faults", self._clear_faults)
        app.router.add_get(f"{CONTROL_PREFIX}/counters", self._get_counters)
        app.router.add_delete(f"{CONTROL_PREFIX}/counters", self._reset_counters)
        app.router.add_post(f"{CONTROL_PREFIX}/outreach/touch", self._touch)
        app.router.add_post(f"{CONTROL_PREFIX}/outreach/update", self._update)
        app.router.add_get(f"{CONTROL_PREFIX}/writes", self._get_writes)
        app.router.add_get(f"{CONTROL_PREFIX}/state", self._get_state)

    async def _post_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "latency" in body and "kind" not in body:
            self.faults.set_latency(str(body["api"]), float(body["latency"]))
            return web.json_response({"ok": True})
        try:
            self.faults.add_from_json(body)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True}, status=201)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def _get_counters(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters.snapshot())

    async def _reset_counters(self, request: web.Request) -> web.Response:
        self.counters.reset()
        return web.json_response({"ok": True})

    async def _get_state(self, request: web.Request) -> web.Response:
        """Both simulators' records, for checking an end state from another process:
        `?outreach=type,...` and `?zendesk=object_key,...` say which; users always come."""
        wanted_o = [t for t in request.query.get("outreach", "").split(",") if t]
        wanted_z = [k for k in request.query.get("zendesk", "").split(",") if k]
        try:
            outreach = {t: [self.outreach.get(t, i) for i in self.outreach.ids(t)] for t in wanted_o}
            zendesk = {k: self.zendesk.records(k) for k in wanted_z}
        except KeyError as exc:
            return web.json_response({"error": f"unknown type or object {exc}"}, status=400)
        users = list(self.zendesk.users.values())
        return web.json_response({"outreach": outreach, "zendesk": zendesk, "users": users})

    async def _touch(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.outreach.touch(str(body["type"]), [int(i) for i in body["ids"]])
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})


    async def _update(self, request: web.Request) -> web.Response:
        """Changes one Outreach record (webhooks fire as for any change); answers the sandbox's
        monotonic time of the change, the clock `/writes` uses, so latencies can be measured."""
        body = await request.json()
        try:
            self.outreach.update(str(body["type"]), int(body["id"]), **dict(body["attributes"]))
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"at": self.counters.clock()})

    async def _get_writes(self, request: web.Request) -> web.Response:
        """Zendesk writes from `?after=SEQ` on (monotonic `at`, external id, fields sent)."""
        after = int(request.query.get("after", "-1"))
        writes = [
            {"seq": w.seq, "at": w.at, "object": w.object_key, "external_id": w.external_id, "fields": w.fields}
            for w in self.counters.writes[after + 1 :]
        ]
        return web.json_response({"writes": writes})


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    return route.name if route is not None and route.name else UNMATCHED


def _connection(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else ""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None
