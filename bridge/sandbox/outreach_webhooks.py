"""The Outreach simulator's webhooks: the `webhook` resource and signed, best-effort deliveries.

From `api/outreach.md` ("Webhooks") and the `webhook` schema of `outreach-openapi.json`:
- `POST /api/v2/webhooks` takes `url`, `resource`, `action` (both default `*`) and `secret`;
  the url must be https (this sandbox also takes http on loopback, so the demo and tests can
  receive without TLS); answers carry `active`, `disabledReason`, `disabledSince`,
  `disabledUntil`; any update resets the disabled fields; `secret` is never rendered.
- A record change of a standard type sends `{"data": <resource>, "meta": {"eventName":
  "<type>.<action>", "deliveredAt"}}`, signed with `Outreach-Webhook-Signature` (hex
  HMAC-SHA256 of the raw body, only when a secret is set). Custom objects send nothing.
- One attempt per event, a ~5 s wait, no retry on any status; a webhook that keeps failing is
  disabled for an hour (`DISABLE_AFTER` failures in a row).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bridge.sandbox.outreach_http import JSONAPI, error, not_found, reply

if TYPE_CHECKING:
    from bridge.sandbox.outreach import OutreachSandbox

DELIVERY_TIMEOUT_S = 5.0
DISABLE_AFTER = 3
DISABLED_FOR = timedelta(hours=1)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(slots=True)
class Webhook:
    id: int
    url: str
    resource: str
    action: str
    secret: str | None
    created: datetime
    updated: datetime
    active: bool = True
    failures: int = 0
    disabled_reason: str | None = None
    disabled_since: datetime | None = None
    disabled_until: datetime | None = None

    def matches(self, resource: str, action: str) -> bool:
        return self.resource in ("*", resource) and self.action in ("*", action)

    def render(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "type": "webhook", "id": self.id,
            "attributes": {
                "url": self.url, "resource": self.resource, "action": self.action,
                "active": self.active, "payloadVersion": 1, "createdAt": ts(self.created),
                "updatedAt": ts(self.updated), "disabledReason": self.disabled_reason,
                "disabledSince": ts(self.disabled_since), "disabledUntil": ts(self.disabled_until),
            },
        }  # fmt: skip


@dataclass(slots=True)
class Sent:
    webhook_id: int
    event: str
    status: int | None  # None: no answer (refused, timed out)


@dataclass(slots=True)
class Webhooks:
    """Registered webhooks and what was delivered; deliveries run as tasks on the loop."""

    sb: OutreachSandbox
    hooks: dict[int, Webhook] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    _next_id: int = 1
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def emit(self, resource: str, action: str, record: dict[str, Any]) -> None:
        """Delivers `record`'s change to every matching webhook that is not disabled."""
        now = self.sb.clock()
        targets = [h for h in self.hooks.values() if h.active and h.matches(resource, action)
                   and (h.disabled_until is None or h.disabled_until <= now)]  # fmt: skip
        if not targets:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no network: nothing can be delivered
        body = json.dumps({"data": record, "meta": {"eventName": f"{resource}.{action}",
                                                    "deliveredAt": render_ts_now(now)}}).encode()  # fmt: skip
        for hook in targets:
            task = loop.create_task(self._deliver(hook, f"{resource}.{action}", body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Waits for deliveries in flight (tests and the demo)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, hook: Webhook, event: str, body: bytes) -> None:
        headers = {"Content-Type": JSONAPI}
        if hook.secret:
            headers["Outreach-Webhook-Signature"] = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(hook.url, data=body, headers=headers) as response:
                    status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = None
        self.sent.append(Sent(hook.id, event, status))
        if status is not None and 200 <= status < 300:
            hook.failures = 0
            return
        hook.failures += 1
        if hook.failures >= DISABLE_AFTER:
            now = self.sb.clock()
            hook.disabled_reason = f"{hook.failures} deliveries in a row failed (last: {status or 'no answer'})"
            hook.disabled_since = hook.disabled_since or now
            hook.disabled_until = now + DISABLED_FOR

    # --- HTTP ---------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/webhooks", self.list, name="list_webhooks")
        app.router.add_post("/api/v2/webhooks", self.create, name="create_webhook")
        app.router.add_get("/api/v2/webhooks/{id}", self.show, name="show_webhook")
        app.router.add_patch("/api/v2/webhooks/{id}", self.update, name="update_webhook")
        app.router.add_delete("/api/v2/webhooks/{id}", self.delete, name="delete_webhook")

    async def list(self, request: web.Request) -> web.StreamResponse:
        return reply({"data": [h.render() for h in self.hooks.values()], "links": {}, "meta": {}})

    async def show(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        return not_found("webhook") if hook is None else reply({"data": hook.render()})

    async def create(self, request: web.Request) -> web.StreamResponse:
        attrs, problem = await _attributes(request)
        if problem is not None:
            return problem
        if (bad := _bad_url(attrs.get("url"))) is not None:
            return bad
        now = self.sb.clock()
        hook = Webhook(self._next_id, attrs["url"], attrs.get("resource") or "*", attrs.get("action") or "*",
                       attrs.get("secret"), now, now)  # fmt: skip
        self._next_id += 1
        self.hooks[hook.id] = hook
        return reply({"data": hook.render()}, 201)

    async def update(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        if hook is None:
            return not_found("webhook")
        attrs, problem = await _attributes(request)
        if problem is not None:
            return problem
        if "url" in attrs and (bad := _bad_url(attrs["url"])) is not None:
            return bad
        for key in ("url", "resource", "action", "secret", "active"):
            if key in attrs:
                setattr(hook, key, attrs[key])
        hook.updated = self.sb.clock()
        hook.failures, hook.disabled_reason, hook.disabled_since, hook.disabled_until = 0, None, None, None
        return reply({"data": hook.render()})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        if hook is None:
            return not_found("webhook")
        del self.hooks[hook.id]
        return web.Response(status=204)

    def _hook(self, request: web.Request) -> Webhook | None:
        raw = request.match_info["id"]
        return self.hooks.get(int(raw)) if raw.isdigit() else None


def render_ts_now(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


async def _attributes(request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
    try:
        body = await request.json()
        attrs = body["data"]["attributes"]
        if not isinstance(attrs, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return {}, error(422, "validationError", "Validation Error", "Expected data.attributes.", "/data/attributes")
    return attrs, None


def _bad_url(url: object) -> web.Response | None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or not parts.netloc:
        return error(422, "validationError", "Validation Error", "url can't be blank.", "/data/attributes/url")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return None
    return error(422, "validationError", "Validation Error", "url must use https.", "/data/attributes/url")

