"""A snapshot of a source record, packed and restored, translates to the same payload hash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mapping.load import load_mappings
from bridge.outreach.models import OutreachId, RelatedRef, SourceRecord
from bridge.pipeline.snapshot import packed, restore, sent_payload, snapshot
from bridge.store import idmap
from bridge.translate import translate

MAPPINGS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")
VEHICLES = MAPPINGS["vehicles"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
attribute_values = {
    "vehicle_name": st.one_of(st.none(), st.text(max_size=30)),
    "speed": st.one_of(st.none(), st.from_regex(r"[0-9]{1,6} ?mph", fullmatch=True), json_scalars),
    "registeredAt": st.one_of(st.none(), st.just("2024-05-01T10:00:00.000Z")),
    "color": st.one_of(st.none(), st.text(max_size=12)),
    "electric": st.one_of(st.none(), st.booleans()),
}
refs = st.one_of(st.none(), st.builds(RelatedRef, st.sampled_from(["prospect", "vehicle_brands"]),
                                      st.integers(1, 50).map(lambda n: OutreachId(str(n)))))  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> tuple[SourceRecord, dict[tuple[str, OutreachId], dict[str, Any]]]:
    attributes = {k: draw(v) for k, v in attribute_values.items() if draw(st.booleans())}
    attributes.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    relationships: dict[str, RelatedRef | None] = {}
    for name in ("main_driver", "brand"):
        if draw(st.booleans()):
            relationships[name] = draw(refs)
    included: dict[tuple[str, OutreachId], dict[str, Any]] = {}
    for ref in relationships.values():
        if ref is not None and draw(st.booleans()):
            included[(ref.type, ref.id)] = {"emails": [draw(st.emails())]}
    included[("prospect", OutreachId("999"))] = {"emails": ["other@example.com"]}  # not this record's
    moment = draw(st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))))
    record = SourceRecord("vehicles", OutreachId(str(draw(st.integers(1, 10**9)))), attributes, relationships, moment)
    return record, included


@settings(max_examples=150, deadline=None)
@given(records())
def test_a_restored_snapshot_translates_to_the_same_payload(case: tuple[SourceRecord, dict[Any, Any]]) -> None:
    record, included = case
    restored, kept = restore(idmap.unpack(idmap.pack(snapshot(record, included))))
    assert restored == record
    wanted = {(ref.type, ref.id) for ref in record.relationships.values() if ref is not None}
    assert kept == {k: v for k, v in included.items() if k in wanted}
    try:
        before = translate(VEHICLES, record)
    except Exception as exc:  # a record that cannot be translated fails the same way again
        try:
            translate(VEHICLES, restored)
        except Exception as again:
            assert str(again) == str(exc)
            return
        raise AssertionError("the restored record translated where the original did not") from exc
    after = translate(VEHICLES, restored)
    assert after.payload_hash == before.payload_hash
    assert idmap.unpack(idmap.pack(sent_payload(after))) == {"name": before.name, "fields": before.fields}


def test_the_payload_sent_carries_the_lookup_values_sent() -> None:
    record = SourceRecord("vehicles", OutreachId("7"), {"vehicle_name": "Zoe"}, {}, datetime(2024, 1, 1, tzinfo=UTC))
    translated = translate(VEHICLES, record)
    sent = sent_payload(translated, {"driver": None, "brand": "42"})
    assert sent["name"] == "Zoe" and sent["fields"]["brand"] == "42" and sent["fields"]["driver"] is None
    assert "brand" not in translated.fields  # the translation itself is left as it was


def test_what_json_cannot_hold_is_kept_as_not_known_and_never_fails_the_write() -> None:
    record = SourceRecord("vehicles", OutreachId("8"), {"vehicle_name": "Zoe", "notes": "\ud800"}, {}, None)
    assert translate(VEHICLES, record).fields["vehicle_name"] == "Zoe"  # no field reads the notes
    assert packed(snapshot(record, {})) is None
