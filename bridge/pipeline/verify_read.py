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

from bridge.errors import ApiError, BridgeError, RejectedError
from bridge.zendesk.client import MAX_PAGE_SIZE, ZendeskClient
from bridge.zendesk.models import ZendeskRecord

EXPORT, LISTING = "export", "listing"


@dataclass(frozen=True, slots=True)
class ZendeskPage:
    live: list[ZendeskRecord]
    deleted: list[str] = field(default_factory=list)  # Zendesk ids
    cursor: str | None = None  # where the next pass starts; None: from the beginning
    end: bool = False  # the page reached the present


class CursorRefused(BridgeError):
    """Zendesk refused the stored export cursor (invalid or expired)."""


class ExportUnavailable(BridgeError):
    """The account does not offer the record export (Zendesk answered an error)."""


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


def refused_cursor(exc: ApiError) -> bool:
    """A 400 `InvalidCursor`: the cursor is invalid or expired (api/zendesk.md)."""
    return isinstance(exc, RejectedError) and exc.status == 400 and "InvalidCursor" in (
        f"{exc.detail or ''} {exc}"
    )


def export_unavailable(exc: ApiError) -> bool:
    """An answer that says the account has no record export: refused or not found (403, 404),
    or not offered (any other 4xx but a refused cursor or the rate limit)."""
    return isinstance(exc, RejectedError) and exc.status is not None and 400 <= exc.status < 500 \
        and exc.status != 429 and not refused_cursor(exc)
