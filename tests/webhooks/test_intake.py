"""The webhook endpoint, over real HTTP into a real Postgres inbox, treated as hostile ground."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from bridge.server import Readiness, WorkerServer
from bridge.store import inbox
from bridge.store.inbox import Delivery
from bridge.webhooks import intake
from bridge.webhooks.intake import WebhookIntake, signature

SECRET = b"whsec-test-0123456789"


async def _ready() -> Readiness:
    return Readiness(True, "ok")


async def _metrics() -> bytes:
    return b""


def delivery_body(source_id: object = 17, event: str = "prospect.updated", **attributes: object) -> bytes:
    data = {"type": event.partition(".")[0], "id": source_id, "attributes": attributes}
    return json.dumps({"data": data, "meta": {"eventName": event, "deliveredAt": "2026-11-28T10:00:00Z"}}).encode()


@pytest.fixture
async def endpoint(db_pool: asyncpg.Pool[Any]) -> AsyncIterator[str]:
    async def store(delivery: Delivery) -> bool:
        async with db_pool.acquire() as conn:
            return await inbox.add(conn, delivery)

    handler = WebhookIntake(SECRET, store)
    server = WorkerServer(0, _ready, _metrics, host="127.0.0.1", webhooks=(intake.PATH, handler.handle))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}{intake.PATH}"
    finally:
        await server.stop()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def signed(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    return {"Content-Type": content_type, intake.SIGNATURE_HEADER: signature(SECRET, body)}


async def stored(db_conn: Any) -> list[tuple[str, str, str]]:
    rows = await db_conn.fetch("SELECT resource, action, source_id FROM webhook_inbox ORDER BY id")
    return [tuple(row) for row in rows]


async def test_a_signed_delivery_is_stored_before_the_answer(endpoint: str, db_conn: Any) -> None:
    body = delivery_body(17, "prospect.updated", firstName="Ada")
    status, answer, headers = await post(endpoint, body, signed(body))
    assert (status, json.loads(answer)) == (202, {"status": "accepted"})
    assert await stored(db_conn) == [("prospect", "updated", "17")]
    assert "aiohttp" not in headers.get("Server", "") and "Python" not in headers.get("Server", "")


async def test_both_content_types_and_string_ids_are_accepted(endpoint: str, db_conn: Any) -> None:
    body = delivery_body("42", "account.destroyed")
    status, _, _ = await post(endpoint, body, signed(body, "application/vnd.api+json; charset=utf-8"))
    assert status == 202
    assert await stored(db_conn) == [("account", "destroyed", "42")]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", intake.SIGNATURE_HEADER: ""},
        {"Content-Type": "application/json", intake.SIGNATURE_HEADER: "0" * 64},
        {"Content-Type": "application/json", intake.SIGNATURE_HEADER: "not hex at all ✓"},
    ],
    ids=["missing", "empty", "wrong", "garbage"],
)
async def test_a_missing_or_bad_signature_is_401_and_nothing_is_stored(
    endpoint: str, db_conn: Any, headers: dict[str, str]
) -> None:
    status, answer, _ = await post(endpoint, delivery_body(), headers)
    assert (status, json.loads(answer)) == (401, {"status": "unauthorized"})
    assert await stored(db_conn) == []


async def test_a_signature_over_another_body_is_refused(endpoint: str, db_conn: Any) -> None:
    original = delivery_body(1)
    forged = delivery_body(2)
    status, _, _ = await post(endpoint, forged, signed(original))
    assert status == 401 and await stored(db_conn) == []


async def test_a_replayed_delivery_is_stored_once(endpoint: str, db_conn: Any) -> None:
    body = delivery_body(5)
    answers = [await post(endpoint, body, signed(body)) for _ in range(3)]
    assert [(status, json.loads(answer)["status"]) for status, answer, _ in answers] == [
        (202, "accepted"), (202, "duplicate"), (202, "duplicate"),
    ]  # fmt: skip
    assert await stored(db_conn) == [("prospect", "updated", "5")]


async def test_an_oversize_body_is_413_and_nothing_is_stored(endpoint: str, db_conn: Any) -> None:
    body = delivery_body(5, notes="x" * intake.MAX_BODY_BYTES)
    status, answer, _ = await post(endpoint, body, signed(body))
    assert (status, json.loads(answer)) == (413, {"status": "too large"})

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to refuse it by
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with aiohttp.ClientSession() as session:
        async with session.post(endpoint, data=chunked(), headers=signed(body)) as response:
            assert response.status == 413
    assert await stored(db_conn) == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"data": {"type": "prospect"}, "meta": {"eventName": "prospect.updated"}}',
     b'{"data": {"type": "prospect", "id": 1}, "meta": {"eventName": "updated"}}',
     b'{"data": {"type": "prospect", "id": ""}, "meta": {"eventName": "prospect.updated"}}'],
    ids=["not-json", "not-an-object", "no-id", "bad-event", "empty-id"],
)  # fmt: skip
async def test_a_signed_but_malformed_body_is_400_with_nothing_echoed(
    endpoint: str, db_conn: Any, body: bytes
) -> None:
    status, answer, _ = await post(endpoint, body, signed(body))
    assert (status, json.loads(answer)) == (400, {"status": "malformed"})
    assert await stored(db_conn) == []


async def test_other_content_types_are_415(endpoint: str, db_conn: Any) -> None:
    body = delivery_body()
    status, _, _ = await post(endpoint, body, signed(body, "text/plain"))
    assert status == 415 and await stored(db_conn) == []


async def test_the_endpoint_does_not_exist_without_a_secret() -> None:
    server = WorkerServer(0, _ready, _metrics, host="127.0.0.1")
    await server.start()
    try:
        body = delivery_body()
        status, _, _ = await post(f"http://127.0.0.1:{server.port}{intake.PATH}", body, signed(body))
    finally:
        await server.stop()
    assert status == 404


async def test_a_database_that_fails_is_a_503_without_its_error_text(db_dsn: str) -> None:
    from bridge.errors import StoreError

    async def broken(delivery: Delivery) -> bool:
        raise StoreError(f"Postgres at {db_dsn} refused: password authentication failed for user x")

    handler = WebhookIntake(SECRET, broken)
    server = WorkerServer(0, _ready, _metrics, host="127.0.0.1", webhooks=(intake.PATH, handler.handle))
    await server.start()
    try:
        body = delivery_body()
        status, answer, _ = await post(f"http://127.0.0.1:{server.port}{intake.PATH}", body, signed(body))
    finally:
        await server.stop()
    assert (status, json.loads(answer)) == (503, {"status": "unavailable"})
