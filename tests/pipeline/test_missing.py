"""Why a record is not in Zendesk: every combination of state and Outreach's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bridge.mapping.model import Mapping
from bridge.outreach.models import OutreachId, SourceRecord
from bridge.pipeline.missing import IN_ZENDESK, RecordState, status_of
from bridge.store import changelog, checkpoints, dead_letters, idmap

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def mapping(filtered: bool, checkable: bool) -> Mapping:
    condition = {"color": "red"} if checkable else {"speed": "100..200"}
    return Mapping.model_validate({
        "name": "vehicles", "source": {"type": "vehicles", "filter": condition if filtered else {}},
        "target": {"object": "vehicle", "name": "{vehicle_name}"}, "fields": {"color": "color"},
    })  # fmt: skip


@given(
    row=st.sampled_from([None, "live", "gone"]),
    letter=st.booleans(),
    deleted=st.booleans(),
    asked=st.booleans(),
    outreach=st.sampled_from([None, "red", "blue"]),
    checkable=st.booleans(),  # a filter bridge can check itself, or a range it cannot
    updated=st.sampled_from([-1, 1]),  # before or after the watermark
    watermark=st.booleans(),
    filtered=st.booleans(),
)
def test_the_status_follows_the_strongest_fact(
    row: str | None, letter: bool, deleted: bool, asked: bool, outreach: str | None, checkable: bool,
    updated: int, watermark: bool, filtered: bool,
) -> None:  # fmt: skip
    written = None if row is None else idmap.WrittenRecord(
        "7", "Z7", "outreach:vehicles:7", None, None, None, T0, T0 if row == "gone" else None)  # fmt: skip
    dead = dead_letters.DeadLetterRow("vehicles", "7", None, "RecordInvalid", None, 2, T0, T0, 1) if letter else None
    changes = [changelog.Entry(3, T0, changelog.Change("7", "deleted"))] if deleted else []
    cp = checkpoints.StoredCheckpoint("vehicles", T0 if watermark else None, None, 1)
    state = RecordState(written, dead, changes, None, [], [], cp)
    found = None if outreach is None else SourceRecord(
        "vehicles", OutreachId("7"), {"color": outreach}, {}, T0 + timedelta(minutes=updated))  # fmt: skip
    status, reason = status_of(mapping(filtered, checkable), "7", state, asked, found if asked else None)

    if row == "live":
        expected = "in_zendesk"
    elif row == "gone":
        expected = "deleted_kept"
    elif letter:
        expected = "dead_lettered"
    elif deleted:
        expected = "deleted_removed"
    elif not asked or found is None:
        expected = "never_seen"
    elif filtered and checkable and outreach == "blue":
        expected = "filtered_out"
    elif not watermark or updated > 0:
        expected = "not_read_yet"
    else:
        expected = "filtered_out" if filtered and not checkable else "never_seen"
    assert status == expected
    assert (reason is None) == (status == "in_zendesk")
    if reason is not None:
        assert "\n" not in reason and reason[0].isupper()
    assert (status in IN_ZENDESK) == (row in ("live", "gone"))
