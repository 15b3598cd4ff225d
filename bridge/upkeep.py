"""The worker's upkeep of one mapping between its syncs: dead letters, reconcile, parked links.

On its own tick (BRIDGE_UPKEEP_EVERY_SECONDS, 5 minutes by default) the worker looks after
each mapping, in this order:
1. dead letters that are due (their backoff since the last failure has passed) and have
   failed fewer than BRIDGE_DEAD_LETTER_MAX_ATTEMPTS times are fetched afresh and written
   (`pipeline/redrive.py`); with none due, nothing is requested and no run row is written.
   Letters past the cap stay for `bridge dead-letters` (a human);
2. reconcile, when due (`store/runs.reconcile_due`: BRIDGE_RECONCILE_EVERY_SECONDS, a day by
   default, after the mapping's last reconcile by anyone, or after its first run). The worker
   never forces a deletion: a refused or failed reconcile is logged and tried again when next
   due (its run row counts as the attempt, so a refusal is not repeated every tick);
3. the mapping's parked links to `mapping:` targets that exist now are filled (the periodic
   end-of-pass fill: it catches targets that appeared outside a completed sync of theirs, e.g.
   a run stopped or failed after settling pages, or a dead letter retried);
4. bulk jobs stored for pages that never settled and too old to poll now (Zendesk keeps a
   job's status for a day: `store/submitted_jobs.py`) are forgotten;
5. the mapping's changelog rows older than BRIDGE_CHANGELOG_DAYS (30 by default, by the
   database clock) are pruned, in batches of their own statements: a run only ever inserts
   rows, never waits on old ones, so pruning never holds up a page commit.
Invariants:
- everything here writes only this mapping's Zendesk records and rows, so the mapping's own
  lease (taken by the worker around `run`) is the right one, and it never overlaps a sync of
  the mapping (the scheduler in this process, the lease across processes);
- a stop request is checked between steps: no step starts once the worker is stopping;
- a failed step does not skip the next ones (a letter that keeps failing must not starve
  reconcile): it is logged, and the last error re-raised at the end for the scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog

from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.pipeline.park import Filler
from bridge.pipeline.reconcile import ReconcileOptions, reconcile_mapping
from bridge.pipeline.redrive import RedriveOptions, retry_dead_letters
from bridge.pipeline.services import Services
from bridge.store import changelog, idmap, runs, submitted_jobs

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class UpkeepConfig:
    every_seconds: float
    reconcile_every_seconds: float
    reconcile: ReconcileOptions
    redrive: RedriveOptions
    batch_size: int = 100
    job_concurrency: int = 4
    changelog_retention: timedelta = changelog.DEFAULT_RETENTION


class Upkeep:
    """Runs the upkeep steps of one mapping; the caller holds the mapping's lease."""

    def __init__(
        self, mapping: Mapping, services: Services, config: UpkeepConfig, stopping: asyncio.Event
    ) -> None:
        self.mapping, self.services, self.config, self._stopping = mapping, services, config, stopping

    async def run(self) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("dead_letter_retry", self.retry_dead_letters),
            ("reconcile", self.reconcile_if_due),
            ("fill", self.fill_parked_links),
            ("prune_submitted_jobs", self.prune_submitted_jobs),
            ("prune_changelog", self.prune_changelog),
        ]
        error: Exception | None = None
        structlog.contextvars.bind_contextvars(mapping=self.mapping.name)
        try:
            for name, step in steps:
                if self._stopping.is_set():
                    return
                try:
                    await step()
                except Exception as exc:  # noqa: BLE001 - one step must not starve the next
                    log.error("upkeep_step_failed", step=name, error_type=type(exc).__name__,
                              error=str(exc))  # fmt: skip
                    error = exc
        finally:
            structlog.contextvars.unbind_contextvars("mapping")
        if error is not None:
            raise error

    async def retry_dead_letters(self) -> None:
        report = await retry_dead_letters(self.mapping, self.services, self.config.redrive)
        if report.tried:
            log.info("worker_dead_letters_retried", written=report.written, failed=report.failed,
                     unchanged=report.unchanged, vanished=report.vanished)  # fmt: skip

    async def reconcile_if_due(self) -> None:
        async with self.services.pool.acquire() as conn:
            due = await runs.reconcile_due(
                conn, self.mapping.name, self.config.reconcile_every_seconds
            )
        if not due:
            return
        report = await reconcile_mapping(self.mapping, self.services, self.config.reconcile)
        if report.status in ("refused", "failed"):
            # Never forced: a human checks, then runs `bridge reconcile --force`, or the next
            # scheduled reconcile finds the listing whole again.
            log.warning("worker_reconcile_not_done", status=report.status, error=report.error,
                        missing=report.missing, mapped=report.mapped)  # fmt: skip

    async def fill_parked_links(self) -> None:
        if not self.mapping.depends_on():
            return
        filler = Filler(
            {self.mapping.name: self.mapping}, self.services.zendesk, self.services.pool,
            batch_size=self.config.batch_size, concurrency=self.config.job_concurrency,
        )  # fmt: skip
        report = await filler.on_mappings()
        if report.filled or report.refused:
            log.info("worker_parked_links_filled", filled=report.filled, refused=report.refused)

    async def prune_submitted_jobs(self) -> None:
        async with self.services.pool.acquire() as conn:
            pruned = await submitted_jobs.prune(conn, self.mapping.name)
        if pruned:
            log.info("submitted_jobs_pruned", items=pruned)

    async def prune_changelog(self) -> None:
        async with self.services.pool.acquire() as conn:
            before = await idmap.database_now(conn) - self.config.changelog_retention
            pruned = await changelog.prune(conn, before, mapping=self.mapping.name)
        if pruned:
            log.info("changelog_pruned", rows=pruned)
