"""The health server answers /readyz in time and with a short reason, whatever the check does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from structlog.testing import capture_logs

from bridge import server as health
from bridge.server import Readiness, WorkerServer


async def _metrics() -> bytes:
    return b""


@pytest.fixture
async def serve() -> AsyncIterator[list[WorkerServer]]:
    started: list[WorkerServer] = []
    yield started
    for server in started:
        await server.stop()


async def get(server: WorkerServer, path: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}{path}") as response:
            return response.status, await response.json()


async def start(serve: list[WorkerServer], check: health.ReadinessCheck) -> WorkerServer:
    server = WorkerServer(0, check, _metrics, host="127.0.0.1")
    await server.start()
    serve.append(server)
    return server


async def test_a_check_that_hangs_is_a_503_in_time(
    serve: list[WorkerServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2)

    async def hangs() -> Readiness:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    server = await start(serve, hangs)
    began = time.monotonic()
    status, body = await get(server, "/readyz")
    assert status == 503 and body["reason"] == "the readiness check did not finish in time"
    assert time.monotonic() - began < 1.0
    assert (await get(server, "/healthz"))[0] == 200


async def test_a_failing_check_is_a_503_with_a_short_reason_and_a_logged_detail(
    serve: list[WorkerServer],
) -> None:
    ready = True

    async def check() -> Readiness:
        if ready:
            return Readiness(True, "database reachable, migrations applied")
        raise RuntimeError("could not connect to db.internal:5432 as user bridge_admin")

    server = await start(serve, check)
    with capture_logs() as logs:
        assert (await get(server, "/readyz"))[0] == 200
        assert (await get(server, "/readyz"))[0] == 200
        ready = False
        for _ in range(2):
            status, body = await get(server, "/readyz")
            assert status == 503 and body == {"status": "not ready", "reason": "the readiness check failed"}
    changes = [e for e in logs if e["event"] == "readiness_changed"]
    assert [c["ready"] for c in changes] == [True, False]  # once per change, not per probe
    assert "db.internal" in changes[1]["detail"]
