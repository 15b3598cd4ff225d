"""Sync these ids: fetch the records afresh, write them like a page, move no checkpoint.

Both dead-letter retry and webhook deliveries name records rather than a time window, and
both must write them exactly as a scheduled run would: the same `include` and related
`fields` (so lookups resolve the same way), the same page path (`pipeline/page.py`:
translate, skip what the id map already holds, bulk upsert), and one transaction per chunk
for its id-map rows, dead letters, links, changelog rows and run counts. The checkpoint is never touched: a
targeted sync reads current data, and the scheduled run's watermark stays its own.

Each id comes back as one of: written, unchanged (the id map already holds this payload),
vanished (Outreach no longer lists it: deleted, or outside the mapping's filter), or failed
(dead-lettered). All but failed resolve the record's dead letter: nothing is left to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.mapping.model import Mapping
from bridge.outreach.models import OutreachId, Page, SourceRecord
from bridge.pipeline.load import PageLoader
from bridge.pipeline.page import (
    PageOutcome,
    change_to_write,
    commit_links,
    counts,
    freshest,
    load_page,
    page_changes,
)
from bridge.pipeline.reconcile import with_page_size
from bridge.pipeline.resolve import relationship_query
from bridge.pipeline.services import Services
from bridge.store import changelog, dead_letters, idmap, leases, runs, submitted_jobs

FETCH_CHUNK = 1000  # ids per Outreach list request (page[size] ≤ 1000)
FILTER_CHARS = 6000  # and at most this much `filter[id]` text: request lines have limits


@dataclass(slots=True)
class IdsOutcome:
    """What became of each id asked for."""

    written: set[str] = field(default_factory=set)
    unchanged: set[str] = field(default_factory=set)
    vanished: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    change_to_write: list[float] = field(default_factory=list)  # seconds, per written record

    def add(self, other: IdsOutcome) -> None:
        self.written |= other.written
        self.unchanged |= other.unchanged
        self.vanished |= other.vanished
        self.failed |= other.failed
        self.change_to_write += other.change_to_write


def chunks(source_ids: Sequence[str]) -> list[list[str]]:
    """Up to FETCH_CHUNK ids each, and ids of at most FILTER_CHARS characters."""
    out: list[list[str]] = []
    current: list[str] = []
    chars = 0
    for source_id in source_ids:
        if current and (len(current) == FETCH_CHUNK or chars + len(source_id) > FILTER_CHARS):
            out.append(current)
            current, chars = [], 0
        current.append(source_id)
        chars += len(source_id) + 1
    if current:
        out.append(current)
    return out


async def sync_ids(
    mapping: Mapping,
    services: Services,
    loader: PageLoader,
    source_ids: Sequence[str],
    run_id: int,
    *,
    holder: str | None = None,
) -> IdsOutcome:
    """Writes the current version of each of `source_ids` (any number, fetched in chunks);
    with a lease `holder`, each chunk commits only while that holder holds the mapping."""
    total = IdsOutcome()
    for chunk in chunks(list(dict.fromkeys(source_ids))):
        total.add(await _chunk(mapping, services, loader, chunk, run_id, holder))
    return total


async def _chunk(
    mapping: Mapping,
    services: Services,
    loader: PageLoader,
    wanted: Sequence[str],
    run_id: int,
    holder: str | None,
) -> IdsOutcome:
    page = await fetch_records(mapping, services, wanted)
    outcome = await load_page(mapping, services.pool, loader, page)
    written = {row.source_id for row in outcome.written}
    failed = {letter.source_id for letter in outcome.dead}
    found: set[str] = {str(record.id) for record in page.records}
    result = IdsOutcome(written, found - written - failed, set(wanted) - found, failed)
    await _commit(mapping.name, services, run_id, outcome, result, holder)
    result.change_to_write = change_to_write(outcome, datetime.now(UTC))
    return result


async def fetch_records(mapping: Mapping, services: Services, source_ids: Sequence[str]) -> Page:
    """The live records among `source_ids` (≤ 1000) as one page, fetched like a sync fetches
    them (same `include` and related `fields`, so lookups resolve the same way)."""
    filters = {**mapping.source.query_filters(), "filter[id]": ",".join(source_ids)}
    include, fields = relationship_query(mapping)
    url = services.outreach.list_url(
        mapping.source.type, custom_object=mapping.source.custom_object, filters=filters,
        include=include, fields=fields,
    )  # fmt: skip
    url = with_page_size(url, FETCH_CHUNK)
    wanted = set(source_ids)
    found: list[SourceRecord] = []
    included: dict[tuple[str, OutreachId], dict[str, Any]] = {}
    async for page in services.outreach.pages(url):
        found.extend(record for record in page.records if record.id in wanted)
        included.update(page.included)
    return Page(records=found, url=url, next_url=None, included=included)


async def _commit(
    name: str,
    services: Services,
    run_id: int,
    outcome: PageOutcome,
    result: IdsOutcome,
    holder: str | None,
) -> None:
    async with services.pool.acquire() as conn, conn.transaction():
        if holder is not None:
            await leases.assert_held(conn, name, holder)
        if outcome.written:
            await idmap.upsert_many(conn, name, outcome.written)
        await dead_letters.resolve(conn, name, sorted(result.written | result.unchanged | result.vanished))
        if outcome.dead:
            await dead_letters.add_many(conn, name, run_id, outcome.dead)
        filled = await commit_links(conn, name, outcome)
        await changelog.add_many(conn, name, run_id, page_changes(outcome, filled))
        await submitted_jobs.settle(conn, name, [], outcome.sent())  # a stored job is stale now
        await runs.add_counts(conn, run_id, counts(outcome), change_to_write=freshest(outcome))
