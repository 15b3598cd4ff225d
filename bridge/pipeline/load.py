"""Loading one page into Zendesk: bulk jobs of ≤ 100 items, run a few at a time.

Every item comes back either written (an id-map row to store) or failed (a dead letter that
keeps the API's error text). What fails, and what is done about it:
- an item error: that item is dead-lettered with it;
- a batch refused whole (a 4xx to the job POST, because of one bad item): the batch is
  halved until the refused items stand alone; only they are dead-lettered, with the API's
  error, and the rest land;
- a job that fails as a whole (status `failed`, or submitting or polling it fails after the
  transport's own retries): its unconfirmed items are sent again, a bounded number of times
  with backoff, then dead-lettered; a job failure says nothing about any item or lookup;
- what every later record would hit too (credentials refused, the custom object missing,
  access revoked: `stops_the_run`) propagates and ends the run with the checkpoint where
  the last settled page left it.

Lookups (resolved by `pipeline/resolve.py`) go in with the fields. An item whose own error
names one of its lookup fields is written once more without those lookups: a target deleted
in Zendesk costs that lookup (the caller re-parks it), never the record.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from bridge.errors import ApiError, RejectedError
from bridge.logs import get_logger
from bridge.pipeline.snapshot import packed, sent_payload
from bridge.pipeline.submitted import JobJournal, PageJobs, sent_hash
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.translate import Translated
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.jobs import refuses_the_batch, stops_every_job
from bridge.zendesk.models import ItemResult, UpsertItem

log = get_logger(__name__)

T = TypeVar("T")
Lookups = Mapping[str, Mapping[str, str | None]]  # source_id → lookup field → Zendesk id


def stops_the_run(exc: ApiError) -> bool:
    """True for a job error every later job would hit too (`jobs.stops_every_job`)."""
    return stops_every_job(exc)


@dataclass(frozen=True, slots=True)
class JobRetry:
    """How often a job that failed as a whole is sent again, and the wait before each try
    (doubling from `initial` up to `cap`, with jitter in its upper half)."""

    attempts: int = 4
    initial: float = 0.5
    cap: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * 2.0 ** (attempt - 1))
        return base * (0.5 + self.rand() / 2)


async def by_halving(
    items: Sequence[T],
    send: Callable[[Sequence[T]], Awaitable[list[ItemResult]]],
    key: Callable[[T], str],
) -> list[ItemResult]:
    """One result per item from `send`; a batch Zendesk refuses whole is split in halves,
    again and again, so that only the items it refuses fail (with the API's error).

    `send` raises the refusal (a 4xx RejectedError); `stops_the_run` errors propagate.
    """
    try:
        return await send(items)
    except RejectedError as exc:
        if not refuses_the_batch(exc):
            raise
        if len(items) == 1:
            return [ItemResult(key(items[0]), ok=False, error=f"refused by Zendesk: {exc}")]
        half = len(items) // 2
        left, right = await asyncio.gather(
            by_halving(items[:half], send, key), by_halving(items[half:], send, key)
        )
        log.info("bulk_job_split", items=len(items), status=exc.status)
        return [*left, *right]


@dataclass(frozen=True, slots=True)
class LoadResult:
    written: list[IdMapRow]
    dead: list[DeadLetter]
    # (source_id, lookup field) → the Zendesk id Zendesk refused for it; the record itself
    # was written without that lookup (its target is gone from Zendesk: re-park the link)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)  # ids of the jobs submitted for these records
    # source_id → the final result of its item (for the changelog: job id and outcome)
    results: dict[str, ItemResult] = field(default_factory=dict)


class PageLoader:
    """Writes translated records of one mapping to its Zendesk custom object."""

    def __init__(
        self,
        zendesk: ZendeskClient,
        object_key: str,
        *,
        batch_size: int = 100,
        concurrency: asyncio.Semaphore | None = None,
        retry: JobRetry | None = None,
        journal: JobJournal | None = None,
    ) -> None:
        self._zendesk = zendesk
        self._object_key = object_key
        self._batch_size = batch_size
        self._slots = concurrency or asyncio.Semaphore(8)
        self._retry = retry or JobRetry()
        self._journal = journal

    @property
    def zendesk(self) -> ZendeskClient:
        return self._zendesk

    async def write(self, records: Sequence[Translated], lookups: Lookups | None = None) -> LoadResult:
        """Writes `records`, each with its resolved `lookups` (None clears a lookup). With a
        journal, jobs submitted before a restart that carry these records are used first."""
        lookups = lookups or {}
        jobs = self._journal.page() if self._journal is not None else None
        if jobs is not None and records:
            await jobs.look_back(self._zendesk, [
                (t.external_id, sent_hash(t, lookups.get(t.source_id, {}))) for t in records
            ])  # fmt: skip
        batches = [
            records[i : i + self._batch_size] for i in range(0, len(records), self._batch_size)
        ]
        outcomes = await asyncio.gather(*(self._write_batch(b, lookups, jobs) for b in batches))
        written = [row for result in outcomes for row in result.written]
        dead = [letter for result in outcomes for letter in result.dead]
        refused = {k: v for result in outcomes for k, v in result.refused.items()}
        results = {k: v for result in outcomes for k, v in result.results.items()}
        return LoadResult(written, dead, refused, jobs.submitted if jobs is not None else [], results)

    async def _write_batch(
        self, batch: Sequence[Translated], lookups: Lookups, jobs: PageJobs | None
    ) -> LoadResult:
        sent = {t.source_id: dict(lookups.get(t.source_id, {})) for t in batch}
        results = await self._results(batch, sent, jobs)
        written, dead = _split(batch, results, sent)
        retry = [
            t for t, r in zip(batch, results, strict=True)
            if refused_lookups(sent[t.source_id], r)
        ]  # fmt: skip
        by_source = {t.source_id: r for t, r in zip(batch, results, strict=True)}
        if not retry:
            return LoadResult(written, dead, results=by_source)
        return await self._without_refused(retry, by_source, sent, written, dead, jobs)

    async def _without_refused(
        self,
        retry: list[Translated],
        by_source: dict[str, ItemResult],
        sent: dict[str, dict[str, str | None]],
        written: list[IdMapRow],
        dead: list[DeadLetter],
        jobs: PageJobs | None,
    ) -> LoadResult:
        """Writes again, once, the items whose own error named some of their lookups, without
        those lookups: a target deleted in Zendesk must not drop the record, nor fail again
        on every run."""
        refused: dict[tuple[str, str], str] = {}
        second: dict[str, dict[str, str | None]] = {}
        for t in retry:
            values = sent[t.source_id]
            bad = refused_lookups(values, by_source[t.source_id])
            second[t.source_id] = {k: (None if k in bad else v) for k, v in values.items()}
            refused.update({(t.source_id, k): str(values[k]) for k in bad})
        again = await self._results(retry, second, jobs)
        written2, dead2 = _split(retry, again, second)
        retried = {t.source_id for t in retry}
        ok = {row.source_id for row in written2}
        dead = [d for d in dead if d.source_id not in retried] + dead2
        refused = {k: v for k, v in refused.items() if k[0] in ok}
        by_source.update({t.source_id: r for t, r in zip(retry, again, strict=True)})
        return LoadResult(written + written2, dead, refused, results=by_source)

    async def _results(
        self, batch: Sequence[Translated], lookups: Lookups, jobs: PageJobs | None = None
    ) -> list[ItemResult]:
        """One result per item: a job from before a restart carrying it unchanged, else a job
        of ours. Items a job left unconfirmed (it failed as a whole) are sent again, up to
        `JobRetry.attempts` jobs in all, and stay unconfirmed after the last."""
        results: list[ItemResult | None] = [None] * len(batch)
        if jobs is not None:
            for i, t in enumerate(batch):
                results[i] = jobs.earlier_result(t.external_id, sent_hash(t, lookups.get(t.source_id, {})))
        todo = [i for i, result in enumerate(results) if result is None]
        for attempt in range(1, self._retry.attempts + 1):
            if not todo:
                break
            answers = await by_halving([batch[i] for i in todo], lambda b: self._send(b, lookups, jobs),
                                       lambda t: t.external_id)  # fmt: skip
            for i, answer in zip(todo, answers, strict=True):
                results[i] = answer
            todo = [i for i, answer in zip(todo, answers, strict=True) if answer.unconfirmed]
            if not todo or attempt == self._retry.attempts:
                break
            error = results[todo[0]].error  # type: ignore[union-attr]
            log.warning("bulk_job_retried", items=len(todo), attempt=attempt, error=error)
            await self._retry.sleep(self._retry.delay(attempt))
        return [r for r in results if r is not None]

    async def _send(
        self, batch: Sequence[Translated], lookups: Lookups, jobs: PageJobs | None = None
    ) -> list[ItemResult]:
        """The job's per-item results; a job that could not be run or confirmed leaves every
        item unconfirmed. A refusal of the whole batch is raised (for `by_halving`). With
        `jobs`, the job is recorded as soon as Zendesk accepts it."""
        items = [UpsertItem(t.external_id, t.name, {**t.fields, **lookups.get(t.source_id, {})}) for t in batch]
        on_submitted = None
        if jobs is not None:
            carried = [(t.external_id, sent_hash(t, lookups.get(t.source_id, {}))) for t in batch]
            on_submitted = partial(jobs.record, items=carried)
        try:
            async with self._slots:
                return await self._zendesk.upsert_records(self._object_key, items, on_submitted=on_submitted)
        except ApiError as exc:
            if stops_the_run(exc) or refuses_the_batch(exc):
                raise
            return [ItemResult(t.external_id, ok=False, error=str(exc), unconfirmed=True) for t in batch]


def refused_lookups(values: Mapping[str, str | None], result: ItemResult) -> set[str]:
    """The lookup fields an item set (`values`) that its result refuses (`ItemResult.
    refused_fields`): an error that names none, or a job failure, refuses none."""
    return result.refused_fields(k for k, v in values.items() if v is not None)


def _split(
    batch: Sequence[Translated],
    results: Sequence[ItemResult],
    lookups: Mapping[str, Mapping[str, str | None]],
) -> tuple[list[IdMapRow], list[DeadLetter]]:
    written: list[IdMapRow] = []
    dead: list[DeadLetter] = []
    for record, result in zip(batch, results, strict=True):
        if result.ok:
            sent = packed(sent_payload(record, lookups.get(record.source_id)))
            written.append(
                IdMapRow(record.source_id, result.record_id, record.external_id, record.payload_hash, sent)
            )
        else:
            error = result.error or "rejected by Zendesk without a reason"
            if result.unconfirmed:
                error = f"Zendesk did not confirm this write: {error}"
            dead.append(_dead(record, error, lookups.get(record.source_id)))
    return written, dead


def _dead(
    record: Translated, error: str, lookups: Mapping[str, str | None] | None = None
) -> DeadLetter:
    fields = {**record.fields, **(lookups or {})}
    payload = {"external_id": record.external_id, "name": record.name, "fields": fields}
    return DeadLetter(record.source_id, record.external_id, error, payload)
