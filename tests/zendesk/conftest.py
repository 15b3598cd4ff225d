"""Fixtures for the Zendesk client's wire tests: a mocked session, a real Transport, fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from bridge.http.retry import RetryPolicy
from bridge.http.transport import Auth, HttpConfig, Transport
from bridge.zendesk.auth import BearerToken
from bridge.zendesk.client import ZendeskClient, ZendeskConfig
from bridge.zendesk.wire import error_detail as zendesk_error_detail
from tests.http.fakes import mocked_http

BASE = "https://acme.zendesk.com"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    """Stands in for asyncio.sleep: records each delay and advances the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with mocked_http() as m:
        yield m


@pytest.fixture
async def session(mock: aioresponses) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_transport(
    session: aiohttp.ClientSession, auth: Auth | None, sleep: RecordingSleep, clock: FakeClock
) -> Transport:
    return Transport(
        session,
        HttpConfig(api="zendesk", max_attempts=3),
        auth=auth,
        retry=RetryPolicy(max_attempts=3, rand=lambda: 0.0),
        error_parser=zendesk_error_detail,
        sleep=sleep,
        clock=clock,
    )


@pytest.fixture
def client(
    session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> ZendeskClient:
    transport = make_transport(session, BearerToken("tok-test"), sleep, clock)
    return ZendeskClient(transport, ZendeskConfig(BASE), sleep=sleep, clock=clock)


def sent(mock: aioresponses, method: str, url: str) -> list[dict[str, Any]]:
    """The kwargs of every request made to `url` (exact URL, query included)."""
    from yarl import URL

    return [call.kwargs for call in mock.requests.get((method, URL(url)), [])]


def sent_json(kwargs: dict[str, Any]) -> Any:
    return json.loads(kwargs["data"])


def all_calls(mock: aioresponses) -> list[tuple[str, str]]:
    return [(m, str(u)) for (m, u), calls in mock.requests.items() for _ in calls]
