"""Deterministic time for retry and rate-limit tests: sleeps advance a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core


class FakeTime:
    """`clock()` reads virtual time; `sleep(d)` records d and wakes at start + d.

    Concurrent sleepers share the timeline (two 5 s sleeps started together both end at +5 s),
    so "sent no earlier than" assertions mean what they say.
    """

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._wall_offset = wall_offset

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


class CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer` argument."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@contextmanager
def mocked_http() -> Iterator[aioresponses]:
    """aioresponses, patched to work with the installed aiohttp."""
    original = aioresponses_core.ClientResponse
    aioresponses_core.ClientResponse = CompatResponse  # type: ignore[misc]
    try:
        with aioresponses() as m:
            yield m
    finally:
        aioresponses_core.ClientResponse = original  # type: ignore[misc]
