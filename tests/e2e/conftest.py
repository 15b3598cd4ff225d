"""Fixtures shared by the end-to-end tests, which run bridge as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.worker_proc import WorkerProc


@pytest.fixture
async def workers() -> AsyncIterator[list[WorkerProc]]:
    """Worker processes a test starts; each is killed afterwards, whatever the test did."""
    started: list[WorkerProc] = []
    yield started
    for worker in started:
        await worker.kill()
