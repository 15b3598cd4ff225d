"""Fixtures for the sandbox's own tests: a seeded Sandbox on loopback and a plain aiohttp session.

These tests talk HTTP to the simulators directly (never through bridge's clients), so they
check the sandbox against `api/*.md` on their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.sandbox import OutreachSandbox, Sandbox, SeedInfo, ZendeskSandbox, seed_demo


class FakeClock:
    """A settable clock for the simulators (their `clock=` argument)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 7, 25, 13, 18, 30, 736332, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    sandbox: Sandbox
    info: SeedInfo
    http: aiohttp.ClientSession
    clock: FakeClock

    @property
    def o_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.info.outreach_token}"}

    @property
    def z_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.info.zendesk_token}"}

    async def o_get(self, path: str, **kw: Any) -> tuple[int, Any, Any]:
        url = path if path.startswith("http") else self.sandbox.outreach_url + path
        async with self.http.get(url, headers=kw.pop("headers", self.o_auth), **kw) as r:
            return r.status, await r.json(content_type=None), r.headers

    async def z(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, Any]:
        url = path if path.startswith("http") else self.sandbox.zendesk_url + path
        async with self.http.request(method, url, json=body, headers=kw.pop("headers", self.z_auth), **kw) as r:
            text = await r.text()
            return r.status, (None if not text else await r.json(content_type=None)), r.headers


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = FakeClock()
    sandbox = Sandbox(outreach=OutreachSandbox(clock=clock), zendesk=ZendeskSandbox(clock=clock))
    info = seed_demo(sandbox, vehicles=60, brands=5, prospects=12)
    async with sandbox, aiohttp.ClientSession() as http:
        yield World(sandbox, info, http, clock)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll an async predicate until true, or fail after `timeout` seconds."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)
