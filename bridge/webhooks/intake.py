"""`POST /webhooks/outreach`: verify, store, answer — the worker's one inbound surface.

Anyone on the internet can reach this endpoint, so it is written as hostile ground:
- the signature (`Outreach-Webhook-Signature`, hex HMAC-SHA256 of the raw body keyed with
  `OUTREACH_WEBHOOK_SECRET`) is checked in constant time before the body is parsed;
- the body is read with a hard cap (MAX_BODY_BYTES, 413 beyond it) before anything else;
- answers are fixed, short JSON: no error text, no echo of the input, no server banner;
- a delivery is stored in Postgres before the 2xx (Outreach sends once and never retries),
  within STORE_TIMEOUT_S so the answer stays well inside Outreach's ~5 s wait.
Nothing is taken from a delivery but its event, record id and change time: the consumer reads
the record afresh, so forged or stale attributes can never reach Zendesk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bridge.errors import BridgeError
from bridge.logs import get_logger
from bridge.store.inbox import Delivery

log = get_logger(__name__)

PATH = "/webhooks/outreach"
SIGNATURE_HEADER = "Outreach-Webhook-Signature"
MAX_BODY_BYTES = 1024 * 1024
STORE_TIMEOUT_S = 3.0
CONTENT_TYPES = frozenset({"application/json", "application/vnd.api+json"})

Store = Callable[[Delivery], Awaitable[bool]]  # True: new; False: seen before
Observe = Callable[[str], None]  # told each answer's outcome, for metrics


def signature(secret: bytes, body: bytes) -> str:
    """What Outreach sends for `body`: the hex HMAC-SHA256 keyed with the secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verified(secret: bytes, body: bytes, sent: str | None) -> bool:
    if not sent:
        return False
    expected = signature(secret, body).encode()
    return hmac.compare_digest(expected, sent.strip().lower().encode("ascii", "replace"))


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Data(_Wire):
    type: str
    id: str | int
    attributes: dict[str, object] = {}

    @field_validator("id")
    @classmethod
    def _id_text(cls, value: str | int) -> str | int:
        if isinstance(value, bool) or str(value).strip() == "":
            raise ValueError("data.id must be a non-empty id")
        return value


class _Meta(_Wire):
    eventName: str  # noqa: N815 - Outreach's name
    deliveredAt: datetime | None = None  # noqa: N815

    @field_validator("eventName")
    @classmethod
    def _event(cls, value: str) -> str:
        resource, dot, action = value.partition(".")
        if not (resource and dot and action):
            raise ValueError("meta.eventName must look like 'prospect.updated'")
        return value


class _Body(_Wire):
    data: _Data
    meta: _Meta


class InvalidDelivery(BridgeError):
    """A signed body that is not a delivery bridge can act on."""


def parse(body: bytes) -> Delivery:
    """The parts of a verified body bridge uses; raises InvalidDelivery otherwise."""
    try:
        wire = _Body.model_validate_json(body)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
        raise InvalidDelivery(f"a webhook delivery was not understood (at {fields}); ignored") from exc
    resource, _, action = wire.meta.eventName.partition(".")
    return Delivery(
        digest=hashlib.sha256(body).digest(),
        resource=resource,
        action=action,
        source_id=str(wire.data.id),
        event_name=wire.meta.eventName,
        changed_at=_changed_at(wire),
    )


def _changed_at(wire: _Body) -> datetime | None:
    updated = wire.data.attributes.get("updatedAt")
    if isinstance(updated, str):
        try:
            return datetime.fromisoformat(updated.replace("Z", "+00:00"))
        except ValueError:
            pass
    return wire.meta.deliveredAt


def _answer(status: int, outcome: str) -> web.Response:
    return web.json_response({"status": outcome}, status=status)


class WebhookIntake:
    """The request handler; `secret` is the raw webhook secret (never logged)."""

    def __init__(self, secret: bytes, store: Store, observe: Observe | None = None) -> None:
        self._secret, self._store = secret, store
        self._observe = observe or (lambda outcome: None)

    async def handle(self, request: web.Request) -> web.Response:
        status, outcome = await self._handle(request)
        self._observe(outcome)
        return _answer(status, outcome)

    async def _handle(self, request: web.Request) -> tuple[int, str]:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return 413, "too large"
        if request.content_type not in CONTENT_TYPES:
            return 415, "unsupported media type"
        body = await _read_capped(request)
        if body is None:
            return 413, "too large"
        if not verified(self._secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("webhook_unauthorized", remote=request.remote)
            return 401, "unauthorized"
        try:
            delivery = parse(body)
        except InvalidDelivery as exc:
            log.warning("webhook_malformed", error=str(exc))
            return 400, "malformed"
        return await self._keep(delivery)

    async def _keep(self, delivery: Delivery) -> tuple[int, str]:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                new = await self._store(delivery)
        except (TimeoutError, BridgeError) as exc:
            log.error("webhook_not_stored", event_name=delivery.event_name, source_id=delivery.source_id,
                      error=str(exc) or "timed out")  # fmt: skip
            return 503, "unavailable"
        log.info("webhook_received", event_name=delivery.event_name, source_id=delivery.source_id,
                 duplicate=not new)  # fmt: skip
        return 202, "accepted" if new else "duplicate"


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (a chunked body has no length to check first)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
