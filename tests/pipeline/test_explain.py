"""`bridge explain`'s reasoning, from state filled through the store functions (no API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.commands.explain import render
from bridge.errors import ConfigError
from bridge.mapping.model import Mapping
from bridge.outreach.models import OutreachId, RelatedRef, SourceRecord
from bridge.pipeline import snapshot
from bridge.pipeline.explain import Explanation, explain
from bridge.pipeline.resolve import Included
from bridge.store import changelog, checkpoints, dead_letters, idmap, links
from bridge.store.changelog import Change
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.store.pool import Connection
from bridge.zendesk.models import ZendeskRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def vehicles(**extra: Any) -> Mapping:
    color = extra.pop("color", {"from": "color", "type": "text"})
    speed = extra.pop("speed", {"from": "speed", "type": "integer", "transform": ["digits"]})
    return Mapping.model_validate({
        "name": "vehicles", "source": {"type": "vehicles", **extra.pop("source", {})},
        "target": {"object": "vehicle", "name": "{vehicle_name}"},
        "fields": {"vehicle_name": "vehicle_name", "color": color,
                   "top_speed_mph": speed},
        "relationships": {"brand": {"from": "brand", "target": "mapping:vehicle_brands"}},
        **extra,
    })  # fmt: skip


def source(sid: str = "7", updated: datetime = T0, **attributes: Any) -> SourceRecord:
    attrs = {"vehicle_name": "DeLorean", "color": " Silver ", "speed": "88mph", **attributes}
    return SourceRecord("vehicles", OutreachId(sid), attrs, {"brand": RelatedRef("vehicle_brands", OutreachId("3"))},
                        updated)  # fmt: skip


async def written(conn: Connection, record: SourceRecord, fields: dict[str, Any], zid: str = "Z7") -> None:
    """A record written by a run: id map row with its payload and source, changelog row."""
    row = IdMapRow(record.id, zid, f"outreach:vehicles:{record.id}", "h",
                   idmap.pack_payload(record.attributes["vehicle_name"], fields),
                   idmap.pack(snapshot.snapshot(record, {})), record.updated_at)  # fmt: skip
    await idmap.upsert_many(conn, "vehicles", [row])
    await changelog.add_many(conn, "vehicles", 41, [Change(record.id, "created", record.updated_at, "J1", zid)])


LAST = {"vehicle_name": "DeLorean", "color": " Silver ", "top_speed_mph": 88, "brand": "B3"}


class FakeRemote:
    """Answers as the APIs would, and counts the requests explain makes."""

    def __init__(self, record: SourceRecord | None = None, zendesk: ZendeskRecord | None = None) -> None:
        self.record, self.zendesk, self.calls = record, zendesk, {"outreach": 0, "zendesk": 0}

    async def outreach_record(self, mapping: Mapping, source_id: str) -> tuple[SourceRecord | None, Included]:
        self.calls["outreach"] += 1
        return self.record, {}

    async def zendesk_record(self, object_key: str, external_id: str) -> ZendeskRecord | None:
        self.calls["zendesk"] += 1
        return self.zendesk


def both(e: Explanation) -> tuple[str, dict[str, Any]]:
    """The text and the JSON a person and a script would read."""
    return render(e), json.loads(json.dumps(e.as_dict(), default=str))


async def brand_written(conn: Connection) -> None:
    await idmap.upsert_many(conn, "vehicle_brands", [IdMapRow("3", "B3", "outreach:vehicle_brands:3", "h")])


async def test_a_record_in_zendesk_is_explained_from_state_alone(db_conn: Connection) -> None:
    await brand_written(db_conn)
    await written(db_conn, source(), LAST)
    remote = FakeRemote()
    text, data = both(await explain(db_conn, vehicles(), "7", remote=remote))
    assert remote.calls == {"outreach": 0, "zendesk": 0}
    assert data["status"] == "in_zendesk" and data["in_zendesk"] and data["reason"] is None
    assert data["zendesk_id"] == "Z7" and data["external_id"] == "outreach:vehicles:7"
    assert data["last_read"]["run_id"] == 41 and data["last_read"]["source_updated_at"].startswith("2026-11-01T12:00")
    assert not any(r["differs"] for r in data["fields"])
    assert [c["action"] for c in data["changelog"]] == ["created"]
    assert "in Zendesk as record Z7" in text and "by run 41" in text and "why" not in text


async def test_an_added_transform_shows_as_the_one_field_it_changes(db_conn: Connection) -> None:
    await brand_written(db_conn)
    await written(db_conn, source(), LAST)
    mapping = vehicles(color={"from": "color", "type": "text", "transform": ["strip", "lower"]})
    text, data = both(await explain(db_conn, mapping, "7"))
    rows = {r["field"]: r for r in data["fields"]}
    assert [k for k, r in rows.items() if r["differs"]] == ["color"]
    assert (rows["color"]["would_write"], rows["color"]["last_written"]) == ("silver", " Silver ")
    assert rows["brand"]["would_write"] == "B3" and rows["name"]["would_write"] == "DeLorean"
    line = next(x for x in text.splitlines() if x.lstrip("* ").startswith("color"))
    assert line.startswith("*") and "silver" in line


async def test_a_dead_lettered_record_says_so_with_its_error(db_conn: Connection) -> None:
    letter = DeadLetter("8", "outreach:vehicles:8", "RecordInvalid: top_speed_mph is not a number", None)
    await dead_letters.add_many(db_conn, "vehicles", 42, [letter])
    await dead_letters.add_many(db_conn, "vehicles", 43, [letter])
    remote = FakeRemote()
    text, data = both(await explain(db_conn, vehicles(), "8", remote=remote))
    assert remote.calls["outreach"] == 0
    assert data["status"] == "dead_lettered" and not data["in_zendesk"]
    assert "2 attempt(s)" in data["reason"] and "RecordInvalid: top_speed_mph" in data["reason"]
    assert data["dead_letter"]["attempts"] == 2
    assert f"why           {data['reason']}" in text


async def test_a_record_deleted_in_outreach_and_kept(db_conn: Connection) -> None:
    await written(db_conn, source(), LAST)
    await idmap.mark_gone(db_conn, "vehicles", ["7"])
    text, data = both(await explain(db_conn, vehicles(), "outreach:vehicles:7"))
    assert data["status"] == "deleted_kept" and data["in_zendesk"]
    assert "on_delete: keep" in data["reason"] and "Z7" in data["reason"]
    assert data["reason"] in text


async def test_a_record_deleted_in_outreach_and_removed(db_conn: Connection) -> None:
    await changelog.add_many(db_conn, "vehicles", 50, [Change("9", "deleted", None, "J9", "Z9")])
    remote = FakeRemote()
    text, data = both(await explain(db_conn, vehicles(on_delete="delete"), "9", remote=remote))
    assert remote.calls["outreach"] == 0
    assert data["status"] == "deleted_removed" and not data["in_zendesk"]
    assert "on_delete: delete" in data["reason"] and data["reason"] in text


async def test_a_record_outside_the_filter_is_filtered_out(db_conn: Connection) -> None:
    remote = FakeRemote(source("10", color="blue"))
    mapping = vehicles(source={"filter": {"color": "red"}})
    text, data = both(await explain(db_conn, mapping, "10", remote=remote))
    assert remote.calls == {"outreach": 1, "zendesk": 0}
    assert data["status"] == "filtered_out" and data["asked_outreach"]
    assert data["reason"].startswith("Filtered out by source.filter: color is 'blue'") and data["reason"] in text


async def test_a_filter_bridge_cannot_check_itself_is_told_by_the_watermark(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "vehicles", watermark=T0 + timedelta(days=1), resume_url=None, run_id=1)
    remote = FakeRemote(source("11"))
    mapping = vehicles(source={"filter": {"speed": "100..200"}})
    _, data = both(await explain(db_conn, mapping, "11", remote=remote))
    assert data["status"] == "filtered_out" and "before the watermark" in data["reason"]


async def test_a_record_updated_after_the_watermark_is_not_read_yet(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "vehicles", watermark=T0, resume_url=None, run_id=1)
    remote = FakeRemote(source("12", updated=T0 + timedelta(minutes=5)))
    text, data = both(await explain(db_conn, vehicles(), "12", remote=remote))
    assert data["status"] == "not_read_yet" and "after the watermark" in data["reason"]
    assert data["reason"] in text


async def test_a_record_no_run_has_reached_is_not_read_yet(db_conn: Connection) -> None:
    _, data = both(await explain(db_conn, vehicles(), "13", remote=FakeRemote(source("13"))))
    assert data["status"] == "not_read_yet" and "no watermark" in data["reason"]


async def test_a_record_outreach_does_not_have_was_never_seen(db_conn: Connection) -> None:
    remote = FakeRemote(None)
    text, data = both(await explain(db_conn, vehicles(), "14", remote=remote))
    assert remote.calls == {"outreach": 1, "zendesk": 0}
    assert data["status"] == "never_seen" and "Outreach has no such record" in data["reason"]
    assert data["last_read"] is None and "last read     never" in text


async def test_parked_links_and_refused_ids_are_shown(db_conn: Connection) -> None:
    await written(db_conn, source(), {**LAST, "brand": None})
    await links.park_many(db_conn, "vehicles", [
        links.ParkedLink("7", "brand", "vehicle_brands", "vehicle_brands", "3", failed_zendesk_id="B-old"),
    ])  # fmt: skip
    text, data = both(await explain(db_conn, vehicles(), "7"))
    assert data["parked_links"][0]["failed_zendesk_id"] == "B-old"
    assert "brand → mapping:vehicle_brands 3" in text and "Zendesk refused B-old" in text
    brand = next(r for r in data["fields"] if r["field"] == "brand")
    assert brand["would_write"] is None and "not in Zendesk yet" in brand["note"]


async def test_live_shows_a_hand_edit_in_zendesk_against_the_last_written(db_conn: Connection) -> None:
    await brand_written(db_conn)
    await written(db_conn, source(), LAST)
    edited = ZendeskRecord("Z7", "outreach:vehicles:7", "DeLorean", {**LAST, "color": "pink"})  # type: ignore[arg-type]
    remote = FakeRemote(source(color=" Gold "), edited)
    text, data = both(await explain(db_conn, vehicles(), "7", remote=remote, live=True))
    assert remote.calls == {"outreach": 1, "zendesk": 1}
    color = next(r for r in data["fields"] if r["field"] == "color")
    assert (color["would_write"], color["last_written"], color["zendesk_now"]) == (" Gold ", " Silver ", "pink")
    assert color["differs"] and color["zendesk_differs"]
    assert [r["field"] for r in data["fields"] if r["zendesk_differs"]] == ["color"]
    assert data["live"]["zendesk_id"] == "Z7" and "Zendesk now" in text


@pytest.mark.parametrize("ident", ["", "abc", "outreach:vehicles:x", "12 13"])
async def test_an_id_that_is_neither_is_refused(db_conn: Connection, ident: str) -> None:
    with pytest.raises(ConfigError, match="neither an Outreach id"):
        await explain(db_conn, vehicles(), ident)


async def test_an_external_id_of_another_type_names_the_mismatch(db_conn: Connection) -> None:
    with pytest.raises(ConfigError, match="external id of Outreach prospects"):
        await explain(db_conn, vehicles(), "outreach:prospects:5")


async def test_the_json_keys_are_stable(db_conn: Connection) -> None:
    _, data = both(await explain(db_conn, vehicles(), "15", remote=FakeRemote(None)))
    assert sorted(data) == sorted([
        "mapping", "source_id", "external_id", "status", "in_zendesk", "reason", "zendesk_id", "last_read",
        "last_written_at", "would_write_from", "would_write_error", "fields", "changelog", "dead_letter",
        "parked_links", "refused_lookup_ids", "asked_outreach", "live", "notes",
    ])  # fmt: skip


async def test_a_translation_dead_letter_shows_what_the_current_mapping_would_write(db_conn: Connection) -> None:
    attributes = {"vehicle_name": "Herbie", "color": "white", "speed": "55mph"}
    letter = DeadLetter("16", None, "field 'top_speed_mph': cannot use '55mph' as integer", {"attributes": attributes})
    await dead_letters.add_many(db_conn, "vehicles", 7, [letter])
    still = await explain(db_conn, vehicles(speed={"from": "speed", "type": "integer"}), "16")
    assert still.would_write_from == "dead_letter" and "cannot use '55mph'" in (still.would_write_error or "")
    text, data = both(await explain(db_conn, vehicles(), "16"))  # the mapping fixed: digits first
    assert data["would_write_error"] is None and data["status"] == "dead_lettered"
    assert {r["field"]: r["would_write"] for r in data["fields"]}["top_speed_mph"] == 55
    assert "would write now" in text


async def test_live_says_when_outreach_has_a_newer_version(db_conn: Connection) -> None:
    await brand_written(db_conn)
    await written(db_conn, source(), LAST)
    remote = FakeRemote(source(updated=T0 + timedelta(hours=1)), None)
    text, data = both(await explain(db_conn, vehicles(), "7", remote=remote, live=True))
    assert any("newer version" in n for n in data["notes"]) and "newer version" in text
    assert data["live"]["zendesk_found"] is False and "Zendesk has no record" in text


async def test_changelog_rows_alone_ask_outreach_and_are_mentioned(db_conn: Connection) -> None:
    await changelog.add_many(db_conn, "vehicles", 60, [Change("17", "dead_lettered", T0, None, "RecordInvalid")])
    remote = FakeRemote(None)
    _, data = both(await explain(db_conn, vehicles(), "17", remote=remote))
    assert remote.calls["outreach"] == 1 and data["status"] == "never_seen"
    assert "a run read it (dead lettered at" in data["reason"] and "Outreach has no such record." in data["reason"]
