"""Translating a page: the same outcome whether or not the event loop runs meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.mapping.load import load_mappings
from bridge.outreach.models import OutreachId, Page, SourceRecord
from bridge.pipeline.page import TRANSLATE_CHUNK, translate_page, translate_page_yielding

MAPPING = load_mappings(Path(__file__).resolve().parents[2] / "mappings")["vehicles"]


def vehicle(n: int, color: str = "Red", problem: str | None = None) -> SourceRecord:
    return SourceRecord("vehicles", OutreachId(str(n)), {"vehicle_name": f"v{n}", "color": color, "speed": "88mph"},
                        {}, None, problem=problem)  # fmt: skip


async def test_a_page_translated_in_chunks_lets_the_event_loop_run_and_gives_the_same_outcome() -> None:
    records = [vehicle(n) for n in range(2 * TRANSLATE_CHUNK + 50)]
    records[7] = vehicle(7, problem="updatedAt must be a string")
    records.append(vehicle(3, color="Green"))  # listed twice: its last version counts
    page = Page(records, "u", None)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    await asyncio.sleep(0)
    before = turns
    chunked = await translate_page_yielding(MAPPING, page)
    counter.cancel()
    await asyncio.wait({counter})
    assert turns - before >= 2  # the loop ran between chunks, not only at the end
    assert chunked == translate_page(MAPPING, page)
    ready, dead = chunked
    assert [d.source_id for d in dead] == ["7"]
    assert len(ready) == len(records) - 2 and ready[-1].fields["color"] == "green"
