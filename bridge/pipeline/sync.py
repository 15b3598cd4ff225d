"""One run of one mapping: extract → translate → load, settling pages in order.

Extraction runs ahead of loading through a bounded queue, so the next page is fetched while
this one is written and memory stays flat whatever the record count. A page is settled when
every record on it is written, skipped as unchanged, or dead-lettered; then, in ONE
transaction, its id-map rows, dead letters, run counts and the checkpoint (watermark and the
`links.next` after it) are stored. A process killed at any moment therefore resumes after the
last settled page and rewrites at most the page in flight, whose records are upserts by
external id: nothing is duplicated and nothing is lost.

Backfill and worker both call `sync_mapping`; `--dry-run` translates and compares hashes but
writes nothing anywhere. Asked to `stop` (`pipeline/run.py`), a run fetches no more pages,
drops those fetched but not yet loading, lets the pages already loading finish (their jobs
are in Zendesk's hands), settles them, and ends `interrupted`. Under a lease `fence`, every
bulk job and every commit first proves the lease is still held.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from collections.abc import Mapping as AbcMapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from bridge.errors import RejectedError
from bridge.http.guard import guarding
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.outreach.client import OutreachClient
from bridge.outreach.models import Page
from bridge.pipeline import park
from bridge.pipeline.incremental import Checkpoint, StartPoint, WatermarkTracker, start_point
from bridge.pipeline.load import PageLoader
from bridge.pipeline.page import PageOutcome, change_to_write, commit_page, load_page
from bridge.pipeline.park import Filler
from bridge.pipeline.report import ProgressSink, RunReport
from bridge.pipeline.resolve import Resolver, relationship_query
from bridge.pipeline.run import run_lifecycle
from bridge.pipeline.services import Services
from bridge.pipeline.submitted import JobJournal
from bridge.store import checkpoints, links, runs
from bridge.store.leases import Fence

log = get_logger(__name__)

_DONE = object()


@dataclass(frozen=True, slots=True)
class SyncOptions:
    full: bool = False
    since: datetime | None = None
    dry_run: bool = False
    kind: str = "backfill"
    actor: str | None = None
    overlap: timedelta = timedelta(seconds=60)
    batch_size: int = 100
    job_concurrency: int = 20
    queue_pages: int = 2
    pages_in_flight: int = 3


async def sync_mapping(
    mapping: Mapping,
    services: Services,
    options: SyncOptions,
    progress: ProgressSink | None = None,
    *,
    mappings: AbcMapping[str, Mapping] | None = None,
    stop: asyncio.Event | None = None,
    fence: Fence | None = None,
) -> RunReport:
    """Runs one mapping once, from its checkpoint (or as `options` say), and reports counts.

    Afterwards it fills parked links that this run made fillable: links of `mappings` (all
    mappings, so links waiting on this one are found; default: just this one) whose target
    is this mapping, and this mapping's links to Zendesk users/organizations parked earlier.
    Once `stop` is set it settles what is in flight and ends (no fill); `fence` is the lease
    this run writes under.
    """
    report = RunReport(mapping.name)
    resolver = Resolver(services.zendesk, directory=services.directory)

    async def finish() -> None:
        await _finish(services, options, report)
        if progress is not None:
            progress.run_finished(report)

    async with run_lifecycle(report, finish, mapping=mapping.name):
        async with services.pool.acquire() as conn:
            began = await links.database_now(conn)
        start = await _begin(mapping, services, options, report)
        if services.directory is not None and not options.dry_run:
            await services.directory.refresh_for([mapping])  # from its cursor; cheap when fresh
        # Every write request of this run, retries and fills included, checks the lease first.
        with guarding(fence.check) if fence is not None else nullcontext():
            cut = await _run_pages(
                mapping, services, options, start, report, progress, resolver, stop, fence
            )
            if not options.dry_run and not (stop is not None and stop.is_set()):
                await _fill_after(mapping, services, options, resolver, began, mappings, report.run_id)
        report.status = "interrupted" if cut else "partial" if report.failed else "succeeded"
        if cut:
            log.info("run_stopped", pages=report.pages)
    return report


async def _begin(
    mapping: Mapping, services: Services, options: SyncOptions, report: RunReport
) -> StartPoint:
    async with services.pool.acquire() as conn:
        stored = await checkpoints.load(conn, mapping.name)
        if not options.dry_run:
            await runs.mark_interrupted(conn, mapping.name)
            report.run_id = await runs.start(conn, mapping.name, options.kind, actor=options.actor)
            structlog.contextvars.bind_contextvars(run_id=report.run_id)
    cp = Checkpoint(stored.watermark, stored.resume_url) if stored else None
    start = start_point(cp, full=options.full, since=options.since, overlap=options.overlap)
    report.start_reason = start.reason
    log.info("run_started", start=start.reason, since=start.since and start.since.isoformat())
    return start


async def _finish(services: Services, options: SyncOptions, report: RunReport) -> None:
    report.finished = time.monotonic()
    if options.dry_run or report.run_id is None:
        return
    async with services.pool.acquire() as conn:
        await runs.finish(conn, report.run_id, report.status, error=report.error)


async def _run_pages(
    mapping: Mapping,
    services: Services,
    options: SyncOptions,
    start: StartPoint,
    report: RunReport,
    progress: ProgressSink | None,
    resolver: Resolver,
    stop: asyncio.Event | None,
    fence: Fence | None,
) -> bool:
    """Three stages: fetch pages → load several at once → settle them in listing order.
    Returns True when `stop` cut the listing short."""
    pages: asyncio.Queue[Page | object] = asyncio.Queue(maxsize=options.queue_pages)
    loads: asyncio.Queue[_InFlight | object] = asyncio.Queue(maxsize=options.pages_in_flight)
    loader = None if options.dry_run else PageLoader(
        services.zendesk,
        mapping.target.object,
        batch_size=options.batch_size,
        concurrency=asyncio.Semaphore(options.job_concurrency),
        journal=JobJournal(services.pool, mapping.name),
    )
    tracker = WatermarkTracker(None)
    try:
        async with asyncio.TaskGroup() as group:
            extract = group.create_task(_extract(mapping, services.outreach, start, pages, stop))
            load = group.create_task(
                _load_ahead(mapping, services, loader, resolver, pages, loads, group, stop)
            )
            while (loading := await loads.get()) is not _DONE:
                assert isinstance(loading, _InFlight)
                await _settle(mapping, services, options, tracker, await loading.task, report, fence)
                loading.settled.set()
                if progress is not None:
                    progress.page_settled(report)
    except BaseExceptionGroup as group_error:
        raise _root_cause(group_error) from None
    return extract.result() or load.result()


@dataclass(slots=True)
class _InFlight:
    """A page being loaded, and whether it is settled (its id-map rows committed)."""

    ids: frozenset[str]
    task: asyncio.Task[PageOutcome]
    settled: asyncio.Event = field(default_factory=asyncio.Event)


async def _load_ahead(
    mapping: Mapping,
    services: Services,
    loader: PageLoader | None,
    resolver: Resolver,
    pages: asyncio.Queue[Page | object],
    loads: asyncio.Queue[_InFlight | object],
    group: asyncio.TaskGroup,
    stop: asyncio.Event | None,
) -> bool:
    """Starts loading each page as it arrives; the bounded queue caps pages in flight.
    A page that waited for an overlapping one is dropped if `stop` came meanwhile: nothing
    of it was sent, and the checkpoint stays before it. Returns True when it dropped one."""
    in_flight: deque[_InFlight] = deque()
    while (page := await pages.get()) is not _DONE:
        assert isinstance(page, Page)
        ids = frozenset(record.id for record in page.records)
        await _after_overlapping(in_flight, ids)
        if stop is not None and stop.is_set():
            while await pages.get() is not _DONE:  # lets the extractor finish its put
                pass
            await loads.put(_DONE)
            return True
        task = group.create_task(load_page(mapping, services.pool, loader, page, resolver))
        in_flight.append(loading := _InFlight(ids, task))
        await loads.put(loading)
    await loads.put(_DONE)
    return False


async def _after_overlapping(in_flight: deque[_InFlight], ids: frozenset[str]) -> None:
    """Waits until no page still in flight holds any of `ids`.

    A record edited mid-run is listed again on a later page (the listing is sorted by
    `updatedAt`), so two versions of it can be in flight at once, and Zendesk promises no
    order between jobs: the older could land last while the id map keeps the newer hash.
    The later page is newer, so it starts only once the earlier one is settled; it then
    writes last and compares against the hash the earlier one stored.
    """
    while in_flight and in_flight[0].settled.is_set():  # pages settle in listing order
        in_flight.popleft()
    earlier = [loading for loading in in_flight if not loading.ids.isdisjoint(ids)]
    if earlier:
        shared = ids.intersection(frozenset().union(*(loading.ids for loading in earlier)))
        log.info("page_waits_for_overlap", pages=len(earlier), records=len(shared))
        await asyncio.gather(*(loading.settled.wait() for loading in earlier))


async def _settle(
    mapping: Mapping,
    services: Services,
    options: SyncOptions,
    tracker: WatermarkTracker,
    outcome: PageOutcome,
    report: RunReport,
    fence: Fence | None,
) -> None:
    structlog.contextvars.bind_contextvars(page=report.pages + 1)
    watermark = tracker.observe(outcome.page.records)
    if not options.dry_run:
        assert report.run_id is not None
        if fence is not None:
            fence.check()
        await commit_page(services.pool, mapping.name, report.run_id, outcome, watermark,
                          holder=None if fence is None else fence.holder)  # fmt: skip
        report.change_to_write = change_to_write(outcome, datetime.now(UTC))
    report.pages += 1
    report.fetched += len(outcome.page.records)
    report.written += outcome.changed if options.dry_run else len(outcome.written)
    report.skipped += outcome.skipped
    report.failed += len(outcome.dead)
    report.parked += len(outcome.parked)


async def _fill_after(
    mapping: Mapping,
    services: Services,
    options: SyncOptions,
    resolver: Resolver,
    began: datetime,
    mappings: AbcMapping[str, Mapping] | None,
    run_id: int | None,
) -> None:
    known = await park.unleased(services.pool, {**(mappings or {}), mapping.name: mapping},
                                mine={mapping.name})  # fmt: skip
    filler = Filler(known, services.zendesk, services.pool, resolver=resolver, batch_size=options.batch_size,
                    concurrency=options.job_concurrency, run_id=run_id)  # fmt: skip
    waiting = await filler.on_mappings(mapping.name)
    earlier = await filler.on_zendesk(mapping.name, began)
    if waiting.filled or earlier.filled:
        log.info("parked_links_filled", waiting_on_this=waiting.filled, to_zendesk=earlier.filled)


def _root_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended the run, out of the task group that wrapped it."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    return (real or leaves)[0]


async def _extract(
    mapping: Mapping,
    outreach: OutreachClient,
    start: StartPoint,
    queue: asyncio.Queue[Page | object],
    stop: asyncio.Event | None,
) -> bool:
    """Queues the listing's pages, then _DONE. Returns True when `stop` cut it short: the
    pages fetched but not yet taken for loading are dropped (nothing of theirs was sent)."""
    producer = asyncio.ensure_future(_produce(mapping, outreach, start, queue))
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait({producer, *filter(None, [stopping])}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopping is not None:
            stopping.cancel()
        if not producer.done():
            producer.cancel()
            await asyncio.wait({producer})
    cut = producer.cancelled()
    if cut:
        dropped = 0
        while not queue.empty():
            queue.get_nowait()
            dropped += 1
        log.info("run_stopping", pages_dropped=dropped)
    else:
        producer.result()
    await queue.put(_DONE)
    return cut


async def _produce(
    mapping: Mapping, outreach: OutreachClient, start: StartPoint, queue: asyncio.Queue[Page | object]
) -> None:
    async for page in source_pages(mapping, outreach, start):
        await queue.put(page)


async def source_pages(
    mapping: Mapping, outreach: OutreachClient, start: StartPoint
) -> AsyncIterator[Page]:
    """The listing a run reads from `start` (the dry-run preview reads the same one)."""
    if start.resume_url:
        try:
            async for page in outreach.pages(start.resume_url):
                yield page
            return
        except RejectedError as exc:
            log.warning("resume_url_refused", detail=exc.detail, status=exc.status,
                        since=start.since and start.since.isoformat())
            # Fall through: list again from the watermark; hashes skip what is already written.
    include, fields = relationship_query(mapping)
    url = outreach.list_url(
        mapping.source.type,
        custom_object=mapping.source.custom_object,
        since=start.since,
        filters=mapping.source.query_filters(),
        include=include,
        fields=fields,
    )
    async for page in outreach.pages(url):
        yield page
