"""The id map: Outreach record ↔ Zendesk record, external id, and hash of the last payload.

The pipeline asks for the hashes of a page's records to skip unchanged ones, and writes a
settled page's rows in one statement inside the page's transaction. Invariants:
- an upsert never forgets a known Zendesk id (a None in the new row keeps the stored one);
- an upsert marks the row synced now and no longer gone;
- hashes of rows marked gone are not returned, so such records are written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.store.pool import Connection

HASHES_SQL = """
SELECT source_id, payload_hash FROM id_map
WHERE mapping = $1 AND source_id = ANY($2::text[]) AND gone_at IS NULL
"""
# unnest() of parallel arrays: one round trip for a whole page (measured faster than
# executemany; see tests/store/test_idmap.py).
UPSERT_MANY_SQL = """
INSERT INTO id_map (mapping, source_id, zendesk_id, external_id, payload_hash, synced_at, gone_at)
SELECT $1, t.source_id, t.zendesk_id, t.external_id, t.payload_hash, now(), NULL
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
     AS t(source_id, zendesk_id, external_id, payload_hash)
ON CONFLICT (mapping, source_id) DO UPDATE SET
    zendesk_id   = COALESCE(EXCLUDED.zendesk_id, id_map.zendesk_id),
    external_id  = EXCLUDED.external_id,
    payload_hash = EXCLUDED.payload_hash,
    synced_at    = now(),
    gone_at      = NULL
"""
LOOKUP_SQL = """
SELECT source_id, zendesk_id, external_id, payload_hash FROM id_map
WHERE mapping = $1 AND source_id = ANY($2::text[])
"""
LOOKUP_EXTERNAL_SQL = """
SELECT source_id, zendesk_id, external_id, payload_hash FROM id_map
WHERE mapping = $1 AND external_id = ANY($2::text[])
"""
COUNT_SQL = "SELECT count(*) FROM id_map WHERE mapping = $1"


@dataclass(frozen=True, slots=True)
class IdMapRow:
    source_id: str
    zendesk_id: str | None
    external_id: str
    payload_hash: str


def _from_row(row: asyncpg.Record) -> IdMapRow:
    return IdMapRow(row["source_id"], row["zendesk_id"], row["external_id"], row["payload_hash"])


async def hashes(
    conn: Connection, mapping: str, source_ids: Sequence[str]
) -> dict[str, str]:
    """source_id → payload hash last written, for the ids that have one."""
    rows = await conn.fetch(HASHES_SQL, mapping, list(source_ids))
    return {row["source_id"]: row["payload_hash"] for row in rows}


async def upsert_many(
    conn: Connection, mapping: str, rows: Sequence[IdMapRow]
) -> None:
    """Writes all rows in one statement; for a source id given twice, the last row wins."""
    latest = {row.source_id: row for row in rows}  # ON CONFLICT may touch a row only once
    if not latest:
        return
    values = list(latest.values())
    await conn.execute(
        UPSERT_MANY_SQL,
        mapping,
        [r.source_id for r in values],
        [r.zendesk_id for r in values],
        [r.external_id for r in values],
        [r.payload_hash for r in values],
    )


async def lookup(
    conn: Connection, mapping: str, source_ids: Sequence[str]
) -> dict[str, IdMapRow]:
    rows = await conn.fetch(LOOKUP_SQL, mapping, list(source_ids))
    return {row["source_id"]: _from_row(row) for row in rows}


async def lookup_external(
    conn: Connection, mapping: str, external_ids: Sequence[str]
) -> dict[str, IdMapRow]:
    """external_id → row, for resolving relationships by external id."""
    rows = await conn.fetch(LOOKUP_EXTERNAL_SQL, mapping, list(external_ids))
    return {row["external_id"]: _from_row(row) for row in rows}


async def count(conn: Connection, mapping: str) -> int:
    value = await conn.fetchval(COUNT_SQL, mapping)
    return int(value)
