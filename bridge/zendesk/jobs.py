"""Bulk jobs: the request bodies, waiting for a job to finish, and reading its results back.

A bulk job answers later, through `GET /api/v2/job_statuses/show_many?ids=…` (or `/{id}`),
and its per-item results come in several shapes (api/zendesk.md, "Bulk jobs" and "Result
items"). Invariants kept here: a job carries at most 100 items; every job in flight is polled
in one request per tick; each job's polls back off from `poll_initial`, doubling up to
`poll_max`, and it gives up after `timeout` seconds with a `TransientApiError`; every input item
gets exactly one `ItemResult`, in input order, matched by `index`, else `external_id`, else
by position; an item the job did not report on is a failure, never a silent success, and is
marked `unconfirmed` (as is every item of a job that failed as a whole without a result for
it): only an item's own error says anything about the item.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import structlog

from bridge.errors import ApiError, AuthError, RejectedError, TransientApiError
from bridge.http.transport import Transport
from bridge.redact import redact_text
from bridge.zendesk.models import ItemResult, RecordUpdate, UpsertItem, ZendeskRecordId
from bridge.zendesk.wire import (
    API,
    JobResult,
    JobStatus,
    JobStatusEnvelope,
    JobStatusesEnvelope,
    parse_answer,
)

MAX_JOB_ITEMS = 100
SHOW_MANY_IDS = 100  # ids one `job_statuses/show_many` request takes
UPSERT = "create_or_update_by_external_id"
UPDATE = "update"
DELETE = "delete_by_external_id"
_ERROR_LIMIT = 500
_OK_STATUSES = frozenset({"created", "updated", "deleted", "unchanged"})

log = structlog.get_logger(__name__)


def upsert_job_body(items: Sequence[UpsertItem]) -> dict[str, Any]:
    """`external_id` sits at the top level of each item (the spec's example nests it wrongly)."""
    _check_size(len(items))
    records = [
        {"external_id": i.external_id, "name": i.name, "custom_object_fields": dict(i.fields)}
        for i in items
    ]
    return {"job": {"action": UPSERT, "items": records}}


def update_job_body(items: Sequence[RecordUpdate]) -> dict[str, Any]:
    """`update` items carry the record `id`; only the custom_object_fields sent change."""
    _check_size(len(items))
    records = [{"id": str(i.id), "custom_object_fields": dict(i.fields)} for i in items]
    return {"job": {"action": UPDATE, "items": records}}


def delete_job_body(external_ids: Sequence[str]) -> dict[str, Any]:
    _check_size(len(external_ids))
    return {"job": {"action": DELETE, "items": [str(e) for e in external_ids]}}


def stops_every_job(exc: ApiError) -> bool:
    """True for a job error every later job would hit too: refused credentials, access
    revoked (403), or a custom object that does not exist (404 to the job POST; a 404 while
    polling only loses that job)."""
    if isinstance(exc, AuthError):
        return True
    if not isinstance(exc, RejectedError):
        return False
    return exc.status == 403 or (exc.status == 404 and exc.method == "POST")


def refuses_the_batch(exc: ApiError) -> bool:
    """A 4xx to the job POST itself: something in the items, so halving the batch can find it."""
    return (
        isinstance(exc, RejectedError) and exc.method == "POST" and exc.status is not None
        and 400 <= exc.status < 500 and not stops_every_job(exc)
    )  # fmt: skip


def queued(job_id: str) -> JobStatus:
    """A job known only by its id, to be polled like one just submitted."""
    return JobStatus(id=job_id, status="queued")


def _check_size(count: int) -> None:
    if count > MAX_JOB_ITEMS:
        raise ValueError(
            f"a Zendesk bulk job takes at most {MAX_JOB_ITEMS} items, got {count}; "
            "split the batch before calling"
        )


class JobPoller:
    """Waits for bulk jobs to reach `completed` or `failed`, polling every job in flight together.

    One task per poller (so per client) polls with `show_many`, at most `SHOW_MANY_IDS` ids a
    request, so a tick costs one request however many jobs wait: Zendesk's rate limit, not
    the number of jobs, is the bound. Each job keeps its own backoff (due `poll_initial`
    after it was submitted, then doubling up to `poll_max` after each poll of it), and a tick
    asks for every job in flight, as the extra ids cost nothing.

    A due job does not pull a tick at once while more jobs keep arriving: they would share
    it. The tick waits until no job has arrived for `quiet` seconds (the run paused, ended,
    or waits for this poll), or `capacity` jobs wait (the process can start no more), or the
    earliest due job has waited `poll_max` seconds; a job never polled yet is not due sooner
    than `min_tick` after the last tick. So a steady stream of jobs costs about one poll per
    `capacity` jobs (or per `poll_max` seconds), not one per `min_tick`, while a lone job is
    still seen `quiet` seconds after it is due.
    The task ends when no job waits, so a closed client or a cancelled run leaves none
    behind; a cancelled waiter only drops its own job.
    """

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        *,
        poll_initial: float = 0.05,
        poll_max: float = 2.0,
        min_tick: float = 0.0,
        quiet: float = 0.0,
        capacity: int | None = None,
        timeout: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._initial = poll_initial
        self._max = poll_max
        self._min_tick = min_tick
        self._quiet = quiet
        self._capacity = capacity
        self._last_tick = -float("inf")
        self._last_arrival = -float("inf")
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._waiting: dict[str, _Waiting] = {}
        self._task: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None

    async def wait(self, job: JobStatus) -> JobStatus:
        """The job once terminal; the poll's error (`ApiError`) if polling it failed, or a
        `TransientApiError` after `timeout` seconds."""
        started = self._clock()
        if not job.finished:
            job = await self._enqueue(job, started)
        log.info(
            "bulk_job_finished",
            job_id=job.id,
            status=job.status,
            total=job.total,
            seconds=round(self._clock() - started, 3),
        )
        return job

    async def aclose(self) -> None:
        """Stops polling; jobs still waited for fail with a `TransientApiError`."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for entry in list(self._waiting.values()):
            entry.fail(self._closed(entry.job))
        self._waiting.clear()

    async def _enqueue(self, job: JobStatus, started: float) -> JobStatus:
        entry = self._waiting.get(job.id)
        if entry is None:
            entry = _Waiting(job, started, due=started + self._initial, delay=self._initial)
            self._waiting[job.id] = entry
            self._last_arrival = max(self._last_arrival, started)
        answer: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        entry.futures.append(answer)
        self._wake()
        try:
            return await answer
        except asyncio.CancelledError:
            if answer in entry.futures:
                entry.futures.remove(answer)
            if not entry.futures and self._waiting.get(job.id) is entry:
                del self._waiting[job.id]
            if not self._waiting and self._task is not None:
                self._task.cancel()  # nobody left to poll for: no request in flight for nothing
            raise

    def _wake(self) -> None:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.set()
        if self._task is None or self._task.done() or self._task.cancelling():
            # A context of its own: the task outlives the waiter that happened to start it.
            self._task = asyncio.create_task(
                self._run(), name="zendesk-job-poller", context=contextvars.Context()
            )

    async def _run(self) -> None:
        assert self._arrived is not None
        try:
            while self._waiting:
                now = self._clock()
                at = self._next_tick()
                if at > now:
                    self._arrived.clear()
                    await self._nap(at - now, self._arrived)
                    continue
                await self._tick()
        except Exception as exc:  # a bug here must not leave waiters hanging
            log.exception("bulk_job_poller_failed", jobs=len(self._waiting))
            for entry in list(self._waiting.values()):
                entry.fail(exc)
            self._waiting.clear()

    def _next_tick(self) -> float:
        """When to poll: once a job is due, and then only when waiting longer would bring no
        more jobs into the request (none arriving, or no room for more) or a due job has
        waited `poll_max`."""
        due = min(self._due(e) for e in self._waiting.values())
        if self._capacity is not None and len(self._waiting) >= self._capacity:
            return due
        return max(due, min(self._last_arrival + self._quiet, due + self._max))

    def _due(self, entry: _Waiting) -> float:
        """A job never polled yet waits for the next tick at least `min_tick` after the last:
        it may not pull the tick earlier, however young. Polled jobs keep their own backoff."""
        return entry.due if entry.polled else max(entry.due, self._last_tick + self._min_tick)

    async def _nap(self, seconds: float, arrived: asyncio.Event) -> None:
        """Sleeps `seconds`, or less if a job arrives meanwhile (it may be due sooner)."""
        nap = asyncio.ensure_future(self._sleep(seconds))
        news = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait({nap, news}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (nap, news):
                waiting.cancel()
            await asyncio.gather(nap, news, return_exceptions=True)

    async def _tick(self) -> None:
        """Polls the jobs due now, filling each request up with the others in flight."""
        now = self._last_tick = self._clock()
        entries = sorted(self._waiting.values(), key=lambda e: e.due)
        due_count = sum(1 for e in entries if e.due <= now)
        requests = -(-due_count // SHOW_MANY_IDS)
        polled = entries[: requests * SHOW_MANY_IDS]
        chunks = [polled[i : i + SHOW_MANY_IDS] for i in range(0, len(polled), SHOW_MANY_IDS)]
        await asyncio.gather(*(self._poll(chunk) for chunk in chunks))

    async def _poll(self, chunk: list[_Waiting]) -> None:
        try:
            statuses = await self._show_many([e.job.id for e in chunk])
        except Exception as exc:
            for entry in chunk:
                self._settle(entry, error=exc)
            return
        now = self._clock()
        for entry in chunk:
            status = statuses.get(entry.job.id)
            if status is None:  # absent: gone, or never there; the single GET says which
                try:
                    status = await self.fetch(entry.job.id)
                except Exception as exc:
                    self._settle(entry, error=exc)
                    continue
            entry.job = status
            entry.polled = True
            if status.finished:
                self._settle(entry, job=status)
            elif now - entry.started >= self._timeout:
                self._settle(entry, error=self._timed_out(status))
            else:
                entry.due = now + entry.next_delay(self._max)

    def _settle(
        self, entry: _Waiting, *, job: JobStatus | None = None, error: BaseException | None = None
    ) -> None:
        if self._waiting.get(entry.job.id) is entry:
            del self._waiting[entry.job.id]
        if job is not None:
            entry.succeed(job)
        elif error is not None:
            entry.fail(error)

    async def _show_many(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        url = f"{self._base}/api/v2/job_statuses/show_many"
        params = {"ids": ",".join(ids)}
        resp = await self._transport.request("GET", url, params=params, headers=JSON_HEADERS)
        found: dict[str, JobStatus] = {}
        for status in parse_answer(JobStatusesEnvelope, resp).job_statuses:
            if status is not None:
                found.setdefault(status.id, status)
        return found

    async def fetch(self, job_id: str) -> JobStatus:
        """One job alone: for a job `show_many` left out, whose own answer (often a 404, the
        error callers see today for a lost job) says what became of it."""
        url = f"{self._base}/api/v2/job_statuses/{quote(job_id, safe='')}"
        resp = await self._transport.request("GET", url, headers=JSON_HEADERS)
        return parse_answer(JobStatusEnvelope, resp).job_status

    def _timed_out(self, job: JobStatus) -> TransientApiError:
        return TransientApiError(
            f"Zendesk bulk job {job.id} is still {job.status!r} after {self._timeout:g} s; "
            "its items were not confirmed and will be retried on the next run "
            "(raise job_timeout if Zendesk is slow today)",
            api=API,
            method="GET",
            path=f"/api/v2/job_statuses/{job.id}",
        )

    def _closed(self, job: JobStatus) -> TransientApiError:
        return TransientApiError(
            f"the Zendesk client closed while bulk job {job.id} was still {job.status!r}; "
            "its items were not confirmed and will be retried on the next run",
            api=API,
            method="GET",
            path=f"/api/v2/job_statuses/{job.id}",
        )


@dataclass(slots=True)
class _Waiting:
    """One job in flight: its last known status, its backoff, and who waits for it."""

    job: JobStatus
    started: float
    due: float
    delay: float
    futures: list[asyncio.Future[JobStatus]] = field(default_factory=list)
    polled: bool = False

    def next_delay(self, cap: float) -> float:
        self.delay = min(self.delay * 2, cap)
        return self.delay

    def succeed(self, job: JobStatus) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(job)

    def fail(self, error: BaseException) -> None:
        for f in self.futures:
            if not f.done():
                f.set_exception(error)


JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def match_results(job: JobStatus, external_ids: Sequence[str]) -> list[ItemResult]:
    """One `ItemResult` per input item, in input order, from whatever shape the job gave."""
    slots: list[JobResult | None] = [None] * len(external_ids)
    positions: dict[str, list[int]] = {}
    for pos, ext in enumerate(external_ids):
        positions.setdefault(ext, []).append(pos)
    for order, result in enumerate(job.result_items):
        slot = _position(result, order, positions, len(external_ids))
        if slot is not None and slots[slot] is None:
            slots[slot] = result
    return [_item_result(job, ext, res) for ext, res in zip(external_ids, slots)]


def _position(
    result: JobResult, order: int, positions: dict[str, list[int]], count: int
) -> int | None:
    if result.index is not None:
        return result.index if 0 <= result.index < count else None
    if result.external_id is not None:
        free = positions.get(result.external_id, [])
        return free.pop(0) if free else None
    return order if order < count else None


def _item_result(job: JobStatus, external_id: str, result: JobResult | None) -> ItemResult:
    if result is not None and _succeeded(result):
        record_id = ZendeskRecordId(result.id) if result.id else None
        return ItemResult(external_id=external_id, ok=True, record_id=record_id, job_id=job.id)
    if result is not None and (result.error or result.details):
        code = _flatten(result.error)
        return ItemResult(external_id, ok=False, error=_error_text(result), code=code, job_id=job.id)
    if result is not None and job.status != "failed":
        said = f" (status {result.status!r})" if result.status else ""
        return ItemResult(external_id, ok=False, error=f"job {job.id} reported a failure{said}", job_id=job.id)
    if job.status == "failed":
        reason = job.message or "no message given"
        error = f"job {job.id} failed: {redact_text(reason)[:_ERROR_LIMIT]}"
        return ItemResult(external_id, ok=False, error=error, unconfirmed=True, job_id=job.id)
    error = f"no result for this item in job {job.id}"
    return ItemResult(external_id, ok=False, error=error, unconfirmed=True, job_id=job.id)


def _succeeded(result: JobResult) -> bool:
    if result.success is not None:
        return result.success
    if result.error:
        return False
    status = (result.status or "").lower()
    return status in _OK_STATUSES or (not status and result.id is not None)


def _error_text(result: JobResult) -> str:
    parts = [_flatten(result.error), _flatten(result.details)]
    text = redact_text(": ".join(p for p in parts if p) or f"status {result.status}")
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


def _flatten(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flatten(v) for v in value)
    return str(value)
