"""One page, from fetched to settled: translate, skip the unchanged, write, then commit.

`load_page` may run for several pages at once (it touches only Zendesk and reads hashes);
`commit_page` runs strictly in listing order, and writes the page's id-map rows, dead
letters, run counts and the checkpoint after it in ONE transaction. So the stored
checkpoint never passes a page whose records are not all written or dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bridge.errors import RecordError
from bridge.mapping.model import Mapping
from bridge.outreach.models import Page
from bridge.pipeline.load import PageLoader
from bridge.store import checkpoints, dead_letters, idmap, runs
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.translate import Translated, translate


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What became of every record on a page; `changed` counts what was (or would be) sent."""

    page: Page
    written: list[IdMapRow]
    dead: list[DeadLetter]
    skipped: int
    changed: int


async def load_page(
    mapping: Mapping, pool: asyncpg.Pool, loader: PageLoader | None, page: Page
) -> PageOutcome:
    """Translates and writes one page; with no loader (dry run) it only counts."""
    ready, untranslatable = translate_page(mapping, page)
    async with pool.acquire() as conn:
        known = await idmap.hashes(conn, mapping.name, [t.source_id for t in ready])
    changed = [t for t in ready if known.get(t.source_id) != t.payload_hash]
    skipped = len(ready) - len(changed)
    if loader is None:
        return PageOutcome(page, [], untranslatable, skipped, len(changed))
    result = await loader.write(changed)
    return PageOutcome(page, result.written, result.dead + untranslatable, skipped, len(changed))


async def commit_page(
    pool: asyncpg.Pool,
    mapping: str,
    run_id: int,
    outcome: PageOutcome,
    watermark: datetime | None,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if outcome.written:
            await idmap.upsert_many(conn, mapping, outcome.written)
            await dead_letters.resolve(conn, mapping, [r.source_id for r in outcome.written])
        if outcome.dead:
            await dead_letters.add_many(conn, mapping, run_id, outcome.dead)
        await checkpoints.save(
            conn, mapping, watermark=watermark, resume_url=outcome.page.next_url, run_id=run_id
        )
        await runs.add_counts(conn, run_id, counts(outcome))


def counts(outcome: PageOutcome) -> runs.RunCounts:
    return runs.RunCounts(
        fetched=len(outcome.page.records),
        written=len(outcome.written),
        skipped=outcome.skipped,
        failed=len(outcome.dead),
    )


def translate_page(mapping: Mapping, page: Page) -> tuple[list[Translated], list[DeadLetter]]:
    """Translated records, and dead letters for those that cannot be translated."""
    ready: list[Translated] = []
    dead: list[DeadLetter] = []
    for record in page.records:
        try:
            ready.append(translate(mapping, record))
        except RecordError as exc:
            dead.append(DeadLetter(record.id, None, str(exc), {"attributes": record.attributes}))
    return ready, dead
