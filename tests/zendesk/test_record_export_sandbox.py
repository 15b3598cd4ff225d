"""The record export client against the sandbox over loopback: pages, resuming from a cursor
after changes made by hand, deletions, the export limit and the refusals verify acts on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bridge.errors import ExportCursorInvalid, ExportUnavailable
from bridge.http.transport import HttpConfig, Transport
from bridge.sandbox import Sandbox, ZendeskSandbox
from bridge.zendesk.auth import BearerToken
from bridge.zendesk.exports import ExportPacer
from bridge.zendesk.record_export import RecordExport, RecordExportPage
from bridge.zendesk.wire import error_detail as zendesk_error_detail
from tests.sandbox.conftest import FakeClock


@dataclass
class Rig:
    sandbox: Sandbox
    clock: FakeClock
    transport: Transport
    slept: list[float]
    ids: list[str]
    http: aiohttp.ClientSession

    def export(self, per_page: int = 1000) -> RecordExport:
        async def no_wait(seconds: float) -> None:  # pacing has its own test
            return None

        return RecordExport(self.transport, self.sandbox.zendesk_url, per_page=per_page,
                            pacer=ExportPacer(10_000, sleep=no_wait), wall=lambda: self.clock().timestamp())  # fmt: skip

    async def control(self, path: str, body: dict[str, object]) -> dict[str, object]:
        async with self.http.post(f"{self.sandbox.zendesk_url}/_sandbox/zendesk/{path}", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            result: dict[str, object] = await resp.json()
            return result


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    zendesk = ZendeskSandbox(clock=clock, export_rate_limit=1000)
    zendesk.add_object("vehicle", "Vehicle", "Vehicles")
    zendesk.add_field("vehicle", {"key": "color", "type": "text", "title": "Color"})
    ids = []
    for i in range(25):
        payload = {"name": f"Car {i}", "external_id": f"outreach:vehicles:{i}", "custom_object_fields": {"color": "red"}}
        ids.append(zendesk.create_record("vehicle", payload)["id"])
    clock.advance(120)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # the transport's waits move the sandbox's clock
        slept.append(seconds)
        clock.advance(seconds)

    async with Sandbox(zendesk=zendesk) as sandbox, aiohttp.ClientSession() as session:
        transport = Transport(session, HttpConfig(api="zendesk"), auth=BearerToken(zendesk.issue_token()),
                              error_parser=zendesk_error_detail, sleep=sleep)  # fmt: skip
        yield Rig(sandbox, clock, transport, slept, ids, session)


async def read(export: RecordExport, cursor: str | None = None, **kw: bool) -> list[RecordExportPage]:
    return [p async for p in export.pages("vehicle", cursor, **kw)]


async def test_every_record_comes_once_over_several_pages(rig: Rig) -> None:
    pages = await read(rig.export(per_page=10))
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [p.end_of_stream for p in pages] == [False, False, True]
    assert [r.id for p in pages for r in p.records] == rig.ids
    first = pages[0].records[0]
    assert (first.external_id, first.name, first.fields) == ("outreach:vehicles:0", "Car 0", {"color": "red"})
    assert first.updated_at is not None and first.updated_at.isoformat() == "2024-07-25T13:18:30+00:00"
    assert rig.sandbox.counters.count("zendesk", route="incremental_custom_object_records") == 3


async def test_resuming_from_the_cursor_reads_only_what_changed_by_hand(rig: Rig) -> None:
    done = await read(rig.export())
    cursor = done[-1].cursor
    assert (await read(rig.export(), cursor))[0].records == []
    rig.clock.advance(5)
    await rig.control("records/edit", {"object": "vehicle", "id": rig.ids[3], "fields": {"color": "green"}})
    await rig.control("records/delete", {"object": "vehicle", "external_id": "outreach:vehicles:7"})
    stray = await rig.control("records/create", {"object": "vehicle", "name": "Stray", "external_id": "outreach:vehicles:999"})
    [page] = await read(rig.export(), cursor)
    assert [(r.id, r.fields["color"]) for r in page.records] == [(rig.ids[3], "green"), (stray["record"]["id"], None)]  # type: ignore[index]
    assert page.records[0].updated_at is not None and page.records[0].updated_at > done[0].records[3].updated_at  # type: ignore[operator]
    assert page.deleted == [rig.ids[7]]
    [kept] = await read(rig.export(), cursor, exclude_deleted=True)
    assert kept.deleted == [] and len(kept.records) == 2
    [after] = await read(rig.export(), page.cursor)
    assert after.records == after.deleted == []


async def test_the_export_limit_is_waited_out(rig: Rig) -> None:
    rig.sandbox.zendesk.exports.rate_limit = 1
    pages = await read(rig.export(per_page=10))
    assert sum(len(p.records) for p in pages) == 25
    assert rig.sandbox.counters.count("zendesk", route="incremental_custom_object_records", status=429) == 2
    assert len(rig.slept) == 2 and all(1 <= s <= 60 for s in rig.slept)


async def test_a_garbage_or_expired_cursor_is_export_cursor_invalid(rig: Rig) -> None:
    with pytest.raises(ExportCursorInvalid):
        await read(rig.export(), "not-a-cursor")
    cursor = (await read(rig.export()))[-1].cursor
    await rig.control("exports", {"expire_cursors": True})
    with pytest.raises(ExportCursorInvalid):
        await read(rig.export(), cursor)


@pytest.mark.parametrize("status", [403, 404])
async def test_an_account_without_the_export_is_export_unavailable(rig: Rig, status: int) -> None:
    await rig.control("exports", {"record_export_unavailable": status})
    with pytest.raises(ExportUnavailable) as caught:
        await read(rig.export())
    assert caught.value.status == status
