"""The per-record changelog: one compact row for each record a run touched, and what it did.

It answers "what happened to this record, and when" (`bridge explain`) from bridge's own
state. Rows are written with one statement per page inside the page's transaction, so the
changelog never claims a write that did not settle; they are pruned by age in batches, on a
table no run locks, so pruning never holds up a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

import asyncpg

from bridge.store.pool import Connection

Action = Literal[
    "created",
    "updated",
    "skipped_unchanged",
    "dead_lettered",
    "parked_link",
    "filled_link",
    "deleted",
    "marked_gone",
]
ACTIONS: tuple[str, ...] = get_args(Action)
DEFAULT_RETENTION = timedelta(days=30)
PRUNE_BATCH = 10_000

ADD_MANY_SQL = """
INSERT INTO record_changelog
    (mapping, source_id, run_id, action, source_updated_at, zendesk_job_id, item_result, detail)
SELECT $1, t.source_id, $2, t.action, t.source_updated_at, t.zendesk_job_id, t.item_result, t.detail
FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
     AS t(source_id, action, source_updated_at, zendesk_job_id, item_result, detail)
"""
FOR_RECORD_SQL = """
SELECT source_id, run_id, at, action, source_updated_at, zendesk_job_id, item_result, detail
FROM record_changelog
WHERE mapping = $1 AND source_id = $2
ORDER BY id DESC
LIMIT $3
"""
LAST_READ_SQL = """
SELECT source_id, run_id, at, action, source_updated_at, zendesk_job_id, item_result, detail
FROM record_changelog
WHERE mapping = $1 AND source_id = $2 AND source_updated_at IS NOT NULL
ORDER BY id DESC
LIMIT 1
"""
# A bounded batch per statement keeps each delete's locks and WAL small; rows are only
# ever inserted, so deleting old ones never waits on a run's page commit.
PRUNE_SQL = """
DELETE FROM record_changelog
WHERE id IN (SELECT id FROM record_changelog
             WHERE at < $1 AND ($3::text IS NULL OR mapping = $3) LIMIT $2)
"""


@dataclass(frozen=True, slots=True)
class Change:
    """What a run did to one record (`mapping` and `run_id` are the page's)."""

    source_id: str
    action: Action
    source_updated_at: datetime | None = None  # the version read, when the run read one
    zendesk_job_id: str | None = None
    item_result: str | None = None  # the Zendesk record id written, or the item's error
    detail: str | None = None  # e.g. the lookup field parked or filled


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored changelog row."""

    run_id: int | None
    at: datetime
    change: Change


def _entry(row: asyncpg.Record) -> Entry:
    change = Change(
        row["source_id"],
        row["action"],
        row["source_updated_at"],
        row["zendesk_job_id"],
        row["item_result"],
        row["detail"],
    )
    return Entry(row["run_id"], row["at"], change)


async def add_many(
    conn: Connection, mapping: str, run_id: int | None, changes: Sequence[Change]
) -> None:
    """Records a page's changes in one statement (call inside the page's transaction)."""
    if not changes:
        return
    await conn.execute(
        ADD_MANY_SQL,
        mapping,
        run_id,
        [c.source_id for c in changes],
        [c.action for c in changes],
        [c.source_updated_at for c in changes],
        [c.zendesk_job_id for c in changes],
        [c.item_result for c in changes],
        [c.detail for c in changes],
    )


async def for_record(conn: Connection, mapping: str, source_id: str, limit: int = 20) -> list[Entry]:
    """The record's most recent changelog rows, newest first."""
    rows = await conn.fetch(FOR_RECORD_SQL, mapping, source_id, limit)
    return [_entry(row) for row in rows]


async def last_read(conn: Connection, mapping: str, source_id: str) -> Entry | None:
    """The newest row made by a run that read the record (it carries the version read)."""
    row = await conn.fetchrow(LAST_READ_SQL, mapping, source_id)
    return _entry(row) if row is not None else None


async def prune(
    conn: Connection, before: datetime, batch: int = PRUNE_BATCH, *, mapping: str | None = None
) -> int:
    """Deletes rows older than `before` (of one `mapping`, or all), `batch` at a time, each
    batch its own statement (call outside a transaction); how many it deleted."""
    deleted = 0
    while True:
        status = await conn.execute(PRUNE_SQL, before, batch, mapping)
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            return deleted
