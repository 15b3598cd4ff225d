"""Bulk jobs: the request bodies, waiting for a job to finish, and reading its results back.

A bulk job answers later, through `GET /api/v2/job_statuses/{id}`, and its per-item results
come in several shapes (api/zendesk.md, "Bulk jobs" and "Result items"). Invariants kept
here: a job carries at most 100 items; polling backs off from `poll_initial`, doubling up to
`poll_max`, and gives up after `timeout` seconds with a `TransientApiError`; every input item
gets exactly one `ItemResult`, in input order, matched by `index`, else `external_id`, else
by position; an item the job did not report on is a failure, never a silent success, and is
marked `unconfirmed` (as is every item of a job that failed as a whole without a result for
it): only an item's own error says anything about the item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import structlog

from bridge.errors import TransientApiError
from bridge.http.transport import Transport
from bridge.redact import redact_text
from bridge.zendesk.models import ItemResult, RecordUpdate, UpsertItem, ZendeskRecordId
from bridge.zendesk.wire import API, JobResult, JobStatus, JobStatusEnvelope, parse_answer

MAX_JOB_ITEMS = 100
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


def _check_size(count: int) -> None:
    if count > MAX_JOB_ITEMS:
        raise ValueError(
            f"a Zendesk bulk job takes at most {MAX_JOB_ITEMS} items, got {count}; "
            "split the batch before calling"
        )


class JobPoller:
    """Waits for a bulk job to reach `completed` or `failed`."""

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        *,
        poll_initial: float = 0.05,
        poll_max: float = 2.0,
        timeout: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._initial = poll_initial
        self._max = poll_max
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock

    async def wait(self, job: JobStatus) -> JobStatus:
        started = self._clock()
        delay = self._initial
        while not job.finished:
            if self._clock() - started >= self._timeout:
                raise self._timed_out(job)
            await self._sleep(delay)
            delay = min(delay * 2, self._max)
            job = await self.fetch(job.id)
        log.info(
            "bulk_job_finished",
            job_id=job.id,
            status=job.status,
            total=job.total,
            seconds=round(self._clock() - started, 3),
        )
        return job

    async def fetch(self, job_id: str) -> JobStatus:
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
        return ItemResult(external_id=external_id, ok=True, record_id=record_id)
    if result is not None and (result.error or result.details):
        return ItemResult(external_id, ok=False, error=_error_text(result))
    if result is not None and job.status != "failed":
        said = f" (status {result.status!r})" if result.status else ""
        return ItemResult(external_id, ok=False, error=f"job {job.id} reported a failure{said}")
    if job.status == "failed":
        reason = job.message or "no message given"
        error = f"job {job.id} failed: {redact_text(reason)[:_ERROR_LIMIT]}"
        return ItemResult(external_id, ok=False, error=error, unconfirmed=True)
    error = f"no result for this item in job {job.id}"
    return ItemResult(external_id, ok=False, error=error, unconfirmed=True)


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
