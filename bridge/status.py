"""`bridge status`: per mapping, where it stands, read from Postgres alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import asyncpg

from bridge.store import checkpoints, dead_letters, idmap, leases, links, runs, verify_state
from bridge.store.pool import Connection


@dataclass(frozen=True, slots=True)
class MappingStatus:
    mapping: str
    watermark: str | None
    resuming: bool
    last_run_status: str | None
    last_run_started: str | None
    last_run_counts: dict[str, int]
    lag_seconds: float | None  # since the end of the last successful run
    records: int
    dead_letters: int
    last_repair: dict[str, object] | None = None  # latest reconcile / reset / retry (audit)
    gone: int = 0  # id-map rows marked gone by reconcile (on_delete: keep)
    held_by: str | None = None  # the process whose lease covers the mapping now (issue 5)
    lease_expires: str | None = None
    parked_links: int = 0  # lookups waiting for their target (store/links.py)
    oldest_parked_seconds: float | None = None  # age of the longest-waiting one
    trigger: str = "poll"  # "webhook + poll" when Outreach webhooks drive it too
    change_to_write_seconds: float | None = None  # how long the latest written change took
    change_to_write_by: str | None = None  # the kind of run that wrote it (webhook, worker, ...)
    last_verify: dict[str, object] | None = None  # the last `bridge verify`'s figures and time

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def collect(
    pool: asyncpg.Pool, names: list[str], webhooks: frozenset[str] = frozenset()
) -> list[MappingStatus]:
    """Every mapping's status; `webhooks` names the mappings Outreach webhooks drive."""
    async with pool.acquire() as conn:
        fresh = await runs.latest_change_to_write(conn)
        stored = {cp.mapping: cp for cp in await checkpoints.load_all(conn)}
        latest = {row.mapping: row for row in await runs.latest_syncs(conn)}
        dead = await dead_letters.count(conn)
        held = {lease.mapping: lease for lease in await leases.current(conn) if not lease.expired}
        parked = await links.summary(conn)
        result = []
        for name in sorted(set(names) | set(stored) | set(latest)):
            row = await _one(conn, name, stored.get(name), latest.get(name), dead.get(name, 0))
            if (lease := held.get(name)) is not None:
                row = replace(row, held_by=lease.holder, lease_expires=lease.expires_at.isoformat())
            if name in webhooks:
                row = replace(row, trigger="webhook + poll")
            if (wrote := fresh.get(name)) is not None:
                row = replace(row, change_to_write_by=wrote[0], change_to_write_seconds=wrote[1])
            if (waiting := parked.get(name)) is not None:
                age = (datetime.now(UTC) - waiting.oldest).total_seconds() if waiting.oldest else None
                row = replace(row, parked_links=waiting.count, oldest_parked_seconds=age)
            result.append(row)
    return result


async def _one(
    conn: Connection,
    name: str,
    cp: checkpoints.StoredCheckpoint | None,
    run: runs.RunRow | None,
    dead: int,
) -> MappingStatus:
    ok_finish = run.finished_at if run and run.status in ("succeeded", "partial") else None
    return MappingStatus(
        mapping=name,
        watermark=cp.watermark.isoformat() if cp and cp.watermark else None,
        resuming=bool(cp and cp.resume_url),
        last_run_status=run.status if run else None,
        last_run_started=run.started_at.isoformat() if run else None,
        last_run_counts=asdict(run.counts) if run else {},
        lag_seconds=(datetime.now(UTC) - ok_finish).total_seconds() if ok_finish else None,
        records=await idmap.count(conn, name),
        dead_letters=dead,
        last_repair=next((r.as_dict() for r in await runs.recent_repairs(conn, name, 1)), None),
        gone=await idmap.gone_count(conn, name),
        last_verify=await _last_verify(conn, name),
    )


async def _last_verify(conn: Connection, name: str) -> dict[str, object] | None:
    state = await verify_state.state(conn, name)
    if state is None or state.finished_at is None or state.report is None:
        return None
    return {**state.report, "finished_at": state.finished_at.isoformat()}
