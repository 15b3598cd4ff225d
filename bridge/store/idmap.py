"""The id map: Outreach record ↔ Zendesk record, external id, and hash of the last payload.

The pipeline asks for the hashes of a page's records to skip unchanged ones, and writes a
settled page's rows in one statement inside the page's transaction. Invariants:
- an upsert never forgets a known Zendesk id (a None in the new row keeps the stored one);
- an upsert marks the row synced now and no longer gone;
- hashes of rows marked gone are not returned, so such records are written again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from bridge.store.pool import Connection

HASHES_SQL = """
SELECT source_id, payload_hash FROM id_map
WHERE mapping = $1 AND source_id = ANY($2::text[]) AND gone_at IS NULL
"""
# unnest() of parallel arrays: one round trip for a whole page (measured faster than
# executemany; see tests/store/test_idmap.py).
UPSERT_MANY_SQL = """
INSERT INTO id_map (mapping, source_id, zendesk_id, external_id, payload_hash, synced_at, gone_at,
                    written_payload, source_record, source_updated_at)
SELECT $1, t.source_id, t.zendesk_id, t.external_id, t.payload_hash, now(), NULL,
       t.written_payload, t.source_record, t.source_updated_at
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::timestamptz[])
     AS t(source_id, zendesk_id, external_id, payload_hash, written_payload, source_record,
          source_updated_at)
ON CONFLICT (mapping, source_id) DO UPDATE SET
    zendesk_id        = COALESCE(EXCLUDED.zendesk_id, id_map.zendesk_id),
    external_id       = EXCLUDED.external_id,
    payload_hash      = EXCLUDED.payload_hash,
    synced_at         = now(),
    gone_at           = NULL,
    written_payload   = EXCLUDED.written_payload,
    source_record     = EXCLUDED.source_record,
    source_updated_at = EXCLUDED.source_updated_at
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
    # What was sent (`pack_payload`), the Outreach record it came from (`pack`) and its
    # updatedAt; None when not known (rows read back by `lookup`, which leave them out).
    written_payload: bytes | None = None
    source_record: bytes | None = None
    source_updated_at: datetime | None = None


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
        [r.written_payload for r in values],
        [r.source_record for r in values],
        [r.source_updated_at for r in values],
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


# --- reconcile (pipeline/reconcile.py) -------------------------------------------------------
# Rows whose source id is not among the live ids: a hash anti-join over unnest(), so a
# mapping of a million rows is compared in one statement. Rows synced at or after
# `listed_from` are left out: a record created after the listing began may be missing from
# it and yet be live.
MISSING_SQL = """
SELECT m.source_id, m.external_id, m.gone_at IS NOT NULL AS gone
FROM id_map m
LEFT JOIN unnest($2::text[]) AS live(source_id) ON live.source_id = m.source_id
WHERE m.mapping = $1 AND live.source_id IS NULL AND m.synced_at < $3
ORDER BY m.source_id
"""
DELETE_MANY_SQL = "DELETE FROM id_map WHERE mapping = $1 AND source_id = ANY($2::text[])"
MARK_GONE_SQL = """
UPDATE id_map SET gone_at = now()
WHERE mapping = $1 AND source_id = ANY($2::text[]) AND gone_at IS NULL
"""
CLEAR_GONE_SQL = """
UPDATE id_map m SET gone_at = NULL
FROM unnest($2::text[]) AS live(source_id)
WHERE m.mapping = $1 AND m.gone_at IS NOT NULL AND m.source_id = live.source_id
"""
GONE_COUNT_SQL = "SELECT count(*) FROM id_map WHERE mapping = $1 AND gone_at IS NOT NULL"
NOW_SQL = "SELECT now()"
ROWS_FOR_SQL = """
SELECT source_id, external_id, gone_at IS NOT NULL AS gone FROM id_map
WHERE mapping = $1 AND source_id = ANY($2::text[]) ORDER BY source_id
"""


@dataclass(frozen=True, slots=True)
class MissingRow:
    source_id: str
    external_id: str
    gone: bool  # already marked gone by an earlier reconcile


async def database_now(conn: Connection) -> datetime:
    """The database clock (id-map `synced_at` is stamped by it, not by this host's clock)."""
    value: datetime = await conn.fetchval(NOW_SQL)
    return value


async def missing(
    conn: Connection, mapping: str, live_ids: Sequence[str], listed_from: datetime
) -> list[MissingRow]:
    """Rows of `mapping` synced before `listed_from` whose source id is not live."""
    rows = await conn.fetch(MISSING_SQL, mapping, list(live_ids), listed_from)
    return [MissingRow(row["source_id"], row["external_id"], row["gone"]) for row in rows]


async def rows_for(conn: Connection, mapping: str, source_ids: Sequence[str]) -> list[MissingRow]:
    """The id-map rows of `source_ids` that exist, shaped like `missing` returns them."""
    rows = await conn.fetch(ROWS_FOR_SQL, mapping, list(source_ids))
    return [MissingRow(row["source_id"], row["external_id"], row["gone"]) for row in rows]


async def delete_many(conn: Connection, mapping: str, source_ids: Sequence[str]) -> int:
    """Forgets these records (their Zendesk records are deleted); returns how many rows."""
    status = await conn.execute(DELETE_MANY_SQL, mapping, list(source_ids))
    return int(status.split()[-1])


async def mark_gone(conn: Connection, mapping: str, source_ids: Sequence[str]) -> int:
    """Stamps `gone_at` on rows not already gone; returns how many were newly marked."""
    status = await conn.execute(MARK_GONE_SQL, mapping, list(source_ids))
    return int(status.split()[-1])


async def clear_gone(conn: Connection, mapping: str, live_ids: Sequence[str]) -> int:
    """Un-marks gone rows whose record is live again; returns how many came back."""
    status = await conn.execute(CLEAR_GONE_SQL, mapping, list(live_ids))
    return int(status.split()[-1])


async def gone_count(conn: Connection, mapping: str) -> int:
    return int(await conn.fetchval(GONE_COUNT_SQL, mapping))


# --- what was written (bridge explain, backfill --dry-run --diff, bridge verify) ------------
# The payload last sent and the source record are kept as canonical JSON, read back only when a
# person or a verify pass asks. One of at least PACK_COMPRESS_FROM bytes is zlib-compressed
# (a third of its size, typically); a smaller one is kept as it is: setting up a compressor
# costs more than the record takes to write (tens of µs against a few for the JSON), and
# Postgres compresses a row past 2 KB itself (TOAST). `unpack` tells the two apart by the
# first byte: `{` for JSON, never the first byte of a zlib stream.
_ENCODER = msgspec.json.Encoder(order="sorted")
PACK_COMPRESS_FROM = 1024
WRITTEN_SQL = """
SELECT source_id, zendesk_id, external_id, written_payload, source_record, source_updated_at,
       synced_at, gone_at, payload_hash
FROM id_map WHERE mapping = $1 AND source_id = ANY($2::text[])
"""
WRITTEN_BY_ZENDESK_ID_SQL = """
SELECT source_id, zendesk_id, external_id, written_payload, source_record, source_updated_at,
       synced_at, gone_at, payload_hash
FROM id_map WHERE mapping = $1 AND zendesk_id = ANY($2::text[])
"""


# zlib's defaults (a 32 KB window, memLevel 8) allocate and clear about 256 KB per call; an
# 8 KB window and memLevel 6 (about 64 KB) compress records as well, several times faster.
_WINDOW_BITS, _MEM_LEVEL = 13, 6


def pack(value: Mapping[str, Any]) -> bytes:
    """The stored form of a JSON object: canonical JSON, zlib-compressed from
    PACK_COMPRESS_FROM bytes."""
    text = _ENCODER.encode(value)
    if len(text) < PACK_COMPRESS_FROM:
        return text
    compressor = zlib.compressobj(1, zlib.DEFLATED, _WINDOW_BITS, _MEM_LEVEL)
    return compressor.compress(text) + compressor.flush()


def unpack(packed: bytes) -> dict[str, Any]:
    """The JSON object `pack` stored."""
    value = msgspec.json.decode(packed if packed[:1] == b"{" else zlib.decompress(packed))
    if not isinstance(value, dict):
        raise ValueError("a stored payload is not a JSON object")
    return value


def pack_payload(name: str, fields: Mapping[str, Any]) -> bytes:
    """The stored form of a payload sent to Zendesk: `{"name", "fields"}`."""
    return pack({"name": name, "fields": fields})


@dataclass(frozen=True, slots=True)
class WrittenRecord:
    """What bridge last wrote for a record, as the id map keeps it."""

    source_id: str
    zendesk_id: str | None
    external_id: str
    payload: dict[str, Any] | None  # {"name", "fields"}; None: written before payloads were kept
    source: dict[str, Any] | None  # the Outreach record as read for that write, or None
    source_updated_at: datetime | None
    synced_at: datetime
    gone_at: datetime | None
    payload_hash: str = ""  # the hash `hashes` gives (which leaves out rows marked gone)


def _written(row: asyncpg.Record) -> WrittenRecord:
    packed, source = row["written_payload"], row["source_record"]
    return WrittenRecord(
        row["source_id"],
        row["zendesk_id"],
        row["external_id"],
        unpack(packed) if packed is not None else None,
        unpack(source) if source is not None else None,
        row["source_updated_at"],
        row["synced_at"],
        row["gone_at"],
        row["payload_hash"],
    )


async def written(conn: Connection, mapping: str, source_ids: Sequence[str]) -> dict[str, WrittenRecord]:
    """source_id → what was last written for it, for the ids the map knows."""
    rows = await conn.fetch(WRITTEN_SQL, mapping, list(source_ids))
    return {row["source_id"]: _written(row) for row in rows}


async def written_by_zendesk_id(
    conn: Connection, mapping: str, zendesk_ids: Sequence[str]
) -> dict[str, WrittenRecord]:
    """Zendesk record id → what was last written to it."""
    rows = await conn.fetch(WRITTEN_BY_ZENDESK_ID_SQL, mapping, list(zendesk_ids))
    return {row["zendesk_id"]: _written(row) for row in rows}


PAYLOADS_FOR_UPDATE_SQL = """
SELECT source_id, written_payload FROM id_map
WHERE mapping = $1 AND source_id = ANY($2::text[]) AND written_payload IS NOT NULL
FOR UPDATE
"""
SET_PAYLOADS_SQL = """
UPDATE id_map m SET written_payload = t.written_payload
FROM unnest($2::text[], $3::bytea[]) AS t(source_id, written_payload)
WHERE m.mapping = $1 AND m.source_id = t.source_id
"""


async def set_written_fields(
    conn: Connection, mapping: str, values: Mapping[str, Mapping[str, Any]]
) -> None:
    """Folds fields set later by an update (a link filled) into each record's payload last
    written, so that what bridge says it wrote stays what Zendesk holds (call inside the
    transaction that records the update). Rows without a kept payload are left as they are."""
    if not values:
        return
    rows = await conn.fetch(PAYLOADS_FOR_UPDATE_SQL, mapping, list(values))
    ids, packed = [], []
    for row in rows:
        payload = unpack(row["written_payload"])
        payload["fields"] = {**payload.get("fields", {}), **values[row["source_id"]]}
        ids.append(row["source_id"])
        packed.append(pack(payload))
    if ids:
        await conn.execute(SET_PAYLOADS_SQL, mapping, ids, packed)
