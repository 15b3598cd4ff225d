"""The sync run end to end, in process: sandbox over loopback, real Postgres."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from bridge import schema, wiring
from bridge.commands.sync import run_backfill
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.pipeline.report import RunReport
from bridge.pipeline.sync import SyncOptions
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld

OBJECTS = {"vehicles": "vehicle", "vehicle_brands": "vehicle_brand"}


def expected_vehicle(resource: dict[str, Any]) -> dict[str, Any]:
    """What the example mapping must produce, written out independently of translate()."""
    a = resource["attributes"]
    speed = "".join(ch for ch in str(a.get("speed") or "") if ch.isdigit())
    return {
        "external_id": f"outreach:vehicles:{resource['id']}",
        "name": a["vehicle_name"],
        "vehicle_name": a["vehicle_name"],
        "top_speed_mph": int(speed) if speed else None,
        "registered_on": a["registeredAt"][:10] if a.get("registeredAt") else None,
        "color": a["color"].strip().lower() if a.get("color") else None,
        "electric": a.get("electric"),
    }


def actual_vehicle(record: dict[str, Any]) -> dict[str, Any]:
    f = record["custom_object_fields"]
    return {
        "external_id": record["external_id"],
        "name": record["name"],
        **{k: f.get(k) for k in ("vehicle_name", "top_speed_mph", "registered_on", "color", "electric")},
    }


def assert_exact(sandbox: Sandbox) -> None:
    """Zendesk holds exactly the Outreach vehicles, field by field, once each."""
    expected = {
        f"outreach:vehicles:{vid}": expected_vehicle(sandbox.outreach.get("vehicles", vid) or {})
        for vid in sandbox.outreach.ids("vehicles")
    }
    records = sandbox.zendesk.records("vehicle")
    actual = {r["external_id"]: actual_vehicle(r) for r in records}
    assert len(records) == len(actual), "a vehicle was written twice"
    assert actual == expected
    brands = {r["external_id"] for r in sandbox.zendesk.records("vehicle_brand")}
    assert brands == {f"outreach:vehicle_brands:{b}" for b in sandbox.outreach.ids("vehicle_brands")}


async def prepare_zendesk(world: SandboxWorld) -> None:
    mappings = load_mappings(world.settings.bridge_mappings)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))


async def backfill(world: SandboxWorld, **options: Any) -> dict[str, RunReport]:
    mappings = load_mappings(world.settings.bridge_mappings)
    opts = SyncOptions(batch_size=100, job_concurrency=4, **options)
    reports = await run_backfill(world.settings, mappings, sync_order(mappings), opts)
    return {r.mapping: r for r in reports}


async def table_count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


@pytest.fixture
async def ready(world: SandboxWorld) -> SandboxWorld:
    await prepare_zendesk(world)
    world.sandbox.counters.reset()
    return world


async def test_full_backfill_leaves_exactly_the_source_records(ready: SandboxWorld) -> None:
    reports = await backfill(ready)
    assert_exact(ready.sandbox)
    vehicles = reports["vehicles"]
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert (vehicles.fetched, vehicles.written, vehicles.failed) == (total, total, 0)
    assert vehicles.status == "succeeded"


async def test_incremental_run_writes_exactly_the_changed_records(ready: SandboxWorld) -> None:
    await backfill(ready)
    changed = ready.sandbox.outreach.ids("vehicles")[10:17]
    for vid in changed:
        ready.sandbox.outreach.update("vehicles", vid, color="Ultra Violet")
    ready.sandbox.counters.reset()
    reports = await backfill(ready)
    assert reports["vehicles"].written == len(changed)
    assert reports["vehicle_brands"].written == 0
    assert_exact(ready.sandbox)
    recolored = {r["external_id"] for r in ready.sandbox.zendesk.records("vehicle")
                 if r["custom_object_fields"]["color"] == "ultra violet"}
    assert recolored == {f"outreach:vehicles:{v}" for v in changed}
    # Only the changed records (and the overlap window) are listed again, not everything.
    assert reports["vehicles"].fetched < len(ready.sandbox.outreach.ids("vehicles"))


async def test_dry_run_writes_nothing(ready: SandboxWorld) -> None:
    reports = await backfill(ready, dry_run=True)
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert reports["vehicles"].written == total  # would write
    assert ready.sandbox.zendesk.records("vehicle") == []
    assert ready.sandbox.counters.count("zendesk", method="POST") == 0
    dsn = ready.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    for table in ("id_map", "checkpoints", "runs", "dead_letters", "record_changelog"):
        assert await table_count(dsn, table) == 0, table


async def test_faults_do_not_change_the_end_state(ready: SandboxWorld) -> None:
    faults = ready.sandbox.faults
    faults.add("zendesk", "status", status=429, retry_after=0.4, path_contains="/jobs", method="POST", times=2)
    faults.add("zendesk", "status", status=503, path_contains="job_statuses", times=2)
    faults.add("zendesk", "drop", path_contains="/jobs", method="POST", times=1)
    faults.add("outreach", "status", status=502, path_contains="customObjects/vehicles", times=2)
    faults.add("outreach", "status", status=429, retry_after=0.3, path_contains="customObjects", times=1)
    faults.add("outreach", "malformed", path_contains="customObjects/vehicles", times=1)
    await backfill(ready)
    assert_exact(ready.sandbox)
    assert ready.sandbox.counters.count("zendesk", status=429) == 2
    assert ready.sandbox.counters.count("outreach", status=429) == 1
    for api in ("zendesk", "outreach"):
        entries = ready.sandbox.counters.entries(api)
        for i, entry in enumerate(entries):
            if entry.status == 429 and entry.retry_after:
                later = [e for e in entries[i + 1 :]]
                assert later, "the request after a 429 never came"
                assert min(e.at for e in later) >= entry.at + entry.retry_after - 0.01


async def test_rejected_items_are_dead_lettered_and_the_rest_land(ready: SandboxWorld) -> None:
    # Zendesk refuses a date it cannot parse: make two source records carry one.
    bad = ready.sandbox.outreach.ids("vehicles")[:2]
    for vid in bad:
        ready.sandbox.outreach.update("vehicles", vid, vehicle_name="x" * 5000 * 8)
    reports = await backfill(ready)
    assert reports["vehicles"].failed == len(bad)
    stored = {r["external_id"] for r in ready.sandbox.zendesk.records("vehicle")}
    assert len(stored) == len(ready.sandbox.outreach.ids("vehicles")) - len(bad)
    assert not stored & {f"outreach:vehicles:{v}" for v in bad}
    dsn = ready.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT source_id, error, attempts FROM dead_letters")
    finally:
        await conn.close()
    assert {r["source_id"] for r in rows} == {str(v) for v in bad}
    assert all(r["error"] and r["attempts"] == 1 for r in rows)


async def test_since_reads_only_what_changed_after_it_and_full_reads_everything(ready: SandboxWorld) -> None:
    from datetime import UTC, datetime, timedelta

    await backfill(ready)
    changed = ready.sandbox.outreach.ids("vehicles")[:3]
    for vid in changed:
        ready.sandbox.outreach.update("vehicles", vid, color="Sand")
    since = await backfill(ready, since=datetime.now(UTC) - timedelta(seconds=20))
    assert since["vehicles"].start_reason == "since"
    assert (since["vehicles"].fetched, since["vehicles"].written) == (3, 3)
    full = await backfill(ready, full=True)
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert full["vehicles"].start_reason == "full"
    assert (full["vehicles"].fetched, full["vehicles"].written, full["vehicles"].skipped) == (total, 0, total)
    assert_exact(ready.sandbox)


def edited_world(world: SandboxWorld, folder: Path, target: dict[str, str]) -> SandboxWorld:
    """The same world with the example mappings copied to `folder`, vehicles' target edited."""
    for source in world.settings.bridge_mappings.glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    path = folder / "vehicles.yaml"
    data = yaml.safe_load(path.read_text())
    data["target"].update(target)
    path.write_text(yaml.safe_dump(data))
    settings = world.settings.model_copy(update={"bridge_mappings": folder})
    return SandboxWorld(world.sandbox, world.seed, settings)


async def test_full_rewrites_every_record_to_a_changed_target_object(ready: SandboxWorld, tmp_path: Path) -> None:
    await backfill(ready)
    moved = edited_world(ready, tmp_path, {"object": "vehicle_v2"})
    await prepare_zendesk(moved)
    reports = await backfill(moved, full=True)
    ids = ready.sandbox.outreach.ids("vehicles")
    assert reports["vehicles"].written == len(ids)
    stored = {r["external_id"] for r in ready.sandbox.zendesk.records("vehicle_v2")}
    assert stored == {f"outreach:vehicles:{v}" for v in ids}
    assert (await backfill(moved, full=True))["vehicles"].written == 0


async def test_full_rewrites_every_record_under_a_changed_external_id(ready: SandboxWorld, tmp_path: Path) -> None:
    await backfill(ready)
    renamed = edited_world(ready, tmp_path, {"external_id": "vehicle-{id}"})
    reports = await backfill(renamed, full=True)
    ids = ready.sandbox.outreach.ids("vehicles")
    assert reports["vehicles"].written == len(ids)
    stored = {r["external_id"] for r in ready.sandbox.zendesk.records("vehicle")}
    assert {f"vehicle-{v}" for v in ids} <= stored
    assert (await backfill(renamed, full=True))["vehicles"].written == 0


async def test_an_incremental_run_that_finds_nothing_new_costs_one_outreach_request_per_mapping(
    ready: SandboxWorld,
) -> None:
    await backfill(ready)
    ready.sandbox.counters.reset()
    reports = await backfill(ready)
    assert {name: r.written for name, r in reports.items()} == {"vehicle_brands": 0, "vehicles": 0}
    assert ready.sandbox.counters.count("outreach") == len(reports)
    jobs = ready.sandbox.counters.count("zendesk", route="create_job")
    assert jobs == 0
