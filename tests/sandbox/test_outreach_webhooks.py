"""The Outreach simulator's webhooks: the resource, and signed one-shot deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bridge.sandbox import outreach_webhooks
from tests.loopback import receiving
from tests.sandbox.conftest import World

JSONAPI = "application/vnd.api+json"


class Receiver:
    """A loopback endpoint that records what it got and answers `status`."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, dict[str, str]]] = []
        self.status = 202
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with receiving(rec.handle) as rec.url:
        yield rec


async def o_send(world: World, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {**world.o_auth, "Content-Type": JSONAPI}
    async with world.http.request(method, world.sandbox.outreach_url + path, data=json.dumps(body), headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


async def create(world: World, **attributes: Any) -> tuple[int, Any]:
    return await o_send(world, "POST", "/api/v2/webhooks", {"data": {"type": "webhook", "attributes": attributes}})


async def test_a_webhook_needs_an_https_url_and_never_shows_its_secret(world: World) -> None:
    status, body = await create(world, url="http://example.com/hook", secret="s")
    assert status == 422 and "https" in body["errors"][0]["detail"]
    status, body = await create(world, url="https://example.com/hook", resource="prospect", secret="s3cret")
    assert status == 201
    attrs = body["data"]["attributes"]
    assert (attrs["resource"], attrs["action"], attrs["active"]) == ("prospect", "*", True)
    assert "secret" not in attrs and "s3cret" not in json.dumps(body)
    status, listed, _ = await world.o_get("/api/v2/webhooks")
    assert status == 200 and [w["id"] for w in listed["data"]] == [body["data"]["id"]]


async def test_a_change_is_delivered_once_signed_and_custom_objects_send_nothing(
    world: World, receiver: Receiver
) -> None:
    await create(world, url=receiver.url, secret="k")
    out = world.sandbox.outreach
    pid = out.ids("prospect")[0]
    out.update("prospect", pid, title="Boss")
    out.update("vehicles", out.ids("vehicles")[0], vehicle_name="x")
    await out.webhooks.settle()
    [(body, headers)] = receiver.got
    assert headers["Outreach-Webhook-Signature"] == hmac.new(b"k", body, hashlib.sha256).hexdigest()
    delivery = json.loads(body)
    assert delivery["meta"]["eventName"] == "prospect.updated"
    assert (delivery["data"]["id"], delivery["data"]["attributes"]["title"]) == (pid, "Boss")
    out.delete("prospect", pid)
    await out.webhooks.settle()
    assert json.loads(receiver.got[-1][0])["meta"]["eventName"] == "prospect.destroyed"


async def test_failures_are_not_retried_and_disable_the_webhook_until_it_is_updated(
    world: World, receiver: Receiver
) -> None:
    _, made = await create(world, url=receiver.url, resource="prospect", action="updated", secret="k")
    receiver.status = 500
    out = world.sandbox.outreach
    pid = out.ids("prospect")[0]
    for i in range(outreach_webhooks.DISABLE_AFTER + 2):
        out.update("prospect", pid, title=f"t{i}")
        await out.webhooks.settle()
    assert len(receiver.got) == outreach_webhooks.DISABLE_AFTER  # one attempt each, then disabled
    _, shown, _ = await world.o_get(f"/api/v2/webhooks/{made['data']['id']}")
    assert shown["data"]["attributes"]["disabledReason"] and shown["data"]["attributes"]["disabledUntil"]
    status, updated = await o_send(world, "PATCH", f"/api/v2/webhooks/{made['data']['id']}",
                                   {"data": {"type": "webhook", "attributes": {"secret": "k2"}}})  # fmt: skip
    assert status == 200 and updated["data"]["attributes"]["disabledReason"] is None
    receiver.status = 202
    out.update("prospect", pid, title="again")
    await out.webhooks.settle()
    assert len(receiver.got) == outreach_webhooks.DISABLE_AFTER + 1
    status, _ = await o_send(world, "DELETE", f"/api/v2/webhooks/{made['data']['id']}")
    assert status == 204 and out.webhooks.hooks == {}
