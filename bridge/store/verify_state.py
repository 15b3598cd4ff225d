"""What `bridge verify` keeps between passes: the export cursor, and the Zendesk records seen.

A verify pass reads the Zendesk side of a mapping as a change stream (the incremental export)
from a stored cursor, so a repeat costs only the pages since. What it saw is kept here, so
every question is answered from Postgres at the end of a pass, however little was read:
- `verify_records` holds every live record of the object (id, external id), and the Zendesk
  name and fields of those that differ from what bridge last wrote (and only of those);
- `verify_state` holds the cursor, whether the records are `complete` (a pass from the
  beginning reached the end of the stream since), and the last report.
Invariants: a page's records and the cursor after it are saved in ONE transaction, so the
cursor never passes records not stored; deletions and unknown records are judged only from
a complete set; `restart` forgets the records and the cursor together.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.store.pool import Connection

STATE_SQL = """
SELECT cursor, complete, source, started_at, finished_at, report::text AS report FROM verify_state WHERE mapping = $1
"""
BEGIN_SQL = """
INSERT INTO verify_state (mapping, source, started_at) VALUES ($1, $2, now())
ON CONFLICT (mapping) DO UPDATE SET source = EXCLUDED.source, started_at = now()
RETURNING started_at
"""
RESTART_SQL = "UPDATE verify_state SET cursor = NULL, complete = false WHERE mapping = $1"
FORGET_RECORDS_SQL = "DELETE FROM verify_records WHERE mapping = $1"
SAVE_CURSOR_SQL = "UPDATE verify_state SET cursor = $2 WHERE mapping = $1"
COMPLETE_SQL = "UPDATE verify_state SET complete = true WHERE mapping = $1"
REPORTS_SQL = "SELECT mapping, report::text AS report FROM verify_state WHERE report IS NOT NULL"
FINISH_SQL = "UPDATE verify_state SET finished_at = now(), report = $2::text::jsonb WHERE mapping = $1"
SEEN_SQL = """
INSERT INTO verify_records (mapping, zendesk_id, external_id, zendesk_record, checked_at)
SELECT $1, t.zendesk_id, t.external_id, t.zendesk_record::jsonb, $5
FROM unnest($2::text[], $3::text[], $4::text[]) AS t(zendesk_id, external_id, zendesk_record)
ON CONFLICT (mapping, zendesk_id) DO UPDATE SET
    external_id = EXCLUDED.external_id, zendesk_record = EXCLUDED.zendesk_record,
    checked_at = EXCLUDED.checked_at
"""
GONE_SQL = "DELETE FROM verify_records WHERE mapping = $1 AND zendesk_id = ANY($2::text[])"
CLEAR_DIFFERS_SQL = """
UPDATE verify_records SET zendesk_record = NULL
WHERE mapping = $1 AND zendesk_id = ANY($2::text[]) AND zendesk_record IS NOT NULL
"""
DIFFERING_SQL = """
SELECT zendesk_id, external_id, zendesk_record::text AS zendesk_record, checked_at FROM verify_records
WHERE mapping = $1 AND zendesk_record IS NOT NULL ORDER BY zendesk_id
"""
# Records whose external id follows the mapping's convention (prefix … suffix) that no id-map
# row of the mapping names.
UNKNOWN_SQL = """
SELECT v.zendesk_id, v.external_id FROM verify_records v
WHERE v.mapping = $1 AND starts_with(v.external_id, $2)
  AND right(v.external_id, $4) = $3
  AND length(v.external_id) > length($2) + $4
  AND NOT EXISTS (SELECT 1 FROM id_map m WHERE m.mapping = $1 AND m.external_id = v.external_id)
ORDER BY v.external_id
"""
# The worker verifies a mapping `every` after the last verify finished (by anyone), or at once
# when it never was; on the database clock, so replicas agree.
DUE_SQL = """
SELECT coalesce(max(finished_at) <= now() - make_interval(secs => $2), true)
FROM verify_state WHERE mapping = $1
"""
# Id-map rows written before the pass began whose Zendesk id is not among the live records.
ABSENT_SQL = """
SELECT m.source_id, m.zendesk_id, m.external_id, m.gone_at IS NOT NULL AS gone FROM id_map m
WHERE m.mapping = $1 AND m.zendesk_id IS NOT NULL
  AND (m.synced_at < $2 OR m.zendesk_id = ANY($3::text[]))
  AND NOT EXISTS (SELECT 1 FROM verify_records v WHERE v.mapping = $1 AND v.zendesk_id = m.zendesk_id)
ORDER BY m.source_id
"""


@dataclass(frozen=True, slots=True)
class VerifyState:
    cursor: str | None
    complete: bool
    source: str | None
    started_at: datetime | None
    finished_at: datetime | None
    report: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Seen:
    """A live record as a page showed it; `differs` holds its Zendesk name and fields when they
    differ from what bridge last wrote, else None; `checked_at`, when they were read (set by
    `differing`; a page's records are stamped by `save_page`)."""

    zendesk_id: str
    external_id: str | None
    differs: dict[str, Any] | None = None
    checked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Absent:
    """An id-map row whose Zendesk record is not live; `gone`: its source is gone from Outreach."""

    source_id: str
    zendesk_id: str
    external_id: str
    gone: bool


async def state(conn: Connection, mapping: str) -> VerifyState | None:
    row = await conn.fetchrow(STATE_SQL, mapping)
    if row is None:
        return None
    report = json.loads(row["report"]) if row["report"] is not None else None
    return VerifyState(row["cursor"], row["complete"], row["source"], row["started_at"],
                       row["finished_at"], report)  # fmt: skip


async def last_reports(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per mapping, the figures of its last verify (for /metrics)."""
    return {row["mapping"]: json.loads(row["report"]) for row in await conn.fetch(REPORTS_SQL)}


async def due(conn: Connection, mapping: str, every_seconds: float) -> bool:
    """Whether the worker should verify `mapping` now."""
    return bool(await conn.fetchval(DUE_SQL, mapping, every_seconds))


async def begin(conn: Connection, mapping: str, source: str) -> datetime:
    """Marks a pass begun now (database clock), reading by `source`; returns that time."""
    started: datetime = await conn.fetchval(BEGIN_SQL, mapping, source)
    return started


async def restart(conn: Connection, mapping: str) -> None:
    """Forgets the cursor and every record seen: the next page read is the first of all."""
    await conn.execute(RESTART_SQL, mapping)
    await conn.execute(FORGET_RECORDS_SQL, mapping)


async def save_page(
    conn: Connection,
    mapping: str,
    seen: Sequence[Seen],
    gone: Sequence[str],
    cursor: str | None,
    checked_at: datetime,
) -> None:
    """Stores a page read after `checked_at`: its live records, its deleted ids, and the
    cursor after it."""
    if seen:
        await conn.execute(
            SEEN_SQL, mapping, [s.zendesk_id for s in seen], [s.external_id for s in seen],
            [json.dumps(s.differs) if s.differs is not None else None for s in seen], checked_at,
        )  # fmt: skip
    if gone:
        await conn.execute(GONE_SQL, mapping, list(gone))
    await conn.execute(SAVE_CURSOR_SQL, mapping, cursor)


async def mark_complete(conn: Connection, mapping: str) -> None:
    await conn.execute(COMPLETE_SQL, mapping)


async def finish(conn: Connection, mapping: str, report: dict[str, Any]) -> None:
    await conn.execute(FINISH_SQL, mapping, json.dumps(report))


async def clear_differs(conn: Connection, mapping: str, zendesk_ids: Sequence[str]) -> None:
    """Forgets the differences of records just rewritten (the next pass reads them again)."""
    await conn.execute(CLEAR_DIFFERS_SQL, mapping, list(zendesk_ids))


async def differing(conn: Connection, mapping: str) -> list[Seen]:
    rows = await conn.fetch(DIFFERING_SQL, mapping)
    return [Seen(r["zendesk_id"], r["external_id"], json.loads(r["zendesk_record"]), r["checked_at"])
            for r in rows]  # fmt: skip


async def unknown(conn: Connection, mapping: str, prefix: str, suffix: str) -> list[tuple[str, str]]:
    """(zendesk id, external id) of live records named by the convention that bridge never wrote."""
    rows = await conn.fetch(UNKNOWN_SQL, mapping, prefix, suffix, len(suffix))
    return [(r["zendesk_id"], r["external_id"]) for r in rows]


async def absent(
    conn: Connection, mapping: str, written_before: datetime, tombstones: Collection[str] = ()
) -> list[Absent]:
    """Id-map rows whose Zendesk record no pass listed: those written before `written_before`
    (later ones the export may not list yet), and any whose tombstone was read."""
    rows = await conn.fetch(ABSENT_SQL, mapping, written_before, list(tombstones))
    return [Absent(r["source_id"], r["zendesk_id"], r["external_id"], r["gone"]) for r in rows]
