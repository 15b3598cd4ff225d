"""The worker's upkeep of one mapping, in process: sandbox over loopback, real Postgres."""

from __future__ import annotations

import asyncio

import asyncpg

from bridge.mapping.load import load_mappings
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.store import changelog, runs, submitted_jobs
from bridge.store.changelog import Change
from bridge.upkeep import Upkeep
from bridge.wiring import upkeep_config
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_reconcile import fetch, services
from tests.pipeline.test_relationships import (
    actual_lookups,
    expected_lookups,
    parked_rows,
)
from tests.pipeline.test_sync import prepare_zendesk


async def test_upkeep_fills_links_whose_target_appeared_outside_a_completed_run(world: SandboxWorld) -> None:
    """Vehicles first (brands parked), then brands by a run whose fill saw only itself."""
    await prepare_zendesk(world)
    every = load_mappings(world.settings.bridge_mappings)
    config = upkeep_config(world.settings, actor="tester")
    async with services(world.settings) as s:
        await sync_mapping(every["vehicles"], s, SyncOptions())
        await sync_mapping(every["vehicle_brands"], s, SyncOptions())  # no mappings=: no fill of vehicles
        assert any(r["field"] == "brand" for r in await parked_rows(world))
        world.sandbox.counters.reset()
        await Upkeep(every["vehicles"], s, config, asyncio.Event()).run()
    assert actual_lookups(world.sandbox) == expected_lookups(world.sandbox)
    assert not [r for r in await parked_rows(world) if r["field"] == "brand"]
    assert world.sandbox.counters.count("outreach") == 0  # no letters due, no reconcile due
    kinds = [r["kind"] for r in await fetch(world, "SELECT kind FROM runs ORDER BY id")]
    assert kinds == ["backfill", "backfill"]


async def test_upkeep_does_nothing_once_the_worker_is_stopping(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    every = load_mappings(world.settings.bridge_mappings)
    config = upkeep_config(world.settings.model_copy(update={"bridge_reconcile_every_seconds": 0.001}))
    stopping = asyncio.Event()
    stopping.set()
    async with services(world.settings) as s:
        await sync_mapping(every["vehicle_brands"], s, SyncOptions())
        world.sandbox.counters.reset()
        await Upkeep(every["vehicle_brands"], s, config, stopping).run()
        stopping.clear()
        await Upkeep(every["vehicle_brands"], s, config, stopping).run()  # the control
    rows = await fetch(world, "SELECT kind, actor, status FROM runs WHERE kind = 'reconcile'")
    assert [tuple(r) for r in rows] == [("reconcile", "worker", "succeeded")]


async def test_reconcile_is_due_a_period_after_the_last_one_or_after_the_first_run(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        assert not await runs.reconcile_due(conn, "m", 60)  # never ran: nothing to reconcile
        await conn.execute("INSERT INTO runs (mapping, kind, status, started_at) "
                           "VALUES ('m', 'worker', 'succeeded', now() - interval '2 minutes')")  # fmt: skip
        assert await runs.reconcile_due(conn, "m", 60)
        assert not await runs.reconcile_due(conn, "m", 600)
        await conn.execute("INSERT INTO runs (mapping, kind, status, started_at) "
                           "VALUES ('m', 'reconcile', 'failed', now() - interval '30 seconds')")  # fmt: skip
        assert not await runs.reconcile_due(conn, "m", 60)  # a refused or failed one counts too
        assert await runs.reconcile_due(conn, "m", 10)
        assert not await runs.reconcile_due(conn, "other", 10)
    finally:
        await conn.close()


async def test_upkeep_forgets_jobs_too_old_for_zendesk_to_answer(world: SandboxWorld) -> None:
    every = load_mappings(world.settings.bridge_mappings)
    config = upkeep_config(world.settings)
    async with services(world.settings) as s:
        async with s.pool.acquire() as conn:
            for job_id, mapping in (("old", "vehicles"), ("new", "vehicles"), ("theirs", "vehicle_brands")):
                await submitted_jobs.record(conn, mapping, job_id, ["a"], ["h"])
            await conn.execute("UPDATE submitted_jobs SET submitted_at = now() - interval '25 hours' "
                               "WHERE job_id IN ('old', 'theirs')")  # fmt: skip
        await Upkeep(every["vehicles"], s, config, asyncio.Event()).run()
    rows = await fetch(world, "SELECT job_id FROM submitted_jobs ORDER BY job_id")
    assert [r["job_id"] for r in rows] == ["new", "theirs"]


async def test_upkeep_prunes_the_mappings_changelog_rows_older_than_the_retention(world: SandboxWorld) -> None:
    every = load_mappings(world.settings.bridge_mappings)
    config = upkeep_config(world.settings.model_copy(update={"bridge_changelog_days": 2}), actor="tester")
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        for mapping in ("vehicle_brands", "vehicles"):
            await changelog.add_many(conn, mapping, None, [Change(sid, "updated") for sid in ("old", "new")])
        await conn.execute("UPDATE record_changelog SET at = now() - CASE source_id "
                           "WHEN 'old' THEN interval '3 days' ELSE interval '1 day' END")  # fmt: skip
    finally:
        await conn.close()
    await prepare_zendesk(world)
    async with services(world.settings) as s:
        await Upkeep(every["vehicle_brands"], s, config, asyncio.Event()).run()
    rows = await fetch(world, "SELECT mapping, source_id FROM record_changelog ORDER BY mapping, source_id")
    assert [tuple(r) for r in rows] == [("vehicle_brands", "new"), ("vehicles", "new"), ("vehicles", "old")]
