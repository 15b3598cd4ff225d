"""Dead letters: records that could not be translated or written, until one is.

Keyed by (mapping, source_id): a record failing again bumps `attempts` and updates the
error and `last_failed_at`, keeping `first_failed_at`. `resolve` deletes the rows of records
a later run has written, in the same transaction as their id-map rows. Errors are stored
redacted; payloads are the translated (target) payload, for inspection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bridge.redact import redact_text
from bridge.store.pool import Connection

ADD_MANY_SQL = """
INSERT INTO dead_letters AS d
    (mapping, source_id, external_id, error, payload, attempts, first_failed_at,
     last_failed_at, run_id)
SELECT $1, t.source_id, t.external_id, t.error, t.payload::jsonb, 1, now(), now(), $2
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])
     AS t(source_id, external_id, error, payload)
ON CONFLICT (mapping, source_id) DO UPDATE SET
    external_id    = coalesce(EXCLUDED.external_id, d.external_id),
    error          = EXCLUDED.error,
    payload        = coalesce(EXCLUDED.payload, d.payload),
    attempts       = d.attempts + 1,
    last_failed_at = now(),
    run_id         = coalesce(EXCLUDED.run_id, d.run_id)
"""
RESOLVE_SQL = "DELETE FROM dead_letters WHERE mapping = $1 AND source_id = ANY($2::text[])"
COUNT_SQL = """
SELECT mapping, count(*) AS n FROM dead_letters
WHERE $1::text IS NULL OR mapping = $1
GROUP BY mapping ORDER BY mapping
"""
LIST_SQL = """
SELECT mapping, source_id, external_id, error, payload::text AS payload, attempts,
       first_failed_at, last_failed_at, run_id
FROM dead_letters
WHERE $1::text IS NULL OR mapping = $1
ORDER BY last_failed_at DESC, mapping, source_id
LIMIT $2
"""
FOR_RECORD_SQL = """
SELECT mapping, source_id, external_id, error, payload::text AS payload, attempts,
       first_failed_at, last_failed_at, run_id
FROM dead_letters WHERE mapping = $1 AND source_id = $2
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_id: str
    external_id: str | None
    error: str
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    mapping: str
    source_id: str
    external_id: str | None
    error: str
    payload: dict[str, Any] | None
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    run_id: int | None


async def add_many(
    conn: Connection,
    mapping: str,
    run_id: int | None,
    letters: Sequence[DeadLetter],
) -> None:
    """Records failures in one statement; a source id given twice counts once (last wins)."""
    latest = list({letter.source_id: letter for letter in letters}.values())
    if not latest:
        return
    await conn.execute(
        ADD_MANY_SQL,
        mapping,
        run_id,
        [letter.source_id for letter in latest],
        [letter.external_id for letter in latest],
        [_storable(redact_text(letter.error)) for letter in latest],
        [None if letter.payload is None else json.dumps(_storable(letter.payload)) for letter in latest],
    )


def _storable(value: Any) -> Any:
    """`value` with the text Postgres refuses (NUL, lone surrogates) replaced, so a record
    carrying it still gets its dead letter instead of failing its page's transaction."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


async def resolve(conn: Connection, mapping: str, source_ids: Sequence[str]) -> int:
    """Deletes the dead letters of records now written; returns how many there were."""
    status = await conn.execute(RESOLVE_SQL, mapping, list(source_ids))
    return int(status.split()[-1])


async def count(conn: Connection, mapping: str | None = None) -> dict[str, int]:
    """mapping → number of dead letters (mappings with none are absent)."""
    return {row["mapping"]: int(row["n"]) for row in await conn.fetch(COUNT_SQL, mapping)}


async def list_letters(
    conn: Connection, mapping: str | None = None, limit: int = 100
) -> list[DeadLetterRow]:
    """The most recently failed first."""
    return [_letter(row) for row in await conn.fetch(LIST_SQL, mapping, limit)]


async def for_record(conn: Connection, mapping: str, source_id: str) -> DeadLetterRow | None:
    """One record's dead letter, if it has one (`bridge explain`)."""
    row = await conn.fetchrow(FOR_RECORD_SQL, mapping, source_id)
    return None if row is None else _letter(row)


# --- retry and purge (pipeline/redrive.py, `bridge dead-letters`) ----------------------------
# A letter is due when its backoff has passed: base * 2^(attempts-1), capped, after the last
# failure. The exponent is capped too, so a letter with many attempts cannot overflow.
RETRYABLE_SQL = """
SELECT mapping, source_id, external_id, error, payload::text AS payload, attempts,
       first_failed_at, last_failed_at, run_id
FROM dead_letters
WHERE mapping = $1
  AND ($2::integer IS NULL OR attempts < $2)
  AND ($3::interval IS NULL OR last_failed_at
       + least($3::interval * power(2, least(attempts - 1, 30)), $4::interval) <= now())
ORDER BY source_id
LIMIT $5
"""
PURGE_SQL = """
DELETE FROM dead_letters
WHERE ($1::text IS NULL OR mapping = $1) AND ($2::text[] IS NULL OR source_id = ANY($2))
"""
MAPPINGS_SQL = "SELECT DISTINCT mapping FROM dead_letters ORDER BY mapping"


async def retryable(
    conn: Connection,
    mapping: str,
    *,
    max_attempts: int | None = None,
    backoff: timedelta | None = None,
    backoff_max: timedelta = timedelta(hours=6),
    limit: int = 10_000,
) -> list[DeadLetterRow]:
    """Letters of `mapping` to retry now, by source id.

    `max_attempts`: leave letters that have failed that often (None: no limit).
    `backoff`: only letters whose backoff since the last failure has passed (None: all).
    """
    rows = await conn.fetch(RETRYABLE_SQL, mapping, max_attempts, backoff, backoff_max, limit)
    return [_letter(row) for row in rows]


async def purge(
    conn: Connection, mapping: str | None = None, source_ids: Sequence[str] | None = None
) -> int:
    """Deletes dead letters (of one mapping, or of these records); returns how many."""
    ids = None if source_ids is None else list(source_ids)
    status = await conn.execute(PURGE_SQL, mapping, ids)
    return int(status.split()[-1])


async def mappings(conn: Connection) -> list[str]:
    """The mappings that have dead letters."""
    return [row["mapping"] for row in await conn.fetch(MAPPINGS_SQL)]


def _letter(row: asyncpg.Record) -> DeadLetterRow:
    return DeadLetterRow(
        mapping=row["mapping"],
        source_id=row["source_id"],
        external_id=row["external_id"],
        error=row["error"],
        payload=None if row["payload"] is None else json.loads(row["payload"]),
        attempts=row["attempts"],
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
        run_id=row["run_id"],
    )
