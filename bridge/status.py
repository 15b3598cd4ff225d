"""`bridge status`: per mapping, where it stands, read from Postgres alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

from bridge.store import checkpoints, dead_letters, idmap, runs
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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def collect(pool: asyncpg.Pool, names: list[str]) -> list[MappingStatus]:
    async with pool.acquire() as conn:
        stored = {cp.mapping: cp for cp in await checkpoints.load_all(conn)}
        latest = {row.mapping: row for row in await runs.latest(conn)}
        dead = await dead_letters.count(conn)
        result = []
        for name in sorted(set(names) | set(stored) | set(latest)):
            result.append(
                await _one(conn, name, stored.get(name), latest.get(name), dead.get(name, 0))
            )
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
    )
