"""One page, from fetched to settled: translate, skip the unchanged, write, then commit.

`load_page` may run for several pages at once (it touches only Zendesk and reads hashes);
`commit_page` runs strictly in listing order, and writes the page's id-map rows, dead
letters, parked links, changelog rows (`store/changelog.py`), run counts and the checkpoint
after it in ONE transaction, in which it also forgets the bulk jobs submitted for it
(`pipeline/submitted.py`). So the stored checkpoint never passes a page whose records are not
all written or dead-lettered, a record written without a lookup always has its link parked,
and the changelog never claims a write that did not settle. Under a lease, that
transaction first proves the lease is still this holder's (`store.leases.assert_held`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import asyncpg

from bridge.errors import RecordError
from bridge.mapping.model import Mapping
from bridge.outreach.models import Page, SourceRecord
from bridge.pipeline.load import LoadResult, PageLoader
from bridge.pipeline.resolve import LinkPlan, Resolver
from bridge.pipeline.snapshot import packed, snapshot
from bridge.store import changelog, checkpoints, dead_letters, idmap, leases, links, runs, submitted_jobs
from bridge.store.changelog import Change
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.store.links import ParkedLink
from bridge.store.pool import Connection
from bridge.translate import Translated, translate
from bridge.zendesk.models import ItemResult


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What became of every record on a page; `changed` counts what was (or would be) sent."""

    page: Page
    written: list[IdMapRow]
    dead: list[DeadLetter]
    skipped: int
    changed: int
    parked: list[ParkedLink] = field(default_factory=list)  # lookups waiting for their target
    settled: list[tuple[str, str]] = field(default_factory=list)  # (source_id, field) set or cleared
    jobs: list[str] = field(default_factory=list)  # bulk jobs submitted for the page
    # For the changelog: the records that had a live id-map row before (written again:
    # "updated", else "created"), those left unchanged, the lookups set to a Zendesk id,
    # and each item's final result (its job id)
    known: frozenset[str] = frozenset()
    unchanged: list[str] = field(default_factory=list)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    results: dict[str, ItemResult] = field(default_factory=dict)

    def sent(self) -> list[str]:
        """External ids of the records whose outcome this page stores."""
        return [r.external_id for r in self.written] + [d.external_id for d in self.dead if d.external_id]


async def load_page(
    mapping: Mapping,
    pool: asyncpg.Pool,
    loader: PageLoader | None,
    page: Page,
    resolver: Resolver | None = None,
) -> PageOutcome:
    """Translates, resolves lookups and writes one page; with no loader (dry run) it only counts."""
    ready, untranslatable = await translate_page_yielding(mapping, page)
    async with pool.acquire() as conn:
        known = await idmap.hashes(conn, mapping.name, [t.source_id for t in ready])
    changed = [t for t in ready if known.get(t.source_id) != t.payload_hash]
    skipped = len(ready) - len(changed)
    if loader is None:
        return PageOutcome(page, [], untranslatable, skipped, len(changed))
    plan = LinkPlan()
    if mapping.relationships and changed:
        plan = await (resolver or Resolver(loader.zendesk)).plan(pool, changed, page.included)
    result = await loader.write(changed, plan.values)
    parked, settled, resolved = _links_after(plan, result, resolver)
    unchanged = [t.source_id for t in ready if known.get(t.source_id) == t.payload_hash]
    return PageOutcome(
        page, with_sources(result.written, page), result.dead + untranslatable, skipped, len(changed),
        parked, settled, result.jobs, frozenset(known), unchanged, resolved, result.results,
    )


def with_sources(rows: list[IdMapRow], page: Page) -> list[IdMapRow]:
    """`rows` carrying the snapshot of the record each was written from, and its updatedAt."""
    if not rows:
        return rows
    latest: dict[str, SourceRecord] = {record.id: record for record in page.records}
    out = []
    for row in rows:
        record = latest.get(row.source_id)
        if record is None:
            out.append(row)
            continue
        kept = packed(snapshot(record, page.included))
        out.append(IdMapRow(row.source_id, row.zendesk_id, row.external_id, row.payload_hash,
                            row.written_payload, kept, record.updated_at))  # fmt: skip
    return out


def _links_after(
    plan: LinkPlan, result: LoadResult, resolver: Resolver | None
) -> tuple[list[ParkedLink], list[tuple[str, str]], list[tuple[str, str]]]:
    """Links to park, links settled (set or cleared) and links set, for the records actually
    written."""
    written = {row.source_id for row in result.written}
    parked = plan.parked_for(written)
    for key, zid in result.refused.items():  # Zendesk refused the target: re-park the link
        parked.append(replace(plan.pending[key], failed_zendesk_id=zid))
        if resolver is not None and key in plan.targets:
            resolver.forget(plan.targets[key])
    settled = [k for k in plan.settled_for(written) if k not in result.refused]
    resolved = [k for k in plan.resolved if k[0] in written and k not in result.refused]
    return parked, settled, resolved


async def commit_page(
    pool: asyncpg.Pool,
    mapping: str,
    run_id: int,
    outcome: PageOutcome,
    watermark: datetime | None,
    *,
    holder: str | None = None,
) -> None:
    """Stores the page's outcome and the checkpoint after it; with a lease `holder`, only while
    that holder still holds the mapping's lease (else LeaseLost and nothing is stored)."""
    async with pool.acquire() as conn, conn.transaction():
        if holder is not None:
            await leases.assert_held(conn, mapping, holder)
        if outcome.written:
            await idmap.upsert_many(conn, mapping, outcome.written)
            await dead_letters.resolve(conn, mapping, [r.source_id for r in outcome.written])
        if outcome.dead:
            await dead_letters.add_many(conn, mapping, run_id, outcome.dead)
        filled = await commit_links(conn, mapping, outcome)
        await changelog.add_many(conn, mapping, run_id, page_changes(outcome, filled))
        await submitted_jobs.settle(conn, mapping, outcome.jobs, outcome.sent())
        await checkpoints.save(
            conn, mapping, watermark=watermark, resume_url=outcome.page.next_url, run_id=run_id
        )
        await runs.add_counts(conn, run_id, counts(outcome), change_to_write=freshest(outcome))


async def commit_links(conn: Connection, mapping: str, outcome: PageOutcome) -> list[tuple[str, str]]:
    """Parks the page's waiting links and drops the parked rows of links now set or cleared
    (call inside the page's transaction); the parked links this page filled."""
    unparked = await links.unpark(conn, mapping, outcome.settled)
    await links.park_many(conn, mapping, outcome.parked)
    return [k for k in outcome.resolved if k in unparked]


def page_changes(outcome: PageOutcome, filled: Sequence[tuple[str, str]] = ()) -> list[Change]:
    """The changelog rows of a settled page: what became of each record read, then of its
    links (`filled`: the parked links the page set)."""
    updated_at: dict[str, datetime | None] = {r.id: r.updated_at for r in outcome.page.records}
    results = outcome.results
    rows: list[Change] = []
    for row in outcome.written:
        action: changelog.Action = "updated" if row.source_id in outcome.known else "created"
        result = results.get(row.source_id)
        rows.append(Change(row.source_id, action, updated_at.get(row.source_id),
                           result.job_id if result is not None else None, row.zendesk_id))  # fmt: skip
    for letter in outcome.dead:
        result = results.get(letter.source_id)
        rows.append(Change(letter.source_id, "dead_lettered", updated_at.get(letter.source_id),
                           result.job_id if result is not None else None, letter.error))  # fmt: skip
    for source_id in outcome.unchanged:
        rows.append(Change(source_id, "skipped_unchanged", updated_at.get(source_id)))
    for link in outcome.parked:
        rows.append(Change(link.source_id, "parked_link", detail=parked_detail(link)))
    written = {row.source_id: row.zendesk_id for row in outcome.written}
    for source_id, name in filled:  # set by the record's own write
        result = results.get(source_id)
        rows.append(Change(source_id, "filled_link", None, result.job_id if result is not None else None,
                           written.get(source_id), name))  # fmt: skip
    return rows


def parked_detail(link: ParkedLink) -> str:
    """What a parked_link row says: the lookup field, and the target it waits for."""
    text = f"{link.field} -> {link.target} {link.target_type} {link.target_source_id}"
    if link.match_value is not None:
        text += f" ({link.match} {link.match_value})"
    if link.failed_zendesk_id is not None:
        text += f"; Zendesk refused {link.failed_zendesk_id}"
    return text


def counts(outcome: PageOutcome) -> runs.RunCounts:
    return runs.RunCounts(
        fetched=len(outcome.page.records),
        written=len(outcome.written),
        skipped=outcome.skipped,
        failed=len(outcome.dead),
        parked=len(outcome.parked),
    )


def freshest(outcome: PageOutcome) -> float | None:
    """Seconds the page's most recent written change took to reach Zendesk, if any."""
    delays = change_to_write(outcome, datetime.now(UTC))
    return min(delays) if delays else None


def change_to_write(outcome: PageOutcome, now: datetime) -> list[float]:
    """Seconds from each written record's last change in Outreach (`updatedAt`) to `now`:
    how long a change took to reach Zendesk, by the source's clock."""
    written = {row.source_id for row in outcome.written}
    return [
        max(0.0, (now - record.updated_at).total_seconds())
        for record in outcome.page.records
        if record.updated_at is not None and record.id in written
    ]


def translate_page(mapping: Mapping, page: Page) -> tuple[list[Translated], list[DeadLetter]]:
    """Translated records, and dead letters for those that cannot be translated.

    A record listed twice on one page is translated once, in its last (newest: the listing
    is sorted by `updatedAt`) version, so one page never sends two versions of it at once.
    """
    ready: list[Translated] = []
    dead: list[DeadLetter] = []
    for _ in _translating(mapping, page, ready, dead):
        pass
    return ready, dead


# Records translated between two turns of the event loop while a page is translated.
TRANSLATE_CHUNK = 100


async def translate_page_yielding(mapping: Mapping, page: Page) -> tuple[list[Translated], list[DeadLetter]]:
    """`translate_page`, letting the event loop run every TRANSLATE_CHUNK records: a page of
    1,000 takes milliseconds, and the next page's answer, read meanwhile, must not wait for
    all of it before its own next page is asked for (cursor paging is a chain)."""
    ready: list[Translated] = []
    dead: list[DeadLetter] = []
    for _ in _translating(mapping, page, ready, dead):
        await asyncio.sleep(0)
    return ready, dead


def _translating(
    mapping: Mapping, page: Page, ready: list[Translated], dead: list[DeadLetter]
) -> Iterator[None]:
    """Fills `ready` and `dead`, pausing (yielding) after each TRANSLATE_CHUNK records."""
    latest = {record.id: record for record in page.records}
    for done, record in enumerate((r for r in page.records if latest[r.id] is r), 1):
        try:
            ready.append(translate(mapping, record))
        except RecordError as exc:
            dead.append(DeadLetter(record.id, None, str(exc), {"attributes": record.attributes}))
        if done % TRANSLATE_CHUNK == 0:
            yield
