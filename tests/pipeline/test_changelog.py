"""The per-record changelog and the id map's written payload and source snapshot, as a backfill
leaves them: sandbox over loopback, real Postgres. Expected values come from the sandbox."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from bridge import wiring
from bridge.errors import LeaseLost
from bridge.mapping.load import load_mappings
from bridge.pipeline.snapshot import restore
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.store import idmap
from bridge.store.leases import Fence
from bridge.translate import translate
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_relationships import backfill, prepare

VEHICLES = "vehicles"


@pytest.fixture
async def ready(world: SandboxWorld) -> SandboxWorld:
    await prepare(world)
    world.sandbox.counters.reset()
    return world


async def fetch(world: SandboxWorld, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def changelog(world: SandboxWorld, mapping: str = VEHICLES) -> list[asyncpg.Record]:
    return await fetch(world, "SELECT * FROM record_changelog WHERE mapping = $1 ORDER BY id", mapping)


def updated_at(world: SandboxWorld, vid: int) -> datetime:
    text = world.sandbox.outreach.get(VEHICLES, vid)["attributes"]["updatedAt"]  # type: ignore[index]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_backfill_logs_every_record_once_and_keeps_what_it_sent(ready: SandboxWorld) -> None:
    reports = await backfill(ready)
    rows = await changelog(ready)
    ids = ready.sandbox.outreach.ids(VEHICLES)
    run_id = reports[VEHICLES].run_id
    by_action = Counter(r["action"] for r in rows)
    parked = await fetch(ready, "SELECT * FROM parked_links WHERE mapping = $1", VEHICLES)
    assert parked  # the test means something: some drivers wait for their user
    assert by_action == {"created": len(ids), "parked_link": len(parked)}
    created = {r["source_id"]: r for r in rows if r["action"] == "created"}
    assert set(created) == {str(v) for v in ids}
    for vid in ids:
        row = created[str(vid)]
        record = ready.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{vid}")
        assert record is not None
        assert row["item_result"] == str(record["id"]) and row["run_id"] == run_id
        assert row["zendesk_job_id"] in ready.sandbox.zendesk.jobs.statuses
        assert row["source_updated_at"] == updated_at(ready, vid)
    waiting = {(r["source_id"], r["field"]) for r in parked}
    assert {(r["source_id"], r["detail"].split(" ")[0]) for r in rows if r["action"] == "parked_link"} == waiting
    brands = await changelog(ready, "vehicle_brands")
    assert Counter(r["action"] for r in brands) == {"created": len(ready.sandbox.outreach.ids("vehicle_brands"))}


async def test_the_id_map_keeps_the_payload_sent_and_a_snapshot_that_rebuilds_it(ready: SandboxWorld) -> None:
    await backfill(ready)
    mapping = load_mappings(ready.settings.bridge_mappings)[VEHICLES]
    ids = [str(v) for v in ready.sandbox.outreach.ids(VEHICLES)]
    async with wiring.open_pool(ready.settings) as pool, pool.acquire() as conn:
        written = await idmap.written(conn, VEHICLES, ids)
        hashes = await idmap.hashes(conn, VEHICLES, ids)
    assert set(written) == set(ids)
    for sid, kept in written.items():
        record = ready.sandbox.zendesk.record_by_external_id("vehicle", kept.external_id)
        assert record is not None and kept.payload is not None and kept.source is not None
        # What was sent is what Zendesk holds (lookups included: a waiting one is sent null).
        assert kept.payload["name"] == record["name"]
        assert kept.payload["fields"] == {k: record["custom_object_fields"].get(k) for k in kept.payload["fields"]}
        assert {"driver", "brand"} <= set(kept.payload["fields"])
        assert kept.source_updated_at == updated_at(ready, int(sid))
        source, included = restore(kept.source)
        assert translate(mapping, source).payload_hash == hashes[sid]
        if (driver := source.relationships.get("main_driver")) is not None:
            assert (driver.type, driver.id) in included  # the email the driver is matched by


async def test_a_rerun_logs_every_record_as_skipped_unchanged(ready: SandboxWorld) -> None:
    await backfill(ready)
    second = await backfill(ready, full=True)
    ids = ready.sandbox.outreach.ids(VEHICLES)
    rows = [r for r in await changelog(ready) if r["run_id"] == second[VEHICLES].run_id]
    assert Counter(r["action"] for r in rows) == {"skipped_unchanged": len(ids)}
    assert {r["source_id"]: r["source_updated_at"] for r in rows} == {str(v): updated_at(ready, v) for v in ids}
    assert all(r["zendesk_job_id"] is None and r["item_result"] is None for r in rows)


async def test_a_dead_lettered_record_has_its_row_with_the_error(ready: SandboxWorld) -> None:
    bad = ready.sandbox.outreach.ids(VEHICLES)[:2]
    for vid in bad:
        ready.sandbox.outreach.update(VEHICLES, vid, vehicle_name="x" * 5000 * 8)
    await backfill(ready)
    letters = {r["source_id"]: r["error"] for r in await fetch(ready, "SELECT * FROM dead_letters")}
    dead = [r for r in await changelog(ready) if r["action"] == "dead_lettered"]
    assert {r["source_id"]: r["item_result"] for r in dead} == letters
    assert set(letters) == {str(v) for v in bad}
    assert all(r["source_updated_at"] == updated_at(ready, int(r["source_id"])) for r in dead)


async def test_a_page_whose_commit_fails_leaves_no_changelog_rows(ready: SandboxWorld) -> None:
    mapping = load_mappings(ready.settings.bridge_mappings)[VEHICLES]
    fence = Fence(VEHICLES, "worker:a", lambda: True)  # this process believes it holds the lease
    options = SyncOptions(batch_size=10, job_concurrency=2)
    async with wiring.open_pool(ready.settings) as pool, wiring.open_services(ready.settings, pool) as s:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO leases (mapping, holder, expires_at) "
                               "VALUES ($1, 'worker:b', now() + interval '1 minute')", VEHICLES)  # fmt: skip
        with pytest.raises(LeaseLost):
            await sync_mapping(mapping, s, options, fence=fence)
    assert await changelog(ready) == []
    assert ready.sandbox.zendesk.records("vehicle")  # the writes happened, the commit did not


async def test_a_database_error_in_the_page_commit_rolls_back_its_changelog_rows(ready: SandboxWorld) -> None:
    mapping = load_mappings(ready.settings.bridge_mappings)[VEHICLES]
    options = SyncOptions(batch_size=10, job_concurrency=2)
    async with wiring.open_pool(ready.settings) as pool, wiring.open_services(ready.settings, pool) as s:
        async with pool.acquire() as conn:  # the checkpoint is saved after the changelog rows
            await conn.execute("""
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON checkpoints
                FOR EACH ROW WHEN (NEW.mapping = 'vehicles') EXECUTE FUNCTION refuse();
            """)  # fmt: skip
        with pytest.raises(Exception, match="injected failure"):
            await sync_mapping(mapping, s, options)
    assert await changelog(ready) == []
    assert ready.sandbox.zendesk.records("vehicle")


async def test_a_changed_record_is_updated_and_a_parked_link_it_now_sets_is_filled(ready: SandboxWorld) -> None:
    await backfill(ready)
    parked = await fetch(ready, "SELECT * FROM parked_links WHERE mapping = $1 AND field = 'driver'", VEHICLES)
    email = parked[0]["match_value"]
    waiting = {r["source_id"] for r in parked if r["match_value"] == email}
    ready.sandbox.zendesk.add_user("Late Comer", email)
    changed = sorted(waiting)[:1] + [str(v) for v in ready.sandbox.outreach.ids(VEHICLES)[:3]]
    for sid in changed:
        ready.sandbox.outreach.update(VEHICLES, int(sid), color="Teal")
    second = await backfill(ready)
    rows = [r for r in await changelog(ready) if r["run_id"] == second[VEHICLES].run_id]
    updated = {r["source_id"] for r in rows if r["action"] == "updated"}
    assert updated == set(changed)
    assert all(r["zendesk_job_id"] and r["item_result"] for r in rows if r["action"] == "updated")
    filled = [r for r in rows if r["action"] == "filled_link"]
    assert sorted((r["source_id"], r["detail"]) for r in filled) == sorted((sid, "driver") for sid in waiting)
    # The record written again set its lookup in its own write (the same job); the fill pass
    # set the others with a bulk update job of its own.
    jobs = {r["source_id"]: r["zendesk_job_id"] for r in rows if r["action"] == "updated"}
    page_filled = {r["source_id"] for r in filled if jobs.get(r["source_id"]) == r["zendesk_job_id"]}
    assert page_filled == {sid for sid in changed if sid in waiting}
    assert all(r["zendesk_job_id"] and r["item_result"] for r in filled)
