"""The request loop over loopback against the sandbox: 429 storms, Retry-After, no stampede.

Real sockets, real clock, real sleeps: what the sandbox served (its request log, stamped with
the same monotonic clock) is the proof, not what the client believes it did.
"""

from __future__ import annotations

import asyncio

import aiohttp

from bridge.http.ratelimit import RateLimiter
from bridge.http.retry import RetryPolicy
from bridge.http.transport import HttpConfig, RequestEvent, Response, Transport
from bridge.sandbox.counters import LogEntry
from bridge.sandbox.server import Sandbox
from bridge.zendesk.auth import BearerToken


def transport(
    session: aiohttp.ClientSession, sandbox: Sandbox, limiter: RateLimiter, *,
    hooks: list | None = None,
) -> Transport:
    return Transport(
        session, HttpConfig(api="zendesk", timeout=5.0, deadline=20.0),
        auth=BearerToken(sandbox.zendesk.issue_token()), limiter=limiter,
        retry=RetryPolicy(max_attempts=3, base=0.05, cap=0.2), hooks=hooks or [],
    )


def assert_nothing_inside_a_retry_after(entries: list[LogEntry]) -> None:
    for i, entry in enumerate(entries):
        if entry.status == 429:
            assert entry.retry_after is not None
            assert all(later.at >= entry.at + entry.retry_after for later in entries[i + 1 :])


async def test_a_429_storm_longer_than_max_attempts_is_waited_out(sandbox: Sandbox) -> None:
    url = f"{sandbox.zendesk_url}/api/v2/custom_objects"
    sandbox.faults.add("zendesk", "status", status=429, retry_after=0.1, times=5)
    sandbox.faults.add("zendesk", "status", status=502, times=2)  # two failures: 3 attempts suffice
    async with aiohttp.ClientSession() as session:
        tr = transport(session, sandbox, RateLimiter(min_spacing=0.01))
        response = await tr.request("GET", url)
    assert response.status == 200 and "custom_objects" in response.json()
    entries = sandbox.counters.entries("zendesk")
    assert [e.status for e in entries] == [429] * 5 + [502] * 2 + [200]
    assert [e.retry_after for e in entries[:5]] == [0.1] * 5  # fractional Retry-After sent as "0.1"
    assert_nothing_inside_a_retry_after(entries)


async def test_requests_held_by_a_429_leave_one_by_one_after_it(sandbox: Sandbox) -> None:
    base = f"{sandbox.zendesk_url}/api/v2/custom_objects"
    sandbox.faults.add("zendesk", "status", status=429, retry_after=0.3, path_contains="?first", times=1)
    limiter = RateLimiter(min_spacing=0.1)
    others: list[asyncio.Task[Response]] = []

    def on_429(event: RequestEvent) -> None:
        # the moment the 429 is seen, four more requests want to go out
        if event.status == 429 and not others:
            loop = asyncio.get_running_loop()
            others.extend(loop.create_task(tr.request("GET", f"{base}?other={n}")) for n in range(4))

    async with aiohttp.ClientSession() as session:
        tr = transport(session, sandbox, limiter, hooks=[on_429])
        await tr.request("GET", f"{base}?first")
        assert all(r.status == 200 for r in await asyncio.gather(*others))
    entries = sandbox.counters.entries("zendesk")
    assert [e.status for e in entries] == [429] + [200] * 5
    assert_nothing_inside_a_retry_after(entries)
    served = [e.at for e in entries[1:]]
    gaps = [b - a for a, b in zip(served, served[1:])]
    assert min(gaps) >= 0.05, gaps  # a spacing (0.1 s) apart, not a burst at the same instant
