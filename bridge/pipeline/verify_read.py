"""How `bridge verify` reads a mapping's Zendesk records: the export from a cursor, or a listing.

Both readers hand out `ZendeskPage`s: the live records of the page, the ids of records deleted
since (tombstones), the cursor after the page and whether it reached the end.
- `ExportReader`: the incremental export of custom object records (api/zendesk.md,
  "Incremental exports"), from a stored cursor, so a repeat reads only what changed. A cursor
  Zendesk refuses (400 `InvalidCursor`: invalid or expired) raises `CursorRefused`; an export
  the account does not offer (an error before the first page) raises `ExportUnavailable`.
- `ListingReader`: the fallback, a cursor listing of every record (`page[size]=100`). It has
  no cursor to keep and no tombstones: every pass reads everything, and deletions show as
  records no longer listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from bridge.zendesk.client import MAX_PAGE_SIZE, ZendeskClient
from bridge.zendesk.models import ZendeskRecord
from bridge.zendesk.record_export import RecordExport

EXPORT, LISTING = "export", "listing"


@dataclass(frozen=True, slots=True)
class ZendeskPage:
    live: list[ZendeskRecord]
    deleted: list[str] = field(default_factory=list)  # Zendesk ids
    cursor: str | None = None  # where the next pass starts; None: from the beginning
    end: bool = False  # the page reached the present


class Reader(Protocol):
    source: str

    def pages(self, object_key: str, cursor: str | None) -> AsyncIterator[ZendeskPage]: ...


class ListingReader:
    """Every record, listed 100 at a time; `cursor` is ignored (there is none to resume)."""

    source = LISTING

    def __init__(self, zendesk: ZendeskClient, page_size: int = MAX_PAGE_SIZE) -> None:
        self._zendesk, self._page_size = zendesk, page_size

    async def pages(self, object_key: str, cursor: str | None) -> AsyncIterator[ZendeskPage]:
        batch: list[ZendeskRecord] = []
        async for record in self._zendesk.list_records(object_key, page_size=self._page_size):
            batch.append(record)
            if len(batch) == self._page_size:
                yield ZendeskPage(batch)
                batch = []
        yield ZendeskPage(batch, end=True)


class ExportReader:
    """The record export from `cursor` (from the beginning without one, tombstones included)."""

    source = EXPORT

    def __init__(self, export: RecordExport) -> None:
        self._export = export

    async def pages(self, object_key: str, cursor: str | None) -> AsyncIterator[ZendeskPage]:
        async for page in self._export.pages(object_key, cursor, start_time=0):
            yield ZendeskPage(page.records, [str(i) for i in page.deleted], page.cursor, page.end_of_stream)
