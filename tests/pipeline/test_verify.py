"""Verify end to end, in process: hand edits, hand deletes and unknown records planted in the
sandbox's Zendesk, found, repaired, and found no more."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from bridge.commands.verify import summary
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.pipeline.verify import VerifyOptions, VerifyReport, external_id_affixes, repair, verify_mapping
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_reconcile import services, zendesk_writes
from tests.pipeline.test_sync import backfill, expected_vehicle, prepare_zendesk

SETTLED = VerifyOptions(actor="tester", settle=timedelta(0))  # the sandbox holds nothing back here


@pytest.fixture
async def synced(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    return await synced_world(sandbox, db_dsn)


async def synced_world(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    """40 vehicles (and their brands) backfilled into the sandbox's Zendesk; counters reset."""
    seed = seed_demo(sandbox, vehicles=40, brands=3, prospects=10)
    sandbox.zendesk.exports.rate_limit = 1000  # the export's own limit: not what these tests are about
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_directory_exports_per_minute=60_000,
                                                     bridge_verify_settle_seconds=0.0))  # fmt: skip
    await prepare_zendesk(world)
    await backfill(world)
    sandbox.counters.reset()
    return world


@dataclass(frozen=True)
class Planted:
    edited: set[str]  # external ids
    deleted: set[str]
    unknown: set[str]


def plant(sandbox: Sandbox) -> Planted:
    """Two hand edits (a field, the name), one hand delete, one record with bridge's external-id
    convention that bridge never wrote, and one of somebody else's (not bridge's business)."""
    zd = sandbox.zendesk
    records = zd.records("vehicle")
    zd.update_record("vehicle", records[1]["id"], {"custom_object_fields": {"color": "hand-painted"}}, by_hand=True)
    zd.update_record("vehicle", records[2]["id"], {"name": "Renamed by hand"}, by_hand=True)
    zd.delete_record("vehicle", records[3]["id"])
    zd.create_record("vehicle", {"name": "stray", "external_id": "outreach:vehicles:999999"}, by_hand=True)
    zd.create_record("vehicle", {"name": "theirs", "external_id": "crm:42"}, by_hand=True)
    return Planted({records[1]["external_id"], records[2]["external_id"]}, {records[3]["external_id"]},
                   {"outreach:vehicles:999999"})  # fmt: skip


def vehicles(world: SandboxWorld) -> Mapping:
    return load_mappings(world.settings.bridge_mappings)["vehicles"]


async def verify(
    world: SandboxWorld, *, fix: bool = False, listing: bool = False, options: VerifyOptions = SETTLED
) -> VerifyReport:
    mapping = vehicles(world)
    async with services(world.settings) as s:
        if listing:  # as on an account whose record export is not wired
            s = replace(s, record_export=None)
        report = await verify_mapping(mapping, s, options)
        if fix:
            await repair(mapping, s, report, options)
    return report


def found(report: VerifyReport) -> Planted:
    return Planted({e.external_id for e in report.edited}, {d.external_id for d in report.deleted},
                   {x for _, x in report.unknown})  # fmt: skip


async def test_a_clean_mapping_verifies_clean_and_writes_nothing(synced: SandboxWorld) -> None:
    report = await verify(synced)
    assert (report.status, report.found, report.records_read, report.source) == ("clean", 0, 40, "export")
    assert zendesk_writes(synced.sandbox) == 0
    assert "Zendesk matches what bridge wrote" in summary(report)


async def test_verify_finds_exactly_the_planted_records_text_and_json(synced: SandboxWorld) -> None:
    planted = plant(synced.sandbox)
    report = await verify(synced)
    assert found(report) == planted and report.stale == []
    assert report.status == "differences" and report.source == "export" and report.notes == []
    colour = next(e for e in report.edited if any(d.field == "color" for d in e.differences))
    assert [(d.field, d.zendesk) for d in colour.differences] == [("color", "hand-painted")]
    text = summary(report)
    assert "4 difference(s)" in text and "edited by hand: 2" in text and "deleted by hand: 1" in text
    assert "unknown to bridge (never deleted): 1" in text and "outreach:vehicles:999999" in text
    assert "color: wrote" in text and "'hand-painted'" in text and "--repair" in text
    data = report.as_dict()
    assert (data["edited"], data["deleted"], data["unknown"], data["stale"]) == (2, 1, 1, 0)
    assert {r["external_id"] for r in data["deleted_records"]} == planted.deleted
    assert zendesk_writes(synced.sandbox) == 0  # verify wrote nothing


async def test_repair_restores_the_edited_and_deleted_and_a_second_verify_finds_nothing(
    synced: SandboxWorld,
) -> None:
    planted = plant(synced.sandbox)
    synced.sandbox.counters.reset()
    report = await verify(synced, fix=True)
    assert report.repaired is not None and len(report.repaired) == 3 and report.not_repaired == {}
    assert report.left == 1  # the unknown record: reported, never deleted
    zd = synced.sandbox.zendesk
    for external_id in planted.edited | planted.deleted:
        vid = external_id.rsplit(":", 1)[1]
        record = zd.record_by_external_id("vehicle", external_id)
        assert record is not None
        want = expected_vehicle(synced.sandbox.outreach.get("vehicles", int(vid)) or {})
        assert record["name"] == want["name"]
        assert record["custom_object_fields"]["color"] == want["color"]
    assert zd.record_by_external_id("vehicle", "outreach:vehicles:999999") is not None
    assert zd.record_by_external_id("vehicle", "crm:42") is not None

    again = await verify(synced)
    assert found(again) == Planted(set(), set(), planted.unknown)
    assert (again.edited, again.deleted, again.stale) == ([], [], [])


async def test_repair_writes_from_outreach_current_version(synced: SandboxWorld) -> None:
    zd, out = synced.sandbox.zendesk, synced.sandbox.outreach
    record = zd.records("vehicle")[5]
    vid = record["external_id"].rsplit(":", 1)[1]
    zd.update_record("vehicle", record["id"], {"custom_object_fields": {"color": "by hand"}}, by_hand=True)
    out.update("vehicles", int(vid), color="Teal")  # changed in Outreach meanwhile, not synced yet
    await verify(synced, fix=True)
    assert (zd.record_by_external_id("vehicle", record["external_id"]) or {})["custom_object_fields"]["color"] == "teal"


async def test_a_deleted_record_gone_from_outreach_too_is_not_repaired_and_says_why(synced: SandboxWorld) -> None:
    zd, out = synced.sandbox.zendesk, synced.sandbox.outreach
    record = zd.records("vehicle")[7]
    vid = record["external_id"].rsplit(":", 1)[1]
    zd.delete_record("vehicle", record["id"])
    out.delete("vehicles", int(vid))
    report = await verify(synced, fix=True)
    assert report.repaired == [] and "gone from Outreach" in report.not_repaired[vid]
    assert report.left == 1


def test_external_id_affixes_follow_the_mapping_template(synced: SandboxWorld) -> None:
    mapping = vehicles(synced)
    assert external_id_affixes(mapping) == ("outreach:vehicles:", "")
    custom = mapping.model_copy(update={"target": mapping.target.model_copy(update={"external_id": "o-{type}-{id}-x"})})
    assert external_id_affixes(custom) == ("o-vehicles-", "-x")



def export_requests(sandbox: Sandbox) -> int:
    return sandbox.counters.count("zendesk", route="incremental_custom_object_records")


async def test_a_repeat_reads_only_the_export_pages_since_the_cursor(synced: SandboxWorld) -> None:
    sandbox = synced.sandbox
    first = await verify(synced)
    assert (first.status, first.records_read, export_requests(sandbox)) == ("clean", 40, 1)
    assert sandbox.counters.count("zendesk", route="list_records") == 0
    again = await verify(synced)  # nothing changed: one request, answered with nothing new
    assert (again.status, again.records_read, again.pages, export_requests(sandbox)) == ("clean", 0, 1, 2)
    planted = plant(sandbox)
    third = await verify(synced)  # the five planted changes only, still in one request
    assert found(third) == planted and third.records_read == 4 and third.deletions_read == 1
    assert export_requests(sandbox) == 3 and sandbox.counters.count("zendesk", route="list_records") == 0


async def test_verify_from_page_to_page_keeps_its_cursor_in_postgres(synced: SandboxWorld) -> None:
    from tests.pipeline.test_reconcile import fetch

    await verify(synced)
    rows = await fetch(synced, "SELECT cursor, complete, source FROM verify_state WHERE mapping = 'vehicles'")
    assert rows[0]["cursor"] and rows[0]["complete"] and rows[0]["source"] == "export"
    seen = await fetch(synced, "SELECT count(*) AS n FROM verify_records WHERE mapping = 'vehicles'")
    assert seen[0]["n"] == 40


async def test_a_refused_cursor_reads_from_the_beginning_and_says_so(synced: SandboxWorld) -> None:
    await verify(synced)
    planted = plant(synced.sandbox)
    synced.sandbox.zendesk.record_changes.expire_cursors()
    report = await verify(synced)
    assert found(report) == planted and report.records_read == 40 + 2 - 1
    assert any("refused the stored export cursor" in note for note in report.notes)
    assert "read every record again from the beginning" in summary(report)


async def test_without_the_export_it_lists_says_so_and_finds_the_same(synced: SandboxWorld) -> None:
    planted = plant(synced.sandbox)
    synced.sandbox.zendesk.record_changes.unavailable = 403
    report = await verify(synced)
    assert found(report) == planted and report.source == "listing"
    assert any("not available on this Zendesk account" in note for note in report.notes)
    assert "listed every record instead" in summary(report)
    assert synced.sandbox.counters.count("zendesk", route="list_records") == 1
    unwired = await verify(synced, listing=True)
    assert found(unwired) == planted and "not configured" in summary(unwired)


def test_a_record_written_after_its_page_was_fetched_is_not_judged_yet() -> None:
    """A sync that writes while verify reads: the page shows the old version, the id map the
    new one. Not a hand edit; the new version comes later in the stream."""
    from datetime import UTC, datetime, timedelta

    from bridge.mapping.model import Mapping
    from bridge.pipeline.verify import differing_values
    from bridge.store.idmap import WrittenRecord
    from bridge.zendesk.models import ZendeskRecord, ZendeskRecordId

    mapping = Mapping.model_validate({
        "name": "v", "source": {"type": "vehicles"}, "target": {"object": "vehicle", "name": "{n}"},
        "fields": {"color": "color"}})  # fmt: skip
    fetched = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    record = ZendeskRecord(ZendeskRecordId("z1"), "outreach:vehicles:1", "Car", {"color": "red", "extra": 1})

    def written(color: str, synced: datetime) -> WrittenRecord:
        return WrittenRecord("1", "z1", "outreach:vehicles:1", {"name": "Car", "fields": {"color": color}},
                             None, None, synced, None)  # fmt: skip

    before, after = fetched - timedelta(seconds=1), fetched + timedelta(milliseconds=1)
    assert differing_values(mapping, written("red", before), record, fetched) is None
    assert differing_values(mapping, written("blue", before), record, fetched) == {"name": "Car", "fields": {"color": "red"}}
    assert differing_values(mapping, written("blue", after), record, fetched) is None


async def test_any_walk_of_hand_changes_and_passes_finds_exactly_what_differs_now(synced: SandboxWorld) -> None:
    """A seeded walk of hand edits (some putting the written value back), deletes, strays,
    verifies and repairs: every verify, resuming from its cursor, reports exactly what differs
    from what bridge wrote at that moment (the model: the records as the backfill left them)."""
    import random

    zd = synced.sandbox.zendesk
    written = {r["external_id"]: (r["name"], r["custom_object_fields"]["color"]) for r in zd.records("vehicle")}
    steps, rng = random.Random(2), random.Random(13)  # the walk, and the records it picks
    done: list[str] = []

    def truth() -> Planted:
        live = {r["external_id"]: r for r in zd.records("vehicle")}
        edited = {x for x, (name, color) in written.items()
                  if x in live and (live[x]["name"], live[x]["custom_object_fields"]["color"]) != (name, color)}
        unknown = {x for x in live if x.startswith("outreach:vehicles:") and x not in written}
        return Planted(edited, set(written) - set(live), unknown)  # fmt: skip

    for step in range(24):
        live = zd.records("vehicle")
        record = rng.choice([r for r in live if r["external_id"] in written])
        name, color = written[record["external_id"]]
        action = steps.choice(["colour", "colour", "back", "rename", "delete", "stray", "verify", "verify", "repair"])
        done.append(action)
        if action == "colour":
            zd.update_record("vehicle", record["id"], {"custom_object_fields": {"color": rng.choice(["red", color])}}, by_hand=True)
        elif action == "back":  # a person undoes their edit: no longer a difference
            zd.update_record("vehicle", record["id"], {"name": name, "custom_object_fields": {"color": color}}, by_hand=True)
        elif action == "rename":
            zd.update_record("vehicle", record["id"], {"name": f"{name} #{step}"}, by_hand=True)
        elif action == "delete":
            zd.delete_record("vehicle", record["id"])
        elif action == "stray":
            zd.create_record("vehicle", {"name": "stray", "external_id": f"outreach:vehicles:{900000 + step}"}, by_hand=True)
        else:
            before = truth()
            report = await verify(synced, fix=action == "repair")
            assert found(report) == before, (step, action)
            if action == "repair":
                assert (truth().edited, truth().deleted) == (set(), set())
    final = await verify(synced)
    assert found(final) == truth()
    assert all(done.count(a) >= 2 for a in ("colour", "back", "delete", "stray", "verify", "repair")), done


async def test_an_export_holding_back_its_freshest_changes_causes_no_false_finding(synced: SandboxWorld) -> None:
    """Zendesk may leave the last minute out of the export: a record just rewritten or just
    re-created is not listed yet, and must read neither as still edited nor as deleted."""
    zd = synced.sandbox.zendesk
    records = zd.records("vehicle")
    zd.update_record("vehicle", records[4]["id"], {"name": "by hand"}, by_hand=True)
    zd.delete_record("vehicle", records[6]["id"])
    found_first = await verify(synced)
    assert (len(found_first.edited), len(found_first.deleted)) == (1, 1)

    zd.record_changes.hold_back = 60.0  # from now on the export lists nothing younger than a minute
    vid = int(records[4]["external_id"].rsplit(":", 1)[1])
    synced.sandbox.outreach.update("vehicles", vid, vehicle_name="Renamed in Outreach")
    await backfill(synced)  # bridge rewrites the edited record: not listed yet
    pending = await verify(synced)
    assert pending.edited == [] and [d.external_id for d in pending.deleted] == [records[6]["external_id"]]
    await verify(synced, fix=True)  # re-creates the deleted one under a new id: not listed yet
    waiting = VerifyOptions(settle=timedelta(seconds=120))
    report = await verify(synced, options=waiting)
    assert (report.edited, report.deleted, report.status) == ([], [], "clean")
    careless = await verify(synced, options=SETTLED)  # the control: no margin for the export's lag
    assert [d.external_id for d in careless.deleted] == [records[6]["external_id"]]

    zd.record_changes.hold_back = 0.0
    assert (await verify(synced, options=waiting)).status == "clean"
    assert (await verify(synced, options=SETTLED)).status == "clean"


async def test_a_tombstone_counts_as_deleted_however_recent_the_write(synced: SandboxWorld) -> None:
    """The settle margin is for records the export may not have listed yet; a tombstone is
    Zendesk saying the record was deleted, even minutes after bridge wrote it (as a user sees
    it: back-fill, delete a record by hand, verify at once)."""
    planted = plant(synced.sandbox)
    report = await verify(synced, options=VerifyOptions(actor="tester", settle=timedelta(seconds=120)))
    assert found(report) == planted
