"""Outreach's `webhook` resource: list, create, update and delete the webhooks bridge uses.

Answers are validated here (pydantic at the edge) into `Webhook` dataclasses. The secret is
write-only in Outreach: it is sent on create and update and never read back, so nothing
here can tell whether a webhook carries the current one; callers re-send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict

from bridge.errors import RejectedError
from bridge.http.transport import Transport
from bridge.outreach.wire import WireId

JSONAPI = "application/vnd.api+json"
_HEADERS = {"Content-Type": JSONAPI, "Accept": JSONAPI}
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    resource: str
    action: str
    active: bool
    disabled_reason: str | None
    disabled_until: datetime | None

    @property
    def disabled(self) -> bool:
        return not self.active or self.disabled_reason is not None or self.disabled_until is not None


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Attributes(_Tolerant):
    url: str
    resource: str | None = "*"
    action: str | None = "*"
    active: bool | None = True
    disabledReason: str | None = None  # noqa: N815 - Outreach's names
    disabledUntil: datetime | None = None  # noqa: N815


class _Resource(_Tolerant):
    id: WireId
    attributes: _Attributes


class _One(_Tolerant):
    data: _Resource


class _Links(_Tolerant):
    next: str | None = None


class _List(_Tolerant):
    data: list[_Resource]
    links: _Links = _Links()


def _webhook(resource: _Resource) -> Webhook:
    a = resource.attributes
    return Webhook(resource.id, a.url, a.resource or "*", a.action or "*", a.active is not False,
                   a.disabledReason, a.disabledUntil)  # fmt: skip


class WebhookAdmin:
    def __init__(self, transport: Transport, api_url: str) -> None:
        self._transport = transport
        self._base = api_url.rstrip("/")

    async def list(self) -> list[Webhook]:
        found: list[Webhook] = []
        url: str | None = f"{self._base}/api/v2/webhooks?page[size]={PAGE_SIZE}&count=false"
        while url is not None:
            body = _parse(_List, await self._send("GET", url), url)
            found.extend(_webhook(resource) for resource in body.data)
            url = body.links.next if body.links.next and body.links.next.startswith(self._base + "/") else None
        return found

    async def create(self, *, url: str, resource: str, action: str, secret: str) -> Webhook:
        attributes = {"url": url, "resource": resource, "action": action, "secret": secret}
        where = f"{self._base}/api/v2/webhooks"
        body = await self._send("POST", where, {"data": {"type": "webhook", "attributes": attributes}})
        return _webhook(_parse(_One, body, where).data)

    async def update(self, webhook_id: str, **attributes: Any) -> Webhook:
        """Updating also clears Outreach's disabled fields (`disabledReason`, `disabledUntil`)."""
        where = f"{self._base}/api/v2/webhooks/{webhook_id}"
        data = {"type": "webhook", "id": int(webhook_id) if webhook_id.isdigit() else webhook_id,
                "attributes": attributes}  # fmt: skip
        body = await self._send("PATCH", where, {"data": data})
        return _webhook(_parse(_One, body, where).data)

    async def delete(self, webhook_id: str) -> None:
        await self._send("DELETE", f"{self._base}/api/v2/webhooks/{webhook_id}")

    async def _send(self, method: str, url: str, json: Any = None) -> Any:
        response = await self._transport.request(method, url, json=json, headers=_HEADERS)
        return response.json() if response.body else None


def _parse(model: type[_One] | type[_List], body: Any, url: str) -> Any:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RejectedError(
            f"outreach {url.split('?')[0].removeprefix('https://')}: answered with a webhook "
            f"body bridge cannot read ({where}: {first['msg']}); check OUTREACH_API_URL",
            api="outreach", method="GET", detail=f"{where}: {first['msg']}",
        ) from exc
