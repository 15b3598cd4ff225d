"""The dry-run preview in process: a real backfill writes (keeping each payload it sent),
records change in the sandbox, and the preview reports exactly those changes while writing
nothing anywhere."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.outreach.models import OutreachId, Page, SourceRecord
from bridge.pipeline import diff
from bridge.pipeline.diff import Action, FieldChange, RecordDiff
from bridge.pipeline.preview import StoredLookups, preview_mapping, preview_page
from bridge.pipeline.sync import SyncOptions
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from bridge.store import idmap
from bridge.store.idmap import IdMapRow
from bridge.translate import translate
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_sync import backfill, prepare_zendesk

# Tables a preview may write: the shared rate budget counts the Outreach requests it makes.
MAY_CHANGE = {"rate_budgets", "schema_migrations"}


@pytest.fixture
async def small(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    """40 vehicles over 4 pages, 4 brands, 10 prospects (8 of them Zendesk users)."""
    seed = seed_demo(sandbox, vehicles=40, brands=4, prospects=10)
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_page_size=10))
    await prepare_zendesk(world)
    return world


@pytest.fixture
async def synced(small: SandboxWorld) -> SandboxWorld:
    """Backfilled: the id map keeps the payload written for every record."""
    await backfill(small)
    small.sandbox.counters.reset()
    return small


def dsn(world: SandboxWorld) -> str:
    assert world.settings.database_url is not None
    return world.settings.database_url.get_secret_value()


async def preview(world: SandboxWorld, names: list[str] | None = None, **options: Any) -> list[RecordDiff]:
    mappings = load_mappings(world.settings.bridge_mappings)
    opts = SyncOptions(dry_run=True, overlap=timedelta(seconds=1), **options)
    found: list[RecordDiff] = []
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        running = names or sync_order(mappings)
        for name in running:
            found += [r async for r in preview_mapping(mappings[name], pool, s.outreach, opts, running=running)]
    return found


async def snapshot(world: SandboxWorld) -> dict[str, list[str]]:
    """Every row of every table but those a preview may change, as sorted text."""
    conn = await asyncpg.connect(dsn(world))
    try:
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: sorted(map(repr, await conn.fetch(f"SELECT * FROM {t}"))) for t in tables if t not in MAY_CHANGE}
    finally:
        await conn.close()


def by_action(records: list[RecordDiff], action: Action) -> dict[str, RecordDiff]:
    return {r.source_id: r for r in records if r.action is action}


def vehicle(world: SandboxWorld, vid: int) -> dict[str, Any]:
    record = world.sandbox.outreach.get("vehicles", vid)
    assert record is not None
    return record


def zendesk_id(world: SandboxWorld, key: str, external_id: str) -> str:
    return next(str(r["id"]) for r in world.sandbox.zendesk.records(key) if r["external_id"] == external_id)


def assert_no_zendesk_request(world: SandboxWorld) -> None:
    assert world.sandbox.counters.count("zendesk") == 0  # no write, no job, not even a token


async def test_a_preview_of_k_changed_records_lists_exactly_those_with_their_fields(synced: SandboxWorld) -> None:
    world = synced
    ids = world.sandbox.outreach.ids("vehicles")
    recolored, renamed = ids[3:7], ids[11]
    before = {vid: vehicle(world, vid)["attributes"] for vid in [*recolored, renamed]}
    for vid in recolored:
        world.sandbox.outreach.update("vehicles", vid, color=" Purple ")
    world.sandbox.outreach.update("vehicles", renamed, vehicle_name="Renamed 11")
    state = await snapshot(world)

    records = await preview(world)

    updates = by_action(records, Action.UPDATE)
    assert set(updates) == {str(v) for v in [*recolored, renamed]}
    for vid in recolored:
        old = before[vid]["color"].strip().lower()
        assert updates[str(vid)].changes == (FieldChange("color", old, "purple"),)
        assert updates[str(vid)].zendesk_id == zendesk_id(world, "vehicle", f"outreach:vehicles:{vid}")
    old_name = before[renamed]["vehicle_name"]
    assert updates[str(renamed)].changes == (FieldChange("name", old_name, "Renamed 11"),
                                             FieldChange("vehicle_name", old_name, "Renamed 11"))
    assert not by_action(records, Action.CREATE) and not by_action(records, Action.DEAD_LETTER)
    assert_no_zendesk_request(world)
    assert await snapshot(world) == state


async def test_creates_gone_rows_and_dead_letters_are_counted_with_full(synced: SandboxWorld) -> None:
    world = synced
    ids = world.sandbox.outreach.ids("vehicles")
    new = world.sandbox.outreach.put("vehicles", {"vehicle_name": "Brand new", "speed": "90mph", "color": "red"})
    world.sandbox.outreach.serve_raw("vehicles", ids[0], speed={"mph": 1})
    conn = await asyncpg.connect(dsn(world))
    try:
        await idmap.mark_gone(conn, "vehicles", [str(ids[1])])
    finally:
        await conn.close()
    state = await snapshot(world)

    records = await preview(world, full=True)

    vehicles = [r for r in records if r.mapping == "vehicles"]
    assert len(vehicles) == len(ids) + 1
    creates = by_action(vehicles, Action.CREATE)
    assert set(creates) == {str(new), str(ids[1])}
    assert creates[str(new)].changes[0] == FieldChange("name", None, "Brand new")
    assert {c.field: c.after for c in creates[str(new)].changes}["color"] == "red"
    dead = by_action(vehicles, Action.DEAD_LETTER)
    assert set(dead) == {str(ids[0])} and "speed" in (dead[str(ids[0])].error or "")
    assert len(by_action(vehicles, Action.UNCHANGED)) == len(ids) - 2
    brands = [r for r in records if r.mapping == "vehicle_brands"]
    assert {r.action for r in brands} == {Action.UNCHANGED}
    assert len(brands) == len(world.sandbox.outreach.ids("vehicle_brands"))
    assert_no_zendesk_request(world)
    assert await snapshot(world) == state


async def test_lookups_resolve_from_the_id_map_and_the_directory_or_show_unresolved(synced: SandboxWorld) -> None:
    world = synced
    ids = world.sandbox.outreach.ids("vehicles")
    brands = world.sandbox.outreach.ids("vehicle_brands")
    users = {u["external_id"]: str(uid) for uid, u in world.sandbox.zendesk.users.items()}
    rebrand, unwritten_brand, redriver = ids[5], ids[6], ids[7]
    old_brand = vehicle(world, rebrand)["relationships"]["brand"]["data"]["id"]
    other = next(b for b in brands if b != old_brand)
    world.sandbox.outreach.set_relationship("vehicles", rebrand, "brand", other)
    fresh = world.sandbox.outreach.put("vehicle_brands", {"name": "Not synced", "country": "X", "founded": 2000})
    world.sandbox.outreach.set_relationship("vehicles", unwritten_brand, "brand", fresh)
    prospects = world.sandbox.outreach.ids("prospect")
    driver = prospects[0]  # the seed gives a Zendesk user to every prospect but each fifth
    world.sandbox.outreach.set_relationship("vehicles", redriver, "main_driver", driver)
    with_driver = next(v for v in ids[8:] if vehicle_in_zendesk(world, v)["driver"] is not None)
    userless = prospects[4]  # no Zendesk user: the directory does not know it
    world.sandbox.outreach.set_relationship("vehicles", with_driver, "main_driver", userless)

    records = await preview(world, ["vehicles"])

    changes = {r.source_id: {c.field: (c.before, c.after) for c in r.changes} for r in by_action(records, Action.UPDATE).values()}
    assert changes[str(rebrand)] == {"brand": (
        zendesk_id(world, "vehicle_brand", f"outreach:vehicle_brands:{old_brand}"),
        zendesk_id(world, "vehicle_brand", f"outreach:vehicle_brands:{other}"))}
    assert changes[str(unwritten_brand)]["brand"][1] is diff.WOULD_PARK
    previous_driver = vehicle_in_zendesk(world, redriver)["driver"]
    assert previous_driver != users[f"outreach:prospect:{driver}"]
    assert changes[str(redriver)] == {"driver": (previous_driver, users[f"outreach:prospect:{driver}"])}
    assert changes[str(with_driver)] == {"driver": (vehicle_in_zendesk(world, with_driver)["driver"], diff.WOULD_ASK)}
    both = await preview(world)  # this run writes the new brand first, and fills the link
    assert by_action(both, Action.CREATE).keys() == {str(fresh)}
    link = next(r for r in both if r.mapping == "vehicles" and r.source_id == str(unwritten_brand))
    assert {c.field: c.after for c in link.changes}["brand"] is diff.WOULD_PARK_OR_FILL
    assert_no_zendesk_request(world)


def vehicle_in_zendesk(world: SandboxWorld, vid: int) -> dict[str, Any]:
    return next(r["custom_object_fields"] for r in world.sandbox.zendesk.records("vehicle")
                if r["external_id"] == f"outreach:vehicles:{vid}")  # fmt: skip


async def test_a_single_mapping_reads_only_that_mapping(synced: SandboxWorld) -> None:
    world = synced
    brand = world.sandbox.outreach.ids("vehicle_brands")[0]
    world.sandbox.outreach.update("vehicle_brands", brand, country="Atlantis")
    world.sandbox.outreach.update("vehicles", world.sandbox.outreach.ids("vehicles")[0], color="teal")

    records = await preview(world, ["vehicle_brands"])

    assert {r.mapping for r in records} == {"vehicle_brands"}
    updates = by_action(records, Action.UPDATE)
    assert list(updates) == [str(brand)]
    assert [c.field for c in updates[str(brand)].changes] == ["country"]
    assert_no_zendesk_request(world)


async def test_rows_written_before_payloads_were_kept_say_only_that_they_change(synced: SandboxWorld) -> None:
    world = synced
    vid = world.sandbox.outreach.ids("vehicles")[2]
    conn = await asyncpg.connect(dsn(world))
    try:
        row = (await idmap.lookup(conn, "vehicles", [str(vid)]))[str(vid)]
        await idmap.upsert_many(conn, "vehicles", [row])  # written_payload NULL, as before they were kept
    finally:
        await conn.close()
    world.sandbox.outreach.update("vehicles", vid, color="teal")

    records = await preview(world, ["vehicles"])

    update = by_action(records, Action.UPDATE)[str(vid)]
    assert not update.previous_kept and update.changes == ()
    assert update.as_json()["previous_kept"] is False


# ---- the classification over random edits (one page, no HTTP) -------------------------------

BRANDS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")["vehicle_brands"]
IDS = [str(i) for i in range(1, 13)]
words = st.text(alphabet="abcXY ", min_size=1, max_size=5).filter(lambda w: w.strip() != "")
edits_st = st.dictionaries(st.sampled_from(IDS), st.tuples(st.one_of(st.none(), words),
                                                          st.one_of(st.none(), st.integers(1800, 2030))))


def _brand(sid: str, attributes: dict[str, Any]) -> SourceRecord:
    return SourceRecord("vehicle_brands", OutreachId(sid), attributes, {}, None)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=edits_st, unwritten=st.sets(st.sampled_from(IDS), max_size=3), broken=st.sets(st.sampled_from(IDS), max_size=2))
def test_random_edits_are_reported_as_exactly_those_updates_creates_and_dead_letters(
    db_dsn: str, edits: dict[str, tuple[str | None, int | None]], unwritten: set[str], broken: set[str]
) -> None:
    """Write a page, edit some records (country, founded), forget some rows and break some
    records: the preview reports exactly those, the edits field by field."""
    first = {sid: {"name": f"Brand {sid}", "country": "Home", "founded": 1900} for sid in IDS}
    now = {sid: dict(a) for sid, a in first.items()}
    for sid, (country, founded) in edits.items():
        now[sid].update({k: v for k, v in (("country", country), ("founded", founded)) if v is not None})
    for sid in broken:
        now[sid]["founded"] = "not a year"
    page = Page([_brand(sid, now[sid]) for sid in IDS], "u", None)

    records = asyncio.run(_preview_page(db_dsn, first, unwritten, page))

    changed = {sid: {"country": (a["country"], now[sid]["country"].strip()),
                     "founded": (a["founded"], now[sid]["founded"])}
               for sid, a in first.items()}  # fmt: skip
    expected_updates = {
        sid: {k: v for k, v in fields.items() if v[0] != v[1]}
        for sid, fields in changed.items() if sid not in unwritten | broken
    }  # fmt: skip
    expected_updates = {sid: f for sid, f in expected_updates.items() if f}
    got = {r.source_id: r for r in records}
    assert {s for s, r in got.items() if r.action is Action.DEAD_LETTER} == broken
    assert {s for s, r in got.items() if r.action is Action.CREATE} == unwritten - broken
    assert {s: {c.field: (c.before, c.after) for c in r.changes} for s, r in got.items()
            if r.action is Action.UPDATE} == expected_updates  # fmt: skip
    assert len(records) == len(IDS)


async def _preview_page(dsn: str, first: dict[str, dict[str, Any]], unwritten: set[str], page: Page) -> list[RecordDiff]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM id_map")
            rows = []
            for sid, attributes in first.items():
                t = translate(BRANDS, _brand(sid, attributes))
                rows.append(IdMapRow(sid, f"z{sid}", t.external_id, t.payload_hash,
                                     idmap.pack_payload(t.name, t.fields)))
            await idmap.upsert_many(conn, BRANDS.name, [r for r in rows if r.source_id not in unwritten])
        return await preview_page(BRANDS, pool, page, StoredLookups(frozenset()))
    finally:
        await pool.close()


async def test_after_a_real_backfill_the_preview_compares_with_what_that_backfill_sent(small: SandboxWorld) -> None:
    """The backfill itself keeps what it sent, lookups included, and the preview compares
    with exactly that."""
    world = small
    await backfill(world)
    ids = world.sandbox.outreach.ids("vehicles")
    conn = await asyncpg.connect(dsn(world))
    try:
        kept = await idmap.written(conn, "vehicles", [str(v) for v in ids])
    finally:
        await conn.close()
    assert all(row.payload is not None for row in kept.values())
    sent = vehicle_in_zendesk(world, ids[9])
    assert kept[str(ids[9])].payload == {"name": vehicle(world, ids[9])["attributes"]["vehicle_name"], "fields": sent}
    world.sandbox.outreach.update("vehicles", ids[9], speed="12 mph", electric=not sent["electric"])
    world.sandbox.counters.reset()

    records = await preview(world)

    updates = by_action(records, Action.UPDATE)
    assert list(updates) == [str(ids[9])]
    assert updates[str(ids[9])].changes == (FieldChange("electric", sent["electric"], not sent["electric"]),
                                            FieldChange("top_speed_mph", sent["top_speed_mph"], 12))
    assert_no_zendesk_request(world)
