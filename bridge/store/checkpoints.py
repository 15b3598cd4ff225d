"""Checkpoints: per mapping, the `updatedAt` watermark and the resume URL of an unfinished run.

Invariant kept in SQL, not by callers: the stored watermark never moves backwards. `save`
takes GREATEST of the stored and the new value (NULL-safe: GREATEST ignores NULLs), so a
late or duplicate writer cannot undo progress. Only `reset` (for `--full`) clears it.
Functions take a connection so the pipeline saves the checkpoint in the same transaction
as the id-map rows of the page it settles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bridge.store.pool import Connection

LOAD_SQL = """
SELECT mapping, watermark, resume_url, run_id, updated_at FROM checkpoints WHERE mapping = $1
"""
LOAD_ALL_SQL = """
SELECT mapping, watermark, resume_url, run_id, updated_at FROM checkpoints ORDER BY mapping
"""
SAVE_SQL = """
INSERT INTO checkpoints (mapping, watermark, resume_url, run_id, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (mapping) DO UPDATE SET
    watermark  = GREATEST(checkpoints.watermark, EXCLUDED.watermark),
    resume_url = EXCLUDED.resume_url,
    run_id     = EXCLUDED.run_id,
    updated_at = now()
"""
RESET_SQL = """
UPDATE checkpoints SET watermark = NULL, resume_url = NULL, updated_at = now() WHERE mapping = $1
"""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    mapping: str
    watermark: datetime | None
    resume_url: str | None
    run_id: int | None
    updated_at: datetime | None = None


def _from_row(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(
        mapping=row["mapping"],
        watermark=row["watermark"],
        resume_url=row["resume_url"],
        run_id=row["run_id"],
        updated_at=row["updated_at"],
    )


async def load(conn: Connection, mapping: str) -> StoredCheckpoint | None:
    row = await conn.fetchrow(LOAD_SQL, mapping)
    return None if row is None else _from_row(row)


async def load_all(conn: Connection) -> list[StoredCheckpoint]:
    return [_from_row(row) for row in await conn.fetch(LOAD_ALL_SQL)]


async def save(
    conn: Connection,
    mapping: str,
    *,
    watermark: datetime | None,
    resume_url: str | None,
    run_id: int | None,
) -> None:
    """Upserts; the stored watermark becomes the later of the stored and the given one."""
    await conn.execute(SAVE_SQL, mapping, watermark, resume_url, run_id)


async def reset(conn: Connection, mapping: str) -> None:
    """Forgets the watermark and resume URL, so the next run starts from scratch."""
    await conn.execute(RESET_SQL, mapping)


async def clear(conn: Connection, mapping: str) -> StoredCheckpoint | None:
    """`reset`, returning the checkpoint as it was (None if there was none), for the audit.

    Call inside a transaction so nothing saves a checkpoint between the read and the reset.
    """
    before = await load(conn, mapping)
    if before is not None:
        await reset(conn, mapping)
    return before
