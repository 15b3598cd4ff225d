"""Reconcile end to end, in process: sandbox over loopback, real Postgres."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from bridge import wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.pipeline.reconcile import ReconcileOptions, guard, json_api_type, reconcile_mapping
from bridge.pipeline.services import Services
from bridge.sandbox.server import Sandbox
from bridge.settings import Settings
from bridge.store import idmap, submitted_jobs
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import backfill, prepare_zendesk

OPTIONS = ReconcileOptions(actor="tester", page_size=50)


def vehicles(world: SandboxWorld, on_delete: str) -> Mapping:
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    return mapping.model_copy(update={"on_delete": on_delete})


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with wiring.open_pool(settings) as pool, wiring.open_services(settings, pool) as s:
        yield s


async def fetch(world: SandboxWorld, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


WRITE_ROUTES = ("create_job", "create_record", "upsert_record", "update_record",
                "delete_record", "delete_record_by_external_id")


def zendesk_writes(sandbox: Sandbox) -> int:
    """Requests that could change a Zendesk record (token requests do not count)."""
    return sum(sandbox.counters.count("zendesk", route=route) for route in WRITE_ROUTES)


def zendesk_ids(sandbox: Sandbox) -> set[str]:
    return {r["external_id"] for r in sandbox.zendesk.records("vehicle")}


def delete_in_outreach(sandbox: Sandbox, count: int) -> list[int]:
    """Deletes every 7th vehicle, `count` of them, and returns their ids."""
    ids = sandbox.outreach.ids("vehicles")[3::7][:count]
    for vid in ids:
        sandbox.outreach.delete("vehicles", vid)
    return ids


@pytest.fixture
async def synced(world: SandboxWorld) -> SandboxWorld:
    await prepare_zendesk(world)
    await backfill(world)
    assert len(zendesk_ids(world.sandbox)) == world.seed.vehicles
    world.sandbox.counters.reset()
    return world


async def test_delete_removes_exactly_the_deleted_records(synced: SandboxWorld) -> None:
    before = zendesk_ids(synced.sandbox)
    gone = {f"outreach:vehicles:{vid}" for vid in delete_in_outreach(synced.sandbox, 5)}
    async with services(synced.settings) as s:
        report = await reconcile_mapping(vehicles(synced, "delete"), s, OPTIONS)
    assert (report.status, report.missing, report.deleted, report.failed) == ("succeeded", 5, 5, 0)
    assert zendesk_ids(synced.sandbox) == before - gone
    assert zendesk_writes(synced.sandbox) == 1  # five deletes, one bulk job
    mapped = await fetch(synced, "SELECT external_id FROM id_map WHERE mapping = 'vehicles'")
    assert {r["external_id"] for r in mapped} == before - gone
    run = (await fetch(synced, "SELECT * FROM runs WHERE kind = 'reconcile'"))[0]
    assert (run["status"], run["actor"], run["deleted"], run["fetched"]) == (
        "succeeded", "tester", 5, synced.seed.vehicles - 5)
    # The listing was cheap: one sparse attribute, big pages, no count.
    listed = [e for e in synced.sandbox.counters.entries("outreach") if e.method == "GET"]
    assert listed and all("fields%5Bvehicles%5D=updatedAt" in e.path or
                          "fields[vehicles]=updatedAt" in e.path for e in listed)
    assert all("count=false" in e.path for e in listed)


async def test_keep_marks_gone_and_deletes_nothing(synced: SandboxWorld) -> None:
    before = zendesk_ids(synced.sandbox)
    deleted = {str(v) for v in delete_in_outreach(synced.sandbox, 5)}
    async with services(synced.settings) as s:
        report = await reconcile_mapping(vehicles(synced, "keep"), s, OPTIONS)
    assert (report.status, report.missing, report.marked_gone, report.deleted) == ("succeeded", 5, 5, 0)
    assert zendesk_ids(synced.sandbox) == before
    assert zendesk_writes(synced.sandbox) == 0
    rows = await fetch(synced, "SELECT source_id FROM id_map WHERE gone_at IS NOT NULL")
    assert {r["source_id"] for r in rows} == deleted
    run = (await fetch(synced, "SELECT * FROM runs WHERE kind = 'reconcile'"))[0]
    assert (run["gone"], run["deleted"]) == (5, 0)

    async with services(synced.settings) as s:  # a second pass marks nothing new
        again = await reconcile_mapping(vehicles(synced, "keep"), s, OPTIONS)
    assert (again.missing, again.marked_gone) == (5, 0)


async def test_a_record_restored_after_being_marked_gone_is_live_again(synced: SandboxWorld) -> None:
    out = synced.sandbox.outreach
    vid = out.ids("vehicles")[10]
    rec = out.records_of("vehicles")[vid]
    out.delete("vehicles", vid)
    async with services(synced.settings) as s:
        await reconcile_mapping(vehicles(synced, "keep"), s, OPTIONS)
        assert (await fetch(synced, "SELECT gone_at FROM id_map WHERE mapping = 'vehicles' AND source_id = $1", str(vid)))[0][0]
        # Restored with its old updatedAt: an incremental sync would never see it again.
        out.records_of("vehicles")[vid] = rec
        bisect.insort(out.order_of("vehicles"), (rec.updated, rec.id))
        report = await reconcile_mapping(vehicles(synced, "keep"), s, OPTIONS)
    assert (report.missing, report.revived) == (0, 1)
    row = (await fetch(synced, "SELECT gone_at FROM id_map WHERE mapping = 'vehicles' AND source_id = $1", str(vid)))[0]
    assert row["gone_at"] is None


@pytest.mark.parametrize("fault", ["status", "malformed"])
async def test_a_listing_that_fails_halfway_deletes_nothing(synced: SandboxWorld, fault: str) -> None:
    before = zendesk_ids(synced.sandbox)
    delete_in_outreach(synced.sandbox, 5)
    # The first page is served; every later one (it carries page[after]) fails for good.
    synced.sandbox.faults.add("outreach", fault, status=500, times=-1, path_contains="after")
    settings = synced.settings.model_copy(update={"bridge_max_attempts": 2})
    async with services(settings) as s:
        report = await reconcile_mapping(vehicles(synced, "delete"), s, OPTIONS)
    assert report.status == "failed" and "nothing was deleted" in (report.error or "")
    assert report.deleted == 0
    assert zendesk_ids(synced.sandbox) == before
    assert zendesk_writes(synced.sandbox) == 0
    assert len(await fetch(synced, "SELECT 1 FROM id_map")) == synced.seed.vehicles + synced.seed.brands
    run = (await fetch(synced, "SELECT status, deleted FROM runs WHERE kind = 'reconcile'"))[0]
    assert (run["status"], run["deleted"]) == ("failed", 0)


async def test_a_listing_that_fails_under_keep_marks_nothing(synced: SandboxWorld) -> None:
    delete_in_outreach(synced.sandbox, 5)
    synced.sandbox.faults.add("outreach", "status", status=503, times=-1, path_contains="after")
    settings = synced.settings.model_copy(update={"bridge_max_attempts": 2})
    async with services(settings) as s:
        report = await reconcile_mapping(vehicles(synced, "keep"), s, OPTIONS)
    assert report.status == "failed"
    assert await fetch(synced, "SELECT 1 FROM id_map WHERE gone_at IS NOT NULL") == []


async def test_the_guard_refuses_a_big_deletion_unless_forced(synced: SandboxWorld) -> None:
    before = zendesk_ids(synced.sandbox)
    gone = {f"outreach:vehicles:{v}" for v in delete_in_outreach(synced.sandbox, 30)}  # 13 %
    async with services(synced.settings) as s:
        refused = await reconcile_mapping(vehicles(synced, "delete"), s, OPTIONS)
        assert refused.status == "refused" and "--force" in (refused.error or "")
        assert zendesk_ids(synced.sandbox) == before
        assert zendesk_writes(synced.sandbox) == 0
        forced = ReconcileOptions(actor="tester", page_size=50, force=True)
        done = await reconcile_mapping(vehicles(synced, "delete"), s, forced)
    assert (done.status, done.deleted) == ("succeeded", 30)
    assert zendesk_ids(synced.sandbox) == before - gone
    runs = await fetch(synced, "SELECT status, deleted FROM runs WHERE kind = 'reconcile' ORDER BY id")
    assert [(r["status"], r["deleted"]) for r in runs] == [("failed", 0), ("succeeded", 30)]


async def test_dry_run_changes_nothing(synced: SandboxWorld) -> None:
    before = zendesk_ids(synced.sandbox)
    delete_in_outreach(synced.sandbox, 5)
    async with services(synced.settings) as s:
        report = await reconcile_mapping(
            vehicles(synced, "delete"), s, ReconcileOptions(dry_run=True, page_size=50)
        )
    assert (report.status, report.missing, report.deleted) == ("dry_run", 5, 0)
    assert zendesk_ids(synced.sandbox) == before
    assert await fetch(synced, "SELECT 1 FROM runs WHERE kind = 'reconcile'") == []


async def test_a_record_already_gone_from_zendesk_counts_as_deleted(synced: SandboxWorld) -> None:
    vid = delete_in_outreach(synced.sandbox, 1)[0]
    synced.sandbox.zendesk.delete_record_by_external_id("vehicle", f"outreach:vehicles:{vid}")
    async with services(synced.settings) as s:
        report = await reconcile_mapping(vehicles(synced, "delete"), s, OPTIONS)
    assert (report.status, report.deleted, report.failed) == ("succeeded", 1, 0)
    assert await fetch(synced, "SELECT 1 FROM id_map WHERE mapping = 'vehicles' AND source_id = $1", str(vid)) == []


async def test_a_deleted_record_is_no_longer_claimed_by_a_job_stored_before_a_crash(
    synced: SandboxWorld,
) -> None:
    vid = delete_in_outreach(synced.sandbox, 1)[0]
    ext = f"outreach:vehicles:{vid}"
    async with services(synced.settings) as s:
        async with s.pool.acquire() as conn:
            await submitted_jobs.record(conn, "vehicles", "J-before-crash", [ext, "other"], ["h", "h"])
        report = await reconcile_mapping(vehicles(synced, "delete"), s, OPTIONS)
    assert report.deleted == 1
    rows = await fetch(synced, "SELECT external_id FROM submitted_jobs")
    assert [r["external_id"] for r in rows] == ["other"]  # its job can no longer vouch for it


def test_guard_arithmetic() -> None:
    assert guard(10, 100, 0.10, force=False) is None
    assert guard(11, 100, 0.10, force=False) is not None
    assert guard(11, 100, 0.10, force=True) is None
    assert guard(0, 0, 0.10, force=False) is None
    assert guard(1, 0, 0.10, force=False) is not None


def test_sparse_fieldset_type_names(world: SandboxWorld) -> None:
    mapping = vehicles(world, "keep")
    assert json_api_type(mapping) == "vehicles"
    standard = mapping.model_copy(update={"source": mapping.source.model_copy(
        update={"type": "opportunities", "custom_object": False})})
    assert json_api_type(standard) == "opportunity"


async def test_rows_synced_after_the_listing_began_are_never_missing(db_conn: Any) -> None:
    rows = [idmap.IdMapRow(str(i), f"z{i}", f"outreach:vehicles:{i}", "h") for i in range(4)]
    await idmap.upsert_many(db_conn, "vehicles", rows[:2])
    listed_from = await idmap.database_now(db_conn)
    await idmap.upsert_many(db_conn, "vehicles", rows[2:])  # written while the listing ran
    missing = await idmap.missing(db_conn, "vehicles", ["0"], listed_from)
    assert [m.source_id for m in missing] == ["1"]
    assert await idmap.mark_gone(db_conn, "vehicles", ["1"]) == 1
    assert await idmap.hashes(db_conn, "vehicles", ["0", "1"]) == {"0": "h"}  # gone: write again
    await idmap.upsert_many(db_conn, "vehicles", rows[1:2])  # written again: no longer gone
    assert await idmap.gone_count(db_conn, "vehicles") == 0
