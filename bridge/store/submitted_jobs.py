"""Submitted bulk jobs: which items a job Zendesk accepted carries, until their page settles.

A process can die after Zendesk accepted a job and before the page's commit. Zendesk keeps
job statuses for a day (api/zendesk.md, "Bulk jobs"), so the next run can poll that job and
use its results instead of writing the same items again. Invariants:
- a job is recorded right after Zendesk answers its POST, one row per item, with the item's
  position in the job (results come back by index), so a job's rows are never partial;
- the rows of what a page settles are deleted in the page's own transaction, so a row never
  outlives its page's commit: a row still here means its item's outcome was never stored;
- rows older than `MAX_AGE` are ignored (the status may be gone, or expire while polled) and
  pruned by the worker's upkeep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bridge.store.pool import Connection

# Zendesk keeps a status for a day; an hour's margin for the polling and clocks.
MAX_AGE = timedelta(hours=23)

RECORD_SQL = """
INSERT INTO submitted_jobs (job_id, position, mapping, external_id, payload_hash, total)
SELECT $1, t.position - 1, $2, t.external_id, t.payload_hash, cardinality($3::text[])
FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(external_id, payload_hash, position)
ON CONFLICT (job_id, position) DO NOTHING
"""
CARRYING_SQL = """
SELECT job_id, position, external_id, payload_hash, total FROM submitted_jobs
WHERE mapping = $1 AND external_id = ANY($2::text[]) AND submitted_at > now() - $3::interval
ORDER BY submitted_at, job_id, position
"""
SETTLE_SQL = """
DELETE FROM submitted_jobs
WHERE mapping = $1 AND (job_id = ANY($2::text[]) OR external_id = ANY($3::text[]))
"""
PRUNE_SQL = "DELETE FROM submitted_jobs WHERE mapping = $1 AND submitted_at <= now() - $2::interval"


@dataclass(frozen=True, slots=True)
class JobItem:
    """One item of a stored job that a page asked about."""

    job_id: str
    position: int
    external_id: str
    payload_hash: str
    total: int


async def record(
    conn: Connection,
    mapping: str,
    job_id: str,
    external_ids: Sequence[str],
    payload_hashes: Sequence[str],
) -> None:
    """Stores every item of one job, in job order (recording the same job twice is a no-op)."""
    if len(external_ids) != len(payload_hashes):
        raise ValueError("one payload hash per external id")
    await conn.execute(RECORD_SQL, job_id, mapping, list(external_ids), list(payload_hashes))


async def carrying(
    conn: Connection, mapping: str, external_ids: Sequence[str], *, max_age: timedelta = MAX_AGE
) -> list[JobItem]:
    """The items of unexpired stored jobs that carry any of `external_ids` (oldest job first)."""
    if not external_ids:
        return []
    rows = await conn.fetch(CARRYING_SQL, mapping, list(external_ids), max_age)
    return [
        JobItem(r["job_id"], r["position"], r["external_id"], r["payload_hash"], r["total"])
        for r in rows
    ]


async def settle(
    conn: Connection, mapping: str, job_ids: Sequence[str], external_ids: Sequence[str]
) -> None:
    """Forgets the jobs a page submitted and every stored item of the records it settled
    (call inside the page's transaction)."""
    if job_ids or external_ids:
        await conn.execute(SETTLE_SQL, mapping, list(job_ids), list(external_ids))


async def prune(conn: Connection, mapping: str, *, max_age: timedelta = MAX_AGE) -> int:
    """Deletes the mapping's rows too old to poll; returns how many."""
    status = await conn.execute(PRUNE_SQL, mapping, max_age)
    return int(status.split()[-1])
