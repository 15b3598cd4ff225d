"""The alert message and its signature, as a receiver checks them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bridge.alerts import AlertConfig, AlertSender, Message, body_of, retry_delay, signature
from bridge.store import alerts as store_alerts


def test_the_signature_is_the_documented_hmac_of_timestamp_dot_body() -> None:
    body = b'{"text":"bridge: mapping vehicles is failing"}'
    expected = hmac.new(b"s3cret", b"1764300000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1764300000", body) == f"sha256={expected}"


def test_the_body_is_a_slack_message_with_structured_fields() -> None:
    message = Message("vehicles", "mapping_failing", "critical", "mapping 'vehicles' is failing: 403", {"run_id": 7})
    body = body_of(message, datetime(2026, 1, 1, tzinfo=UTC))
    assert body["text"] == ":rotating_light: bridge: mapping 'vehicles' is failing: 403"
    assert {k: body[k] for k in ("event", "severity", "mapping", "occurred_at", "details")} == {
        "event": "mapping_failing", "severity": "critical", "mapping": "vehicles",
        "occurred_at": "2026-01-01T00:00:00+00:00", "details": {"run_id": 7},
    }  # fmt: skip


def test_retries_back_off_doubling_up_to_a_cap() -> None:
    assert [retry_delay(n, 10.0) for n in (1, 2, 3, 7, 20)] == [10.0, 20.0, 40.0, 600.0, 600.0]


def test_the_config_never_shows_its_url_or_secret() -> None:
    config = AlertConfig(url="https://hooks.example/services/T0/B0/tok", secret="s3cret")
    assert "tok" not in repr(config) and "s3cret" not in repr(config)


async def test_a_receiver_that_keeps_failing_is_given_up_after_max_attempts(db_pool: asyncpg.Pool[Any]) -> None:
    answers: list[int] = []

    async def refuse(request: web.Request) -> web.Response:
        answers.append(500)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    outcomes: list[str] = []
    config = AlertConfig(url=f"http://127.0.0.1:{port}/hook", retry_seconds=0.001, max_attempts=2)
    sender = AlertSender(db_pool, config, observe=outcomes.append)
    try:
        async with db_pool.acquire() as conn:
            await store_alerts.enqueue(conn, "vehicles", "dead_letters", {"text": "x"})
        async with aiohttp.ClientSession() as session:
            assert await sender.send_due(session) == 0
            async with db_pool.acquire() as conn:  # due again after its (tiny) backoff
                while (await conn.fetchval("SELECT next_attempt_at > now() FROM alert_outbox")):
                    await asyncio.sleep(0.01)
            assert await sender.send_due(session) == 0
            assert await sender.send_due(session) == 0  # given up: nothing is due any more
    finally:
        await runner.cleanup()
    assert answers == [500, 500] and outcomes == ["failed", "dropped"]
    async with db_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT attempts, gave_up_at, delivered_at, last_error FROM alert_outbox")
    assert row["attempts"] == 2 and row["gave_up_at"] is not None and row["delivered_at"] is None
    assert row["last_error"] == "the receiver answered 500"
