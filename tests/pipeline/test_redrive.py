"""Dead-letter retry end to end, in process: sandbox over loopback, real Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.mapping.load import load_mappings
from bridge.mapping.model import FieldSpec, Mapping
from bridge.pipeline.redrive import RedriveOptions, retry_dead_letters
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.store import submitted_jobs
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_reconcile import fetch, services, zendesk_ids, zendesk_writes
from tests.pipeline.test_relationships import (
    actual_lookups,
    expected_lookups,
    parked_rows,
)
from tests.pipeline.test_sync import assert_exact, backfill, prepare_zendesk

OPTIONS = RedriveOptions(actor="tester")


def vehicles(world: SandboxWorld) -> Mapping:
    return load_mappings(world.settings.bridge_mappings)["vehicles"]


def broken(mapping: Mapping, field: str, spec: dict[str, object]) -> Mapping:
    """The mapping with one field redefined so that translation fails for every record."""
    fields = {**mapping.fields, field: FieldSpec.model_validate(spec)}
    return mapping.model_copy(update={"fields": fields})


NO_DIGITS = {"from": "speed", "type": "integer"}  # "120mph" is not an integer
COLOR_NUMBER = {"from": "color", "type": "integer"}


@pytest.fixture
async def dead(world: SandboxWorld) -> SandboxWorld:
    """Brands synced; every vehicle dead-lettered by a broken mapping."""
    await prepare_zendesk(world)
    await backfill(world)
    async with services(world.settings) as s:
        await sync_mapping(broken(vehicles(world), "top_speed_mph", NO_DIGITS), s, SyncOptions(full=True))
    letters = await fetch(world, "SELECT source_id FROM dead_letters WHERE mapping = 'vehicles'")
    assert len(letters) == world.seed.vehicles
    world.sandbox.counters.reset()
    return world


@pytest.fixture
async def world_with_letters(world: SandboxWorld) -> SandboxWorld:
    """Nothing written yet for vehicles; every vehicle dead-lettered at first sight."""
    await prepare_zendesk(world)
    async with services(world.settings) as s:
        await sync_mapping(broken(vehicles(world), "top_speed_mph", NO_DIGITS), s, SyncOptions())
    world.sandbox.counters.reset()
    return world


async def test_fixed_mapping_retry_lands_them_and_empties_the_table(world_with_letters: SandboxWorld) -> None:
    world = world_with_letters
    async with services(world.settings) as s:
        report = await retry_dead_letters(vehicles(world), s, OPTIONS)
    assert (report.status, report.tried, report.written, report.failed) == (
        "succeeded", world.seed.vehicles, world.seed.vehicles, 0)
    assert await fetch(world, "SELECT 1 FROM dead_letters") == []
    assert len(zendesk_ids(world.sandbox)) == world.seed.vehicles
    mapped = await fetch(world, "SELECT 1 FROM id_map WHERE mapping = 'vehicles'")
    assert len(mapped) == world.seed.vehicles
    # 230 ids fetched afresh in ONE list request (filter[id]=a,b,c; page[size]=1000).
    assert world.sandbox.counters.count("outreach", method="GET") == 1
    run = (await fetch(world, "SELECT * FROM runs WHERE kind = 'dead_letter_retry'"))[0]
    assert (run["status"], run["actor"], run["written"]) == ("succeeded", "tester", world.seed.vehicles)


async def test_a_retried_letter_is_no_longer_claimed_by_a_job_stored_before_a_crash(
    world_with_letters: SandboxWorld,
) -> None:
    world = world_with_letters
    [first] = await fetch(world, "SELECT source_id FROM dead_letters WHERE mapping = 'vehicles' LIMIT 1")
    ext = f"outreach:vehicles:{first['source_id']}"
    async with services(world.settings) as s:
        async with s.pool.acquire() as conn:
            await submitted_jobs.record(conn, "vehicles", "J-before-crash", [ext, "x"], ["h", "h"])
        await retry_dead_letters(vehicles(world), s, OPTIONS)
    rows = await fetch(world, "SELECT external_id FROM submitted_jobs")
    assert [r["external_id"] for r in rows] == ["x"]


async def test_a_retried_vehicle_lands_with_its_driver_and_brand_lookups(world: SandboxWorld) -> None:
    """Redrive fetches like a sync (include + the driver's email) and commits the links."""
    await prepare_zendesk(world)
    every = load_mappings(world.settings.bridge_mappings)
    async with services(world.settings) as s:
        await sync_mapping(every["vehicle_brands"], s, SyncOptions())
        await sync_mapping(broken(every["vehicles"], "top_speed_mph", NO_DIGITS), s, SyncOptions())
        assert len(await fetch(world, "SELECT 1 FROM dead_letters")) == world.seed.vehicles
        world.sandbox.counters.reset()
        report = await retry_dead_letters(every["vehicles"], s, OPTIONS)
    assert (report.written, report.failed) == (world.seed.vehicles, 0)
    expected = expected_lookups(world.sandbox)
    assert actual_lookups(world.sandbox) == expected
    assert sum(1 for v in expected.values() if v["driver"]) > 100  # the test means something
    assert all(v["brand"] for v in expected.values())
    # Drivers with no Zendesk user are parked by their email (fetched on the same page).
    parked = await parked_rows(world)
    unmatched = {ext for ext, v in expected.items() if v["driver"] is None}
    assert {f"outreach:vehicles:{r['source_id']}" for r in parked} <= unmatched
    assert parked and all(r["field"] == "driver" and "@" in r["match_value"] for r in parked)
    assert world.sandbox.counters.count("outreach", method="GET") == 1  # email on the same page


async def test_still_bad_grows_attempts_and_updates_the_error(world_with_letters: SandboxWorld) -> None:
    world = world_with_letters
    before = {r["source_id"]: r for r in await fetch(world, "SELECT * FROM dead_letters")}
    still_broken = broken(vehicles(world), "color", COLOR_NUMBER)
    async with services(world.settings) as s:
        report = await retry_dead_letters(still_broken, s, OPTIONS)
    assert (report.status, report.failed, report.written) == ("partial", world.seed.vehicles, 0)
    after = {r["source_id"]: r for r in await fetch(world, "SELECT * FROM dead_letters")}
    assert after.keys() == before.keys()
    for sid, row in after.items():
        assert row["attempts"] == before[sid]["attempts"] + 1
        assert "color" in row["error"] and "top_speed_mph" in before[sid]["error"]
        assert row["last_failed_at"] > before[sid]["last_failed_at"]
    assert zendesk_writes(world.sandbox) == 0


async def test_a_letter_whose_record_is_gone_leaves_the_table(world_with_letters: SandboxWorld) -> None:
    world = world_with_letters
    gone = world.sandbox.outreach.ids("vehicles")[:3]
    for vid in gone:
        world.sandbox.outreach.delete("vehicles", vid)
    async with services(world.settings) as s:
        report = await retry_dead_letters(vehicles(world), s, OPTIONS)
    assert (report.vanished, report.written) == (3, world.seed.vehicles - 3)
    assert await fetch(world, "SELECT 1 FROM dead_letters") == []


async def test_unchanged_records_leave_the_table_without_a_write(dead: SandboxWorld) -> None:
    """Written before, dead-lettered by a later bad change: Zendesk already has the payload."""
    async with services(dead.settings) as s:
        report = await retry_dead_letters(vehicles(dead), s, OPTIONS)
    assert (report.unchanged, report.written) == (dead.seed.vehicles, 0)
    assert zendesk_writes(dead.sandbox) == 0
    assert await fetch(dead, "SELECT 1 FROM dead_letters") == []
    assert_exact(dead.sandbox)


async def test_the_worker_selection_stops_after_max_attempts_and_waits_for_backoff(
    world_with_letters: SandboxWorld,
) -> None:
    world = world_with_letters
    async with services(world.settings) as s:
        capped = RedriveOptions(max_attempts=1)  # every letter has failed once already
        assert (await retry_dead_letters(vehicles(world), s, capped)).tried == 0
        waiting = RedriveOptions(backoff=timedelta(hours=1))
        assert (await retry_dead_letters(vehicles(world), s, waiting)).tried == 0
        due = RedriveOptions(max_attempts=2, backoff=timedelta(microseconds=1))
        assert (await retry_dead_letters(vehicles(world), s, due)).tried == world.seed.vehicles
    assert await fetch(world, "SELECT 1 FROM runs WHERE kind = 'dead_letter_retry'") != []
