"""`bridge reset`: forget a mapping's checkpoint so that its next run reads everything.

The id map is kept on purpose: the full re-read that follows compares every record's
payload hash with the one last written and rewrites only what changed, so a reset costs
Outreach reads, not Zendesk writes. The checkpoint is cleared and the reset is recorded
as a `reset` row in the run history (who, when, what the watermark was) in ONE
transaction, so there is never a reset without its audit row.

A sync of the same mapping running at that moment would save its own checkpoint again
after its next page, so the caller holds the mapping's lease (`bridge reset` does; it fails
with the holder's name while a worker or backfill runs the mapping).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bridge.logs import get_logger
from bridge.store import checkpoints, idmap, runs

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ResetReport:
    mapping: str
    run_id: int
    had_checkpoint: bool
    watermark: str | None
    kept_rows: int

    def summary(self) -> str:
        was = f"watermark was {self.watermark}" if self.watermark else "there was no watermark"
        return (
            f"{self.mapping}: checkpoint cleared ({was}); {self.kept_rows} id-map row(s) kept, "
            "so the next run reads everything and rewrites only what changed"
        )


async def reset_mapping(pool: asyncpg.Pool, mapping: str, *, actor: str | None) -> ResetReport:
    async with pool.acquire() as conn, conn.transaction():
        before = await checkpoints.clear(conn, mapping)
        kept = await idmap.count(conn, mapping)
        run_id = await runs.start(conn, mapping, "reset", actor=actor)
        watermark = before.watermark.isoformat() if before and before.watermark else None
        report = ResetReport(mapping, run_id, before is not None, watermark, kept)
        await runs.add_repair_counts(conn, run_id, note=report.summary())
        await runs.finish(conn, run_id, "succeeded")
    log.info("mapping_reset", mapping=mapping, run_id=run_id, watermark=watermark, kept=kept)
    return report
