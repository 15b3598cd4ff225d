"""The run lifecycle in process: a stop request settles the pages in flight, a stop budget
cancels what is left, and a run whose lease fence fails writes and commits nothing more."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest

from bridge import wiring
from bridge.errors import LeaseLost
from bridge.mapping.load import load_mappings
from bridge.pipeline.report import RunReport
from bridge.pipeline.run import StopRequest, settle_or_cancel, stop_signals
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.store.leases import Fence
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import prepare_zendesk

OPTIONS = SyncOptions(batch_size=10, job_concurrency=2, pages_in_flight=2, queue_pages=2)


class StopAfter:
    """A progress sink that runs `action` once `pages` pages have settled."""

    def __init__(self, pages: int, action: Any) -> None:
        self.pages, self.action = pages, action

    def page_settled(self, report: RunReport) -> None:
        if report.pages == self.pages:
            self.action()

    def run_finished(self, report: RunReport) -> None:
        pass


def count_writes(world: SandboxWorld) -> Counter[str]:
    writes: Counter[str] = Counter()
    upsert = world.sandbox.zendesk.upsert_by_external_id

    def recording(key: str, external_id: str, payload: dict[str, Any]) -> Any:
        if key == "vehicle":
            writes[external_id] += 1
        return upsert(key, external_id, payload)

    world.sandbox.zendesk.upsert_by_external_id = recording  # type: ignore[method-assign]
    return writes


async def id_map(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT external_id, zendesk_id FROM id_map WHERE mapping = 'vehicles'")
        return {r["external_id"]: str(r["zendesk_id"]) for r in rows}
    finally:
        await conn.close()


async def test_a_stopped_run_settles_its_pages_in_flight_and_the_next_one_resumes(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    writes = count_writes(world)
    world.sandbox.zendesk.jobs.delay = 0.02  # so the next page's jobs are queued when one settles
    stop = asyncio.Event()
    settings = world.settings.model_copy(update={"bridge_page_size": 10})  # 23 pages
    async with wiring.open_pool(settings) as pool, wiring.open_services(settings, pool) as s:
        report = await sync_mapping(mapping, s, OPTIONS, StopAfter(1, stop.set), stop=stop)
        assert report.status == "interrupted"
        assert 1 < report.pages < 10  # the pages already loading settled; the listing stopped
        received = {r["external_id"]: str(r["id"]) for r in world.sandbox.zendesk.records("vehicle")}
        assert received == await id_map(dsn)  # nothing in Zendesk that the id map does not know
        assert len(received) == report.written
        world.sandbox.zendesk.jobs.delay = 0
        again = await sync_mapping(mapping, s, OPTIONS)
    assert again.start_reason == "resume" and again.status == "succeeded"
    assert set(writes.values()) == {1}  # what the stopped run wrote was not written again
    assert len(writes) == len(world.sandbox.outreach.ids("vehicles"))


async def test_a_failing_fence_stops_writes_and_commits(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    held = True
    fence = Fence("vehicles", "worker:a", lambda: held)
    lost_at = float("inf")

    def lose() -> None:
        nonlocal held, lost_at
        held = False
        lost_at = time.monotonic()

    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO leases (mapping, holder, expires_at) VALUES ('vehicles', 'worker:a', now() + interval '1 minute')"
            )
        with pytest.raises(LeaseLost, match="not renewed within its TTL"):
            await sync_mapping(mapping, s, OPTIONS, StopAfter(1, lose), fence=fence)
    after_loss = [e for e in world.sandbox.counters.entries("zendesk")
                  if e.method == "POST" and "/jobs" in e.path and e.arrived >= lost_at]  # fmt: skip
    assert after_loss == []  # no bulk job was submitted once the lease was gone
    assert len(await id_map(dsn)) == 50  # only the page settled before


async def test_commit_page_is_fenced_by_the_lease_row(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    fence = Fence("vehicles", "worker:a", lambda: True)  # this process believes it holds the lease
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO leases (mapping, holder, expires_at) VALUES ('vehicles', 'worker:b', now() + interval '1 minute')"
            )
        with pytest.raises(LeaseLost, match="no longer holds the lease"):
            await sync_mapping(mapping, s, OPTIONS, fence=fence)
    assert await id_map(dsn) == {}
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM checkpoints WHERE mapping = 'vehicles'") == 0
    finally:
        await conn.close()


async def test_the_stop_budget_cancels_work_that_does_not_settle() -> None:
    request = StopRequest()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    running = asyncio.create_task(settle_or_cancel(stuck(), request, budget=0.05))
    await asyncio.sleep(0)
    request(signal.SIGTERM)
    with pytest.raises(asyncio.CancelledError):
        await running
    assert cancelled.is_set() and request.signal is signal.SIGTERM


async def test_work_that_settles_within_the_budget_returns_and_a_second_signal_hurries() -> None:
    request = StopRequest()
    release = asyncio.Event()

    async def settles() -> int:
        await release.wait()
        return 7

    running = asyncio.create_task(settle_or_cancel(settles(), request, budget=30))
    await asyncio.sleep(0)
    request(signal.SIGINT)
    await asyncio.sleep(0.01)
    release.set()
    assert await running == 7

    again = StopRequest()
    never = asyncio.Event()
    running = asyncio.create_task(settle_or_cancel(never.wait(), again, budget=30))
    await asyncio.sleep(0)
    again(signal.SIGTERM)
    again(signal.SIGTERM)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)


async def test_stop_signals_reach_the_callback_and_the_old_handlers_come_back() -> None:
    seen: list[signal.Signals] = []
    got = asyncio.Event()

    def before(signum: int, frame: Any) -> None:
        raise AssertionError("the previous handler must not run inside the block")

    def callback(sig: signal.Signals) -> None:
        seen.append(sig)
        got.set()

    original = signal.signal(signal.SIGTERM, before)
    try:
        with stop_signals(callback):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(got.wait(), 5)
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, original)
