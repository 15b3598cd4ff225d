"""Dead-letter retry: fetch the records afresh, translate with the current mapping, write them.

A dead letter holds a record that could not be translated or written. Retrying its stored
payload would repeat the old translation, so a retry reads the record again from Outreach
(one list request per up to 1000 ids, `filter[id]=a,b,c`, api/outreach.md "Filters and
sort") and sends it through the same page path as a sync (`pipeline/page.py`: translate,
skip if the id map already holds this payload, bulk upsert). Invariants:

- a letter leaves the table only when its record is written, found unchanged in the id
  map, or no longer listed by Outreach (deleted, or outside the mapping's filter: nothing
  is left to write); otherwise its attempts grow and its error is replaced;
- each chunk's outcome (id-map rows, resolved and failed letters, run counts) is stored in
  ONE transaction; the checkpoint is never touched;
- `max_attempts` and `backoff` select which letters are due (the worker's schedule); the
  CLI retries every letter;
- a retry that tried something is a `dead_letter_retry` row in the run history.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.pipeline import targeted
from bridge.pipeline.load import PageLoader
from bridge.pipeline.report import counts_dict
from bridge.pipeline.run import run_lifecycle
from bridge.pipeline.services import Services
from bridge.store import dead_letters, runs
from bridge.store.dead_letters import DeadLetterRow

log = get_logger(__name__)



@dataclass(frozen=True, slots=True)
class RedriveOptions:
    actor: str | None = None
    max_attempts: int | None = None  # leave letters that failed this often (None: retry all)
    backoff: timedelta | None = None  # only letters whose backoff has passed (None: all)
    backoff_max: timedelta = timedelta(hours=6)
    limit: int = 10_000  # letters per call
    batch_size: int = 100
    job_concurrency: int = 4


@dataclass(slots=True)
class RedriveReport:
    """`written`: landed in Zendesk; `unchanged`: already there; `vanished`: no longer in
    Outreach; `failed`: still dead, attempts bumped."""

    mapping: str
    run_id: int | None = None
    status: str = "succeeded"
    tried: int = 0
    written: int = 0
    unchanged: int = 0
    vanished: int = 0
    failed: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def summary(self) -> str:
        line = (
            f"{self.mapping}: {self.status}; retried {self.tried}, written {self.written}, "
            f"unchanged {self.unchanged}, gone from Outreach {self.vanished}, "
            f"still failing {self.failed}"
        )
        return line + (f"; {self.error}" if self.error else "")

    def as_dict(self) -> dict[str, object]:
        return counts_dict(self)


async def retry_dead_letters(
    mapping: Mapping, services: Services, options: RedriveOptions
) -> RedriveReport:
    """Retries the due dead letters of one mapping; a run row only when there were some."""
    report = RedriveReport(mapping.name)
    async with services.pool.acquire() as conn:
        letters = await dead_letters.retryable(
            conn, mapping.name, max_attempts=options.max_attempts, backoff=options.backoff,
            backoff_max=options.backoff_max, limit=options.limit,
        )
        if not letters:
            return report
        report.run_id = await runs.start(
            conn, mapping.name, "dead_letter_retry", actor=options.actor
        )
    run_id = report.run_id

    async def finish() -> None:
        report.seconds = time.monotonic() - report.started
        await _finish(services, report)
        log.info("dead_letter_retry_finished", **report.as_dict())

    async with run_lifecycle(report, finish, mapping=mapping.name, run_id=run_id):
        loader = PageLoader(
            services.zendesk, mapping.target.object, batch_size=options.batch_size,
            concurrency=asyncio.Semaphore(options.job_concurrency),
        )  # fmt: skip
        wanted = [letter.source_id for letter in letters]
        outcome = await targeted.sync_ids(mapping, services, loader, wanted, run_id)
        report.tried += len(wanted)
        report.written += len(outcome.written)
        report.unchanged += len(outcome.unchanged)
        report.vanished += len(outcome.vanished)
        report.failed += len(outcome.failed)
        report.status = "partial" if report.failed else "succeeded"
    return report


async def _finish(services: Services, report: RedriveReport) -> None:
    if report.run_id is None:
        return
    note = (
        f"retried {report.tried} dead letter(s): {report.written} written, {report.unchanged} "
        f"unchanged, {report.vanished} gone from Outreach, {report.failed} still failing"
    )
    async with services.pool.acquire() as conn:
        await runs.add_repair_counts(conn, report.run_id, note=note)
        await runs.finish(conn, report.run_id, report.status, error=report.error)


async def purge_dead_letters(pool: asyncpg.Pool, mapping: str, *, actor: str | None) -> int:
    """Drops a mapping's dead letters for good, with a `dead_letter_purge` audit row."""
    async with pool.acquire() as conn, conn.transaction():
        purged = await dead_letters.purge(conn, mapping)
        run_id = await runs.start(conn, mapping, "dead_letter_purge", actor=actor)
        await runs.add_counts(conn, run_id, runs.RunCounts(skipped=purged))
        await runs.add_repair_counts(conn, run_id, note=f"purged {purged} dead letter(s)")
        await runs.finish(conn, run_id, "succeeded")
    log.info("dead_letters_purged", mapping=mapping, purged=purged)
    return purged


def letter_dict(letter: DeadLetterRow) -> dict[str, object]:
    """A dead letter for `bridge dead-letters list --json`."""
    return {
        "mapping": letter.mapping, "source_id": letter.source_id,
        "external_id": letter.external_id, "attempts": letter.attempts, "error": letter.error,
        "first_failed_at": letter.first_failed_at.isoformat(),
        "last_failed_at": letter.last_failed_at.isoformat(), "run_id": letter.run_id,
        "payload": letter.payload,
    }
