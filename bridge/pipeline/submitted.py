"""Bulk jobs submitted for a page that is not settled yet, and their reuse after a restart.

Every upsert job a run submits is recorded (`store/submitted_jobs.py`) the moment Zendesk
accepts it, and forgotten in its page's commit. A process killed in between leaves the record;
when the next run re-reads that page, each item that a stored job carries with the very same
payload (fields and lookups: `sent_hash`) takes that job's result instead of being sent again,
so a crash costs polls, not writes. Invariants:
- a stored job is only trusted for an item it carries with the same hash; a job Zendesk no
  longer knows (404, expired), that failed, or that left the item unconfirmed, proves nothing,
  and the item is submitted as usual;
- every stored job carrying an item of the page is waited for before the page sends anything:
  a job from before the crash still queued must not land after the newer write of its record
  (Zendesk promises no order between jobs);
- the polls go through the client's batched poller (`job_statuses/show_many`), one request a
  tick for all of them, and only after a crash does a page find anything to poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from bridge.errors import ApiError
from bridge.logs import get_logger
from bridge.store import submitted_jobs
from bridge.store.submitted_jobs import JobItem
from bridge.translate import Translated
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ItemResult

log = get_logger(__name__)


def sent_hash(record: Translated, lookups: Mapping[str, str | None]) -> str:
    """What an upsert item carries: the record's payload hash, and its lookups if any."""
    if not lookups:
        return record.payload_hash
    digest = hashlib.sha256(record.payload_hash.encode())
    digest.update(json.dumps(sorted(lookups.items())).encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class JobJournal:
    """Where one mapping's runs record their jobs; `page()` starts one page's share."""

    pool: asyncpg.Pool
    mapping: str

    def page(self) -> PageJobs:
        return PageJobs(self)


@dataclass(slots=True)
class PageJobs:
    """The jobs one page submitted (to forget at its commit), and the results it may reuse."""

    journal: JobJournal
    submitted: list[str] = field(default_factory=list)
    _earlier: dict[str, tuple[str, ItemResult]] = field(default_factory=dict)

    async def record(self, job_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Stores a job Zendesk just accepted: (external id, sent hash) of its items, in order."""
        self.submitted.append(job_id)
        async with self.journal.pool.acquire() as conn:
            await submitted_jobs.record(conn, self.journal.mapping, job_id,
                                        [e for e, _ in items], [h for _, h in items])  # fmt: skip

    async def look_back(self, zendesk: ZendeskClient, items: Sequence[tuple[str, str]]) -> None:
        """Waits for the stored jobs that carry any of `items` (external id, sent hash) and
        keeps their results for the items they carry unchanged."""
        wanted = dict(items)
        async with self.journal.pool.acquire() as conn:
            stored = await submitted_jobs.carrying(conn, self.journal.mapping, list(wanted))
        jobs: dict[str, list[JobItem]] = {}
        for item in stored:
            jobs.setdefault(item.job_id, []).append(item)
        if not jobs:
            return
        answers = await asyncio.gather(*(_results(zendesk, rows) for rows in jobs.values()))
        for rows, results in zip(jobs.values(), answers, strict=True):
            for row, result in zip(rows, results, strict=True):
                if result is None or result.unconfirmed or wanted[row.external_id] != row.payload_hash:
                    continue
                self._earlier[row.external_id] = (row.payload_hash, result)
        log.info("bulk_jobs_found_after_restart", jobs=len(jobs), items=len(stored),
                 reused=len(self._earlier))  # fmt: skip

    def earlier_result(self, external_id: str, hash_sent: str) -> ItemResult | None:
        """The stored job's result for this item, if that job carried exactly this payload;
        handed out once."""
        found = self._earlier.get(external_id)
        if found is None or found[0] != hash_sent:
            return None
        del self._earlier[external_id]
        return found[1]


async def _results(zendesk: ZendeskClient, rows: list[JobItem]) -> list[ItemResult | None]:
    """The job's result for each of `rows`, or None for all when the job cannot say."""
    slots = [f"\0{position}" for position in range(rows[0].total)]  # items of other pages
    for row in rows:
        slots[row.position] = row.external_id
    try:
        results = await zendesk.job_results(rows[0].job_id, slots)
    except ApiError as exc:  # gone (404, expired) or not answering: submit as usual
        log.info("bulk_job_not_reused", job_id=rows[0].job_id, error=str(exc))
        return [None] * len(rows)
    return [results[row.position] for row in rows]
