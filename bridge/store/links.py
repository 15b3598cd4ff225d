"""Parked links: lookups whose target did not exist in Zendesk when their record was written.

A record is never held back for a missing target: it is written without that lookup, and the
link is parked here in the page's own transaction, so a settled page's records and their
parked links are stored together. The fill pass (`pipeline/park.py`) reads what has become
fillable and deletes the rows it filled. Invariants:
- one row per (mapping, source_id, field): a record's lookup is parked at most once;
- re-parking the same target keeps `parked_at` (the age shown by `bridge status` is how long
  the link has waited), a new target restarts it;
- a Zendesk id refused for a lookup (`failed_zendesk_id`, its target was deleted in Zendesk)
  is never offered for filling again, so a deleted target does not fail job after job;
- deleting filled rows is conditional on the target they were filled with, so a row re-parked
  meanwhile with another target survives.
The fill queries join `id_map` read-only: the referrer's Zendesk id is what a bulk `update`
needs, and the target's id map row is how a mapping target becomes known. A row's `target`
is `targets.LookupTarget.stored()`: a mapping's name, or a Zendesk kind (`zen:…`) as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bridge import targets
from bridge.store.pool import Connection

PARK_MANY_SQL = """
INSERT INTO parked_links AS p (mapping, source_id, field, target, match, target_type,
                               target_source_id, match_value, failed_zendesk_id, parked_at)
SELECT $1, t.source_id, t.field, t.target, t.match, t.target_type, t.target_source_id,
       t.match_value, t.failed, now()
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[])
     AS t(source_id, field, target, match, target_type, target_source_id, match_value, failed)
ON CONFLICT (mapping, source_id, field) DO UPDATE SET
    parked_at = CASE WHEN p.target = EXCLUDED.target
                      AND p.target_source_id = EXCLUDED.target_source_id
                     THEN p.parked_at ELSE now() END,
    failed_zendesk_id = coalesce(EXCLUDED.failed_zendesk_id,
                                 CASE WHEN p.target = EXCLUDED.target
                                       AND p.target_source_id = EXCLUDED.target_source_id
                                      THEN p.failed_zendesk_id END),
    target = EXCLUDED.target,
    match = EXCLUDED.match,
    target_type = EXCLUDED.target_type,
    target_source_id = EXCLUDED.target_source_id,
    match_value = EXCLUDED.match_value
"""
UNPARK_SQL = """
DELETE FROM parked_links p
USING unnest($2::text[], $3::text[]) AS t(source_id, field)
WHERE p.mapping = $1 AND p.source_id = t.source_id AND p.field = t.field
RETURNING p.source_id, p.field
"""
# Mapping targets that now have a Zendesk id (other than one already refused), for
# referrers that have one too: everything a bulk `update` needs, in one query.
READY_ON_MAPPINGS_SQL = f"""
SELECT p.mapping, p.source_id, p.field, p.target, p.target_source_id,
       r.zendesk_id AS referrer_id, t.zendesk_id AS value
FROM parked_links p
JOIN id_map r ON r.mapping = p.mapping AND r.source_id = p.source_id
             AND r.zendesk_id IS NOT NULL AND r.gone_at IS NULL
JOIN id_map t ON t.mapping = p.target AND t.source_id = p.target_source_id
             AND t.zendesk_id IS NOT NULL AND t.gone_at IS NULL
WHERE p.target NOT LIKE '{targets.ZENDESK_PREFIX}%'
  AND ($1::text IS NULL OR p.target = $1)
  AND t.zendesk_id IS DISTINCT FROM p.failed_zendesk_id
ORDER BY p.mapping, p.source_id, p.field
LIMIT $2
"""
WAITING_ON_ZENDESK_SQL = f"""
SELECT p.mapping, p.source_id, p.field, p.target, p.target_source_id, p.match,
       p.match_value, p.failed_zendesk_id, p.target_type, r.zendesk_id AS referrer_id
FROM parked_links p
JOIN id_map r ON r.mapping = p.mapping AND r.source_id = p.source_id
             AND r.zendesk_id IS NOT NULL AND r.gone_at IS NULL
WHERE p.mapping = $1 AND p.target LIKE '{targets.ZENDESK_PREFIX}%' AND p.match_value IS NOT NULL
  AND p.parked_at < $2
ORDER BY p.source_id, p.field
"""
REMOVE_FILLED_SQL = """
DELETE FROM parked_links p
USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(mapping, source_id, field, target_source_id)
WHERE p.mapping = t.mapping AND p.source_id = t.source_id AND p.field = t.field
  AND p.target_source_id = t.target_source_id
"""
MARK_REFUSED_SQL = """
UPDATE parked_links p SET failed_zendesk_id = t.failed
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS t(mapping, source_id, field, target_source_id, failed)
WHERE p.mapping = t.mapping AND p.source_id = t.source_id AND p.field = t.field
  AND p.target_source_id = t.target_source_id
"""
REFUSED_SQL = """
SELECT DISTINCT target_source_id, failed_zendesk_id FROM parked_links
WHERE target = $1 AND target_source_id = ANY($2::text[]) AND failed_zendesk_id IS NOT NULL
"""
SUMMARY_SQL = """
SELECT mapping, count(*) AS n, min(parked_at) AS oldest FROM parked_links
GROUP BY mapping ORDER BY mapping
"""
NOW_SQL = "SELECT now()"
LIST_SQL = """
SELECT source_id, field, target, match, target_type, target_source_id, match_value,
       failed_zendesk_id, parked_at
FROM parked_links WHERE mapping = $1 ORDER BY source_id, field
"""


@dataclass(frozen=True, slots=True)
class ParkedLink:
    """One lookup waiting for its target; `target` in its stored form (`targets.from_stored`)."""

    source_id: str
    field: str
    target: str
    target_type: str
    target_source_id: str
    match: str | None = None
    match_value: str | None = None
    failed_zendesk_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fillable:
    """A parked link of `mapping`'s record `referrer_id`, and the Zendesk id to fill in (if known)."""

    mapping: str
    source_id: str
    field: str
    target: str
    target_source_id: str
    referrer_id: str
    value: str | None = None
    match: str | None = None
    match_value: str | None = None
    failed_zendesk_id: str | None = None
    target_type: str = ""


@dataclass(frozen=True, slots=True)
class ParkedSummary:
    count: int
    oldest: datetime | None


async def park_many(conn: Connection, mapping: str, links: Sequence[ParkedLink]) -> None:
    latest = {(k.source_id, k.field): k for k in links}  # ON CONFLICT may touch a row once
    if not latest:
        return
    rows = list(latest.values())
    await conn.execute(
        PARK_MANY_SQL, mapping,
        [k.source_id for k in rows], [k.field for k in rows], [k.target for k in rows],
        [k.match for k in rows], [k.target_type for k in rows],
        [k.target_source_id for k in rows], [k.match_value for k in rows],
        [k.failed_zendesk_id for k in rows],
    )  # fmt: skip


async def unpark(conn: Connection, mapping: str, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Drops the parked rows of these (source_id, field) lookups: they are set or cleared now.
    The keys that were parked (and are no longer)."""
    if not keys:
        return set()
    rows = await conn.fetch(UNPARK_SQL, mapping, [k[0] for k in keys], [k[1] for k in keys])
    return {(row["source_id"], row["field"]) for row in rows}


async def ready_on_mappings(
    conn: Connection, target: str | None = None, limit: int = 5000
) -> list[Fillable]:
    """Links to mapping targets (all, or those of mapping `target`) that can be filled now."""
    rows = await conn.fetch(READY_ON_MAPPINGS_SQL, target, limit)
    return [
        Fillable(r["mapping"], r["source_id"], r["field"], r["target"], r["target_source_id"],
                 r["referrer_id"], value=r["value"])
        for r in rows
    ]  # fmt: skip


async def waiting_on_zendesk(
    conn: Connection, mapping: str, parked_before: datetime
) -> list[Fillable]:
    """`mapping`'s links to Zendesk users/organizations parked before a time, to look up again."""
    rows = await conn.fetch(WAITING_ON_ZENDESK_SQL, mapping, parked_before)
    return [
        Fillable(r["mapping"], r["source_id"], r["field"], r["target"], r["target_source_id"],
                 r["referrer_id"], match=r["match"], match_value=r["match_value"],
                 failed_zendesk_id=r["failed_zendesk_id"], target_type=r["target_type"])
        for r in rows
    ]  # fmt: skip


async def remove_filled(conn: Connection, filled: Sequence[Fillable]) -> None:
    if filled:
        await conn.execute(
            REMOVE_FILLED_SQL, [f.mapping for f in filled], [f.source_id for f in filled],
            [f.field for f in filled], [f.target_source_id for f in filled],
        )  # fmt: skip


async def mark_refused(conn: Connection, refused: Sequence[Fillable]) -> None:
    """Remembers that Zendesk refused `value` for these links, so it is not offered again."""
    rows = [f for f in refused if f.value is not None]
    if rows:
        await conn.execute(
            MARK_REFUSED_SQL, [f.mapping for f in rows], [f.source_id for f in rows],
            [f.field for f in rows], [f.target_source_id for f in rows], [f.value for f in rows],
        )  # fmt: skip


async def refused_ids(
    conn: Connection, target: str, target_source_ids: Sequence[str]
) -> set[tuple[str, str]]:
    """(target_source_id, Zendesk id) pairs already refused by Zendesk for target mapping `target`."""
    rows = await conn.fetch(REFUSED_SQL, target, list(target_source_ids))
    return {(r["target_source_id"], r["failed_zendesk_id"]) for r in rows}


async def summary(conn: Connection) -> dict[str, ParkedSummary]:
    """mapping → how many links are parked and since when the oldest waits."""
    rows = await conn.fetch(SUMMARY_SQL)
    return {r["mapping"]: ParkedSummary(int(r["n"]), r["oldest"]) for r in rows}


async def list_parked(conn: Connection, mapping: str) -> list[tuple[ParkedLink, datetime]]:
    rows: list[asyncpg.Record] = await conn.fetch(LIST_SQL, mapping)
    return [
        (ParkedLink(r["source_id"], r["field"], r["target"], r["target_type"], r["target_source_id"],
                    r["match"], r["match_value"], r["failed_zendesk_id"]), r["parked_at"])
        for r in rows
    ]  # fmt: skip


async def database_now(conn: Connection) -> datetime:
    """The database clock, which stamps `parked_at` (so comparisons never mix clocks)."""
    value: datetime = await conn.fetchval(NOW_SQL)
    return value
