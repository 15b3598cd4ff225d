"""Zendesk's cursor-based incremental export of one custom object's records, paced to its limit.

`GET /api/v2/incremental/custom_objects/{key}/cursor` (api/zendesk.md, "Incremental exports"):
the first request carries `start_time`, every later one the `after_cursor` of the page before;
up to 1,000 records a page; go on while `meta.has_more`. The last `after_cursor` is kept by the
caller and handed back next time, so a repeat reads only what changed since.

Invariants:
- `start_time` must be more than 60 s ago or Zendesk answers 400 `StartTimeTooRecent`; we
  never send one later than `MIN_START_AGE` seconds before now;
- a deleted record comes back (for 30 days) with its `id` kept and its name, external id and
  every field reading `"[DELETED]"`: it is handed on as an id in `deleted`, never as a record;
- the refusals a caller acts on leave as their own errors: `ExportCursorInvalid` (restart
  from a start time), `ExportUnavailable` (403/404: the account or token has no such export,
  read the record listing instead); anything else stays the transport's error;
- requests go through the same `ExportPacer` as the user and organization exports (one per
  process, `wiring.py`): the limit, 10 a minute, is shared by every incremental export.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bridge.errors import ExportCursorInvalid, ExportUnavailable, RejectedError
from bridge.http.transport import Transport
from bridge.zendesk.exports import MAX_PER_PAGE, ExportPacer
from bridge.zendesk.jobs import JSON_HEADERS
from bridge.zendesk.models import ZendeskRecord, ZendeskRecordId
from bridge.zendesk.wire import API, RecordExportAnswer, RecordWire, parse_answer

DELETED = "[DELETED]"
MIN_START_AGE = 61  # seconds; Zendesk wants start_time more than 60 s ago
UNAVAILABLE_STATUSES = frozenset({403, 404})


@dataclass(frozen=True, slots=True)
class RecordExportPage:
    """One page of an object's export: what changed, oldest change first."""

    object_key: str
    records: list[ZendeskRecord]  # live records as they are now, `updated_at` set
    deleted: list[ZendeskRecordId]  # records deleted (within Zendesk's 30 days of tombstones)
    cursor: str | None  # where the next read starts (after this page); keep it to resume
    end_of_stream: bool  # nothing more to read for now


class RecordExport:
    """Pages of one account's custom object record exports, from a cursor or a start time."""

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        *,
        pacer: ExportPacer | None = None,
        per_page: int = MAX_PER_PAGE,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._pacer = pacer or ExportPacer()
        self._per_page = per_page
        self._wall = wall

    async def pages(
        self,
        object_key: str,
        cursor: str | None = None,
        *,
        start_time: int = 0,
        exclude_deleted: bool = False,
    ) -> AsyncIterator[RecordExportPage]:
        """Every page from `cursor` (or, without one, from `start_time`, Unix seconds, brought
        back to `MIN_START_AGE` seconds ago at the latest) to the present."""
        path = f"/api/v2/incremental/custom_objects/{quote(object_key, safe='')}/cursor"
        while True:
            params = {"per_page": str(self._per_page)}
            if cursor:
                params["cursor"] = cursor
            else:
                params["start_time"] = str(max(min(start_time, int(self._wall()) - MIN_START_AGE), 0))
            if exclude_deleted:
                params["filter[exclude_deleted]"] = "true"
            answer = await self._fetch(object_key, path, params)
            more = answer.meta.has_more if answer.meta is not None else answer.end_of_stream is False
            page = _page(object_key, answer, answer.after_cursor or cursor, not more)
            yield page
            if page.end_of_stream:
                return
            if not answer.after_cursor or answer.after_cursor == cursor:
                raise RejectedError(
                    f"Zendesk's record export of {object_key!r} said it has more but handed back "
                    "no new cursor; stopping to avoid a loop, report it",
                    api=API, method="GET", path=path,
                )  # fmt: skip
            cursor = answer.after_cursor

    async def _fetch(self, object_key: str, path: str, params: dict[str, str]) -> RecordExportAnswer:
        await self._pacer.wait()
        try:
            resp = await self._transport.request("GET", self._base + path, params=params, headers=JSON_HEADERS)
        except RejectedError as exc:
            raise _refusal(exc, object_key, "cursor" in params) from exc
        return parse_answer(RecordExportAnswer, resp)


def _refusal(exc: RejectedError, object_key: str, with_cursor: bool) -> RejectedError:
    """The caller's own error for a refusal it acts on, else the refusal as it was."""
    context: dict[str, Any] = {"api": exc.api, "method": exc.method, "path": exc.path, "status": exc.status, "detail": exc.detail}
    if exc.status in UNAVAILABLE_STATUSES:
        return ExportUnavailable(
            f"Zendesk refused the record export of {object_key!r} (HTTP {exc.status}: {exc.detail}): "
            "the account or token has no incremental export of custom object records, or no such "
            "object; read the records with the cursor listing instead",
            **context,
        )
    # the API's error code opens its detail (wire.error_detail: "InvalidCursor: …")
    if with_cursor and exc.status == 400 and exc.detail.startswith("InvalidCursor"):
        return ExportCursorInvalid(
            f"Zendesk refused the stored cursor of the record export of {object_key!r} "
            f"({exc.detail}); start the export again from a start time",
            **context,
        )
    return exc


def _page(object_key: str, answer: RecordExportAnswer, cursor: str | None, end: bool) -> RecordExportPage:
    records: list[ZendeskRecord] = []
    deleted: list[ZendeskRecordId] = []
    for wire in answer.custom_object_records:
        if _is_tombstone(wire):
            deleted.append(ZendeskRecordId(wire.id))
        else:
            records.append(ZendeskRecord(ZendeskRecordId(wire.id), wire.external_id, wire.name,
                                         dict(wire.custom_object_fields or {}), wire.updated_at))  # fmt: skip
    return RecordExportPage(object_key, records, deleted, cursor, end)


def _is_tombstone(wire: RecordWire) -> bool:
    """A deleted record: its name and external id (when it had one) read "[DELETED]", and so
    does every field (api/zendesk.md); a live record named so keeps its own external id."""
    fields = wire.custom_object_fields or {}
    return (
        wire.name == DELETED
        and wire.external_id in (DELETED, None)
        and all(value in (DELETED, None) for value in fields.values())
    )
