"""The Zendesk custom objects client: builds requests, parses answers, runs bulk jobs.

Retries, rate limits and 401 handling live in `bridge.http.transport`; this module only
knows Zendesk's URLs and shapes (api/zendesk.md). Invariants: every answer is validated by a
wire model before anything is read from it; callers get plain dataclasses or dicts; paging
follows `links.next` verbatim, never to another origin and never twice to the same URL
(`pagination.CursorPaginator`, `Listing`, as the Outreach client does);
request bodies come from small pure functions so tests can check them against the spec.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bridge.errors import RejectedError
from bridge.http.transport import Response, Transport
from bridge.zendesk import jobs, pagination, people
from bridge.zendesk.models import (
    ItemResult,
    RecordUpdate,
    UpsertItem,
    ZendeskPerson,
    ZendeskRecord,
    ZendeskRecordId,
)
from bridge.zendesk.wire import (
    FieldEnvelope,
    FieldsPage,
    JobStatusEnvelope,
    LimitAnswer,
    ObjectEnvelope,
    ObjectsList,
    RecordsPage,
    parse_answer,
)

MAX_PAGE_SIZE = 100
MAX_FILTER_IDS = 100


@dataclass(frozen=True, slots=True)
class Limit:
    """A Zendesk custom objects limit: how many are used and how many the plan allows."""

    count: int
    limit: int

    @property
    def left(self) -> int:
        return max(self.limit - self.count, 0)


@dataclass(frozen=True, slots=True)
class ZendeskConfig:
    base_url: str  # e.g. https://acme.zendesk.com
    poll_initial: float = 0.05  # first job-status poll delay, seconds
    poll_max: float = 2.0  # backoff cap between polls; a due job waits no longer for company
    poll_min_tick: float = 0.25  # seconds between two status polls at least: 240/min at most
    # a due job is polled once no other job was submitted for this long, or once the process
    # has `max_jobs_in_flight` jobs waiting: jobs arriving meanwhile share the request
    poll_quiet: float = 0.25
    job_timeout: float = 600.0  # give up on a job after this long -> TransientApiError
    # Zendesk allows 30 queued or running jobs per account (api/zendesk.md); every job this
    # process runs, whatever the mapping or command, waits for one of these slots.
    max_jobs_in_flight: int = 20


def object_body(
    key: str, title: str, title_pluralized: str, description: str = ""
) -> dict[str, Any]:
    obj: dict[str, str] = {"key": key, "title": title, "title_pluralized": title_pluralized}
    if description:
        obj["description"] = description
    return {"custom_object": obj}


def field_body(field: Mapping[str, Any]) -> dict[str, Any]:
    """`field` holds `key`, `title`, `type` and, per type, `custom_field_options` or
    `relationship_target_type` (api/zendesk.md, "Fields")."""
    missing = [k for k in ("key", "title", "type") if not field.get(k)]
    if missing:
        raise ValueError(f"a Zendesk custom object field needs {', '.join(missing)}")
    return {"custom_object_field": dict(field)}


class ZendeskClient:
    """Custom objects, fields and records of one Zendesk account."""

    def __init__(
        self,
        transport: Transport,
        config: ZendeskConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        job_slots: AbstractAsyncContextManager[None] | None = None,
    ) -> None:
        self._transport = transport
        self._base = config.base_url.rstrip("/")
        self._paginator = pagination.CursorPaginator(self._base)
        # held while a job is queued or running: the account's slots shared with every
        # process (http/budget.py SharedSlots), or else this process's own pool
        self._job_slots = job_slots or asyncio.Semaphore(config.max_jobs_in_flight)
        self.job_slots = config.max_jobs_in_flight  # for /metrics: this process's BRIDGE_JOB_CONCURRENCY
        self.jobs_in_flight = 0
        self._poller = jobs.JobPoller(
            transport,
            self._base,
            poll_initial=config.poll_initial,
            poll_max=config.poll_max,
            min_tick=config.poll_min_tick,
            quiet=config.poll_quiet,
            capacity=config.max_jobs_in_flight,
            timeout=config.job_timeout,
            sleep=sleep,
            clock=clock,
        )

    async def aclose(self) -> None:
        """Stops polling bulk jobs; a job still waited for fails with a `TransientApiError`.
        Not needed after the last job returns: the poller stops by itself then."""
        await self._poller.aclose()

    async def upsert_records(
        self,
        object_key: str,
        items: Sequence[UpsertItem],
        *,
        on_submitted: Callable[[str], Awaitable[None]] | None = None,
    ) -> list[ItemResult]:
        """Creates or updates by external id in one bulk job and waits for it; `on_submitted`
        gets the job id as soon as Zendesk accepted the job, before any poll."""
        if not items:
            return []
        body = jobs.upsert_job_body(items)
        ids = [i.external_id for i in items]
        return await self._run_job(object_key, body, ids, on_submitted)

    async def job_results(self, job_id: str, external_ids: Sequence[str]) -> list[ItemResult]:
        """Results of a job submitted earlier (by another process, say), waited for as if just
        submitted; `external_ids` are its items in job order. A job Zendesk no longer knows
        raises the poll's `RejectedError` (404)."""
        async with self._job_slots:
            job = await self._poller.wait(jobs.queued(job_id))
        return jobs.match_results(job, external_ids)

    async def delete_by_external_ids(
        self, object_key: str, external_ids: Sequence[str]
    ) -> list[ItemResult]:
        if not external_ids:
            return []
        body = jobs.delete_job_body(external_ids)
        return await self._run_job(object_key, body, list(external_ids))

    async def update_records(
        self, object_key: str, items: Sequence[RecordUpdate]
    ) -> list[ItemResult]:
        """Changes only the fields sent, by record id, in one bulk `update` job; each result's
        `external_id` holds the record id it answers for."""
        if not items:
            return []
        body = jobs.update_job_body(items)
        return await self._run_job(object_key, body, [str(i.id) for i in items])

    # --- users and organizations: lookup targets (bridge.zendesk.people) ---------------------
    async def users_by_external_ids(self, external_ids: Sequence[str]) -> list[ZendeskPerson]:
        return await people.show_many(self._send, self._base, "users", external_ids=external_ids)

    async def users_by_ids(self, ids: Sequence[str]) -> list[ZendeskPerson]:
        return await people.show_many(self._send, self._base, "users", ids=ids)

    async def organizations_by_external_ids(
        self, external_ids: Sequence[str]
    ) -> list[ZendeskPerson]:
        return await people.show_many(
            self._send, self._base, "organizations", external_ids=external_ids
        )

    async def organizations_by_ids(self, ids: Sequence[str]) -> list[ZendeskPerson]:
        return await people.show_many(self._send, self._base, "organizations", ids=ids)

    async def users_by_email(self, email: str) -> list[ZendeskPerson]:
        return await people.search_users(self._send, self._base, "email", email)

    async def users_by_name(self, name: str) -> list[ZendeskPerson]:
        return await people.search_users(self._send, self._base, "name", name)

    async def organizations_by_name(self, name: str) -> list[ZendeskPerson]:
        return await people.search_organizations(self._send, self._base, name)

    async def _run_job(
        self,
        object_key: str,
        body: dict[str, Any],
        external_ids: list[str],
        on_submitted: Callable[[str], Awaitable[None]] | None = None,
    ) -> list[ItemResult]:
        async with self._job_slots:
            self.jobs_in_flight += 1
            try:
                resp = await self._send("POST", f"{self._object_url(object_key)}/jobs", json=body)
                job = parse_answer(JobStatusEnvelope, resp).job_status
                if on_submitted is not None:
                    await on_submitted(job.id)
                job = await self._poller.wait(job)
            finally:
                self.jobs_in_flight -= 1
        return jobs.match_results(job, external_ids)

    async def list_records(
        self, object_key: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[ZendeskRecord]:
        params = {"page[size]": str(min(max(page_size, 1), MAX_PAGE_SIZE))}
        async for record in self._records(object_key, params):
            yield record

    async def records_by_external_ids(
        self, object_key: str, external_ids: Sequence[str]
    ) -> list[ZendeskRecord]:
        """Records whose external id is listed; unknown ids are simply absent."""
        for ext in external_ids:
            if "," in ext:
                raise ValueError(
                    f"external id {ext!r} contains a comma, which filter[external_ids] "
                    "cannot express; look it up another way"
                )
        found: list[ZendeskRecord] = []
        for start in range(0, len(external_ids), MAX_FILTER_IDS):
            chunk = external_ids[start : start + MAX_FILTER_IDS]
            params = {"filter[external_ids]": ",".join(chunk), "page[size]": str(MAX_PAGE_SIZE)}
            found.extend([r async for r in self._records(object_key, params)])
        return found

    async def _records(
        self, object_key: str, params: dict[str, str]
    ) -> AsyncIterator[ZendeskRecord]:
        start = f"{self._object_url(object_key)}/records"
        listing = self._paginator.listing(start)
        url: str | None = start
        query: dict[str, str] | None = params
        while url is not None:
            resp = await self._send("GET", url, params=query)
            page = parse_answer(RecordsPage, resp)
            for wire in page.custom_object_records:
                yield ZendeskRecord(
                    id=ZendeskRecordId(wire.id),
                    external_id=wire.external_id,
                    name=wire.name,
                    fields=dict(wire.custom_object_fields or {}),
                    updated_at=wire.updated_at,
                )
            url = listing.next_url(resp.url, resp.json())
            query = None  # links.next already carries every parameter

    async def get_object(self, key: str) -> dict[str, Any] | None:
        try:
            resp = await self._send("GET", self._object_url(key))
        except RejectedError as exc:
            if exc.status == 404:
                return None
            raise
        return parse_answer(ObjectEnvelope, resp).custom_object

    async def create_object(
        self, key: str, title: str, title_pluralized: str, description: str = ""
    ) -> dict[str, Any]:
        body = object_body(key, title, title_pluralized, description)
        resp = await self._send("POST", f"{self._base}/api/v2/custom_objects", json=body)
        return parse_answer(ObjectEnvelope, resp).custom_object

    async def list_objects(self) -> list[dict[str, Any]]:
        """Every custom object of the account (the endpoint is not paginated)."""
        resp = await self._send("GET", f"{self._base}/api/v2/custom_objects")
        return list(parse_answer(ObjectsList, resp).custom_objects)

    async def object_limit(self) -> Limit:
        """Custom objects used and allowed by the plan (3, 5, 30 or 50)."""
        return await self._limit(f"{self._base}/api/v2/custom_objects/limits/object_limit")

    async def record_limit(self) -> Limit:
        """Custom object records used and allowed, across the account."""
        return await self._limit(f"{self._base}/api/v2/custom_objects/limits/record_limit")

    async def field_limit(self, key: str) -> Limit:
        """Fields of one object used and allowed (standard fields not counted)."""
        return await self._limit(f"{self._object_url(key)}/limits/field_limit")

    async def _limit(self, url: str) -> Limit:
        answer = parse_answer(LimitAnswer, await self._send("GET", url))
        return Limit(count=answer.count, limit=answer.limit)

    async def list_fields(self, key: str) -> list[dict[str, Any]]:
        start = f"{self._object_url(key)}/fields"
        listing = self._paginator.listing(start)
        url: str | None = start
        fields: list[dict[str, Any]] = []
        while url is not None:
            resp = await self._send("GET", url)
            fields.extend(parse_answer(FieldsPage, resp).custom_object_fields)
            url = listing.next_url(resp.url, resp.json())
        return fields

    async def create_field(self, key: str, field: Mapping[str, Any]) -> dict[str, Any]:
        resp = await self._send("POST", f"{self._object_url(key)}/fields", json=field_body(field))
        return parse_answer(FieldEnvelope, resp).custom_object_field

    def _object_url(self, key: str) -> str:
        return f"{self._base}/api/v2/custom_objects/{quote(key, safe='')}"

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        return await self._transport.request(
            method, url, json=json, params=params, headers=jobs.JSON_HEADERS
        )
