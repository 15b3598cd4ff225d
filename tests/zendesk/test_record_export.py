"""The custom object record export client on the wire (aioresponses): the requests it sends,
how pages, tombstones and cursors come back, and the errors it maps at its boundary."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from bridge.errors import ExportCursorInvalid, ExportUnavailable, RejectedError
from bridge.zendesk.auth import BearerToken
from bridge.zendesk.exports import ExportPacer
from bridge.zendesk.models import ZendeskRecord
from bridge.zendesk.record_export import MIN_START_AGE, RecordExport

from .conftest import BASE, FakeClock, RecordingSleep, make_transport

URL = re.compile(rf"^{re.escape(BASE)}/api/v2/incremental/custom_objects/vehicle/cursor\?.*$")
NOW = 1_800_000_000.0


def record(rid: str, ext: str | None, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": rid, "name": name, "external_id": ext, "custom_object_key": "vehicle",
            "custom_object_fields": fields, "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-02T10:00:00Z"}  # fmt: skip


def answer(records: list[dict[str, Any]], cursor: str | None, more: bool) -> dict[str, Any]:
    return {"custom_object_records": records, "after_cursor": cursor, "after_url": None,
            "before_cursor": None, "before_url": None, "meta": {"has_more": more}, "filter": {"exclude_deleted": False}}  # fmt: skip


def export(session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock, pacer: ExportPacer | None = None) -> RecordExport:
    transport = make_transport(session, BearerToken("tok-test"), sleep, clock)
    return RecordExport(transport, BASE, pacer=pacer or ExportPacer(10_000, sleep=sleep, clock=clock), wall=lambda: NOW)


def queries(mock: aioresponses) -> list[dict[str, str]]:
    return [dict(url.query) for (method, url), calls in mock.requests.items() for _ in calls]


async def test_pages_follow_after_cursor_while_has_more_and_split_live_from_deleted(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    tomb = {**record("01B", "[DELETED]", "[DELETED]", color="[DELETED]"), "updated_at": "2026-11-03T00:00:00Z"}
    mock.get(URL, payload=answer([record("01A", "outreach:vehicles:1", "Car", color="red"), tomb], "c1", True))
    mock.get(URL, payload=answer([record("01C", None, "[DELETED]", color="mauve")], "c2", False))
    pages = [p async for p in export(session, sleep, clock).pages("vehicle", start_time=1000)]
    assert [(p.cursor, p.end_of_stream, p.deleted) for p in pages] == [("c1", False, ["01B"]), ("c2", True, [])]
    assert pages[0].records == [ZendeskRecord("01A", "outreach:vehicles:1", "Car", {"color": "red"},  # type: ignore[arg-type]
                                              datetime(2026, 11, 2, 10, tzinfo=UTC))]  # fmt: skip
    assert [r.id for r in pages[1].records] == ["01C"]  # named "[DELETED]" but its field is its own
    first, second = queries(mock)
    assert first == {"per_page": "1000", "start_time": "1000"}
    assert second == {"per_page": "1000", "cursor": "c1"}


async def test_a_stored_cursor_and_exclude_deleted_are_sent_and_start_time_never_too_recent(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, payload=answer([], "c9", False))
    mock.get(URL, payload=answer([], "c10", False))
    client = export(session, sleep, clock)
    [page] = [p async for p in client.pages("vehicle", "c8", exclude_deleted=True)]
    assert page.cursor == "c9" and page.end_of_stream and page.records == page.deleted == []
    [_] = [p async for p in client.pages("vehicle", start_time=int(NOW))]
    first, second = queries(mock)
    assert first == {"per_page": "1000", "cursor": "c8", "filter[exclude_deleted]": "true"}
    assert second == {"per_page": "1000", "start_time": str(int(NOW) - MIN_START_AGE)}


async def test_an_empty_last_page_without_cursor_keeps_the_one_given(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, payload={"custom_object_records": [], "after_cursor": None, "end_of_stream": True})
    [page] = [p async for p in export(session, sleep, clock).pages("vehicle", "c5")]
    assert page.cursor == "c5" and page.end_of_stream


async def test_has_more_without_a_new_cursor_stops_instead_of_looping(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, payload=answer([], "c5", True))
    with pytest.raises(RejectedError, match="avoid a loop"):
        _ = [p async for p in export(session, sleep, clock).pages("vehicle", "c5")]


async def test_invalid_cursor_is_its_own_error(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, status=400, payload={"error": "InvalidCursor", "description": "The cursor is invalid or has expired"})
    with pytest.raises(ExportCursorInvalid, match="start the export again") as caught:
        _ = [p async for p in export(session, sleep, clock).pages("vehicle", "stale")]
    assert caught.value.status == 400 and caught.value.detail.startswith("InvalidCursor")


@pytest.mark.parametrize("status, body", [
    (403, {"error": "Forbidden", "description": "You do not have access to this page."}),
    (404, {"error": "InvalidEndpoint", "description": "Not found"}),
])  # fmt: skip
async def test_an_export_the_account_lacks_is_its_own_error(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock,
    status: int, body: dict[str, str],
) -> None:  # fmt: skip
    mock.get(URL, status=status, payload=body)
    with pytest.raises(ExportUnavailable, match="cursor listing instead") as caught:
        _ = [p async for p in export(session, sleep, clock).pages("vehicle")]
    assert caught.value.status == status


async def test_other_refusals_and_bad_bodies_stay_rejected_errors(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, status=400, payload={"error": "InvalidValue", "description": "start_time or cursor is required"})
    mock.get(URL, payload={"records": []})
    client = export(session, sleep, clock)
    for _ in range(2):
        with pytest.raises(RejectedError) as caught:
            _ = [p async for p in client.pages("vehicle", "c1")]
        assert type(caught.value) is RejectedError


async def test_a_429_is_waited_out_and_every_request_goes_through_the_shared_pacer(
    mock: aioresponses, session: aiohttp.ClientSession, sleep: RecordingSleep, clock: FakeClock
) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "7"}, payload={"error": "APIRateLimitExceeded"})
    mock.get(URL, payload=answer([], "c1", True))
    mock.get(URL, payload=answer([], "c2", False))
    pacer = ExportPacer(10, sleep=sleep, clock=clock)  # 6 s apart
    await pacer.wait()  # the user export just used it
    pages = [p async for p in export(session, sleep, clock, pacer).pages("vehicle", "c0")]
    assert [p.cursor for p in pages] == ["c1", "c2"]
    assert sleep.delays == [6.0, 7.0]  # the pacer's 6 s, the 429's 7 s; then already spaced enough


def test_per_page_is_bounded() -> None:
    with pytest.raises(ValueError):
        RecordExport(None, BASE, per_page=1001)  # type: ignore[arg-type]
