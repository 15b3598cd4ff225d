"""Run history: one row per backfill, worker pass or dry run, with running totals.

A run starts as 'running'; its counts are incremented with each settled page, inside that
page's transaction, so the totals always match what was committed. It ends with one of
FINISHED_STATUSES. A process killed mid-run leaves 'running' behind; the next holder of the
mapping calls `mark_interrupted` so history never shows a run that nobody is doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bridge.errors import StoreError
from bridge.redact import redact_text
from bridge.store.pool import Connection

RUNNING = "running"
FINISHED_STATUSES = frozenset({"succeeded", "failed", "partial", "interrupted"})

START_SQL = """
INSERT INTO runs (mapping, kind, status, actor, replica) VALUES ($1, $2, 'running', $3, $4)
RETURNING id
"""
ADD_COUNTS_SQL = """
UPDATE runs SET fetched = fetched + $2, written = written + $3, skipped = skipped + $4,
                failed = failed + $5, parked = parked + $6,
                change_to_write_seconds = coalesce($7, change_to_write_seconds)
WHERE id = $1
"""
FINISH_SQL = "UPDATE runs SET status = $2, error = $3, finished_at = now() WHERE id = $1"
LATEST_SQL = """
SELECT DISTINCT ON (mapping) id, mapping, kind, status, started_at, finished_at, fetched,
       written, skipped, failed, parked, error, actor, replica
FROM runs
WHERE $1::text IS NULL OR mapping = $1
ORDER BY mapping, started_at DESC, id DESC
"""
MARK_INTERRUPTED_SQL = """
UPDATE runs SET status = 'interrupted', finished_at = now(),
                error = coalesce(error, 'the process running it stopped before it finished')
WHERE mapping = $1 AND status = 'running'
"""


@dataclass(frozen=True, slots=True)
class RunCounts:
    fetched: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    parked: int = 0


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    mapping: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: RunCounts
    error: str | None
    actor: str | None
    replica: str | None = None


def _from_row(row: asyncpg.Record) -> RunRow:
    counts = RunCounts(
        row["fetched"], row["written"], row["skipped"], row["failed"], row["parked"]
    )
    return RunRow(
        id=row["id"],
        mapping=row["mapping"],
        kind=row["kind"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        counts=counts,
        error=row["error"],
        actor=row["actor"],
        replica=row["replica"],
    )


async def start(
    conn: Connection,
    mapping: str,
    kind: str,
    *,
    actor: str | None = None,
    replica: str | None = None,
) -> int:
    """Records a new 'running' run and returns its id."""
    run_id = await conn.fetchval(START_SQL, mapping, kind, actor, replica)
    return int(run_id)


async def add_counts(
    conn: Connection, run_id: int, counts: RunCounts, *, change_to_write: float | None = None
) -> None:
    """Adds `counts` to the run's totals (call once per settled page); `change_to_write`, the
    seconds the page's freshest written change took, replaces the run's when given."""
    await conn.execute(
        ADD_COUNTS_SQL,
        run_id,
        counts.fetched,
        counts.written,
        counts.skipped,
        counts.failed,
        counts.parked,
        change_to_write,
    )


async def finish(
    conn: Connection, run_id: int, status: str, *, error: str | None = None
) -> None:
    """Ends the run; `error` is redacted again here as a last line of defence."""
    if status not in FINISHED_STATUSES:
        raise StoreError(
            f"run {run_id} cannot finish as {status!r}; expected one of "
            f"{', '.join(sorted(FINISHED_STATUSES))}"
        )
    await conn.execute(FINISH_SQL, run_id, status, None if error is None else redact_text(error))


async def latest(conn: Connection, mapping: str | None = None) -> list[RunRow]:
    """The most recent run of each mapping (or of the one given), ordered by mapping."""
    return [_from_row(row) for row in await conn.fetch(LATEST_SQL, mapping)]


async def mark_interrupted(conn: Connection, mapping: str) -> int:
    """Marks runs of `mapping` still 'running' as interrupted; returns how many.

    Call it only while holding the mapping's lease: a run another replica is doing is
    'running' too.
    """
    status = await conn.execute(MARK_INTERRUPTED_SQL, mapping)
    return int(status.split()[-1])


# Lag is measured from the end of the last successful sync run.
LAST_SUCCEEDED_SQL = """
SELECT mapping, max(finished_at) AS finished_at FROM runs
WHERE status IN ('succeeded', 'partial') AND kind IN ('backfill', 'worker')
GROUP BY mapping
"""


async def last_succeeded(conn: Connection) -> dict[str, datetime]:
    """Per mapping, when its last successful backfill or worker run ended."""
    return {row["mapping"]: row["finished_at"] for row in await conn.fetch(LAST_SUCCEEDED_SQL)}


# --- repairs: reconcile, reset, dead-letter retry (migration 0003) ---------------------------
# Every deletion and every reset is a run row: who (actor), when (started/finished), how
# many (deleted / gone / the usual counts) and a note in words.
REPAIR_KINDS = ("reconcile", "reset", "dead_letter_retry", "dead_letter_purge", "verify_repair")
ADD_REPAIR_SQL = """
UPDATE runs SET deleted = deleted + $2, gone = gone + $3, note = coalesce($4, note)
WHERE id = $1
"""
RECENT_REPAIRS_SQL = """
SELECT id, mapping, kind, status, started_at, finished_at, fetched, written, skipped, failed,
       parked, error, actor, replica, deleted, gone, note
FROM runs
WHERE kind = ANY($1::text[]) AND ($2::text IS NULL OR mapping = $2)
ORDER BY started_at DESC, id DESC
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class RepairRow:
    """A repair run as the audit shows it."""

    run: RunRow
    deleted: int
    gone: int
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "id": r.id, "mapping": r.mapping, "kind": r.kind, "status": r.status,
            "actor": r.actor, "started_at": r.started_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "fetched": r.counts.fetched, "written": r.counts.written,
            "failed": r.counts.failed, "deleted": self.deleted, "gone": self.gone,
            "note": self.note, "error": r.error,
        }


async def add_repair_counts(
    conn: Connection, run_id: int, *, deleted: int = 0, gone: int = 0, note: str | None = None
) -> None:
    """Adds to what a repair run removed; `note` (if given) replaces the run's note."""
    await conn.execute(ADD_REPAIR_SQL, run_id, deleted, gone, note)


async def recent_repairs(
    conn: Connection, mapping: str | None = None, limit: int = 20
) -> list[RepairRow]:
    """The latest repair runs, newest first (of one mapping, or of all)."""
    rows = await conn.fetch(RECENT_REPAIRS_SQL, list(REPAIR_KINDS), mapping, limit)
    return [RepairRow(_from_row(row), row["deleted"], row["gone"], row["note"]) for row in rows]


LATEST_SYNC_SQL = """
SELECT DISTINCT ON (mapping) id, mapping, kind, status, started_at, finished_at, fetched,
       written, skipped, failed, parked, error, actor, replica
FROM runs
WHERE NOT (kind = ANY($1::text[]))
ORDER BY mapping, started_at DESC, id DESC
"""


async def latest_syncs(conn: Connection) -> list[RunRow]:
    """Like `latest`, leaving out repair runs: a reconcile is not what lag is measured from."""
    return [_from_row(row) for row in await conn.fetch(LATEST_SYNC_SQL, list(REPAIR_KINDS))]


# The worker's daily reconcile (worker_upkeep.py): due `every` after the last reconcile run of
# the mapping (by anyone), or, never reconciled, `every` after its first run of any kind.
# No run at all: not due. On the database clock, so replicas agree.
RECONCILE_DUE_SQL = """
SELECT coalesce(max(started_at) FILTER (WHERE kind = 'reconcile'), min(started_at))
       <= now() - make_interval(secs => $2)
FROM runs WHERE mapping = $1
"""


async def reconcile_due(conn: Connection, mapping: str, every_seconds: float) -> bool:
    """Whether `mapping` is due for a reconcile by the worker."""
    return bool(await conn.fetchval(RECONCILE_DUE_SQL, mapping, every_seconds))


FRESHNESS_SQL = """
SELECT DISTINCT ON (mapping) mapping, kind, change_to_write_seconds AS seconds
FROM runs WHERE change_to_write_seconds IS NOT NULL
ORDER BY mapping, id DESC
"""


async def latest_change_to_write(conn: Connection) -> dict[str, tuple[str, float]]:
    """Per mapping, the kind of the latest run that wrote something and its change-to-write
    seconds (`webhook` for a webhook's targeted sync)."""
    rows = await conn.fetch(FRESHNESS_SQL)
    return {row["mapping"]: (row["kind"], float(row["seconds"])) for row in rows}
