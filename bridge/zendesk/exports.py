"""Zendesk's incremental exports of users and organizations, paced to their limit.

Users come from the cursor-based export, organizations from the time-based one: Zendesk
offers the cursor form for tickets and users only (api/zendesk.md, "Incremental exports").
- `GET /api/v2/incremental/users/cursor`: the first request carries `start_time`, every later
  one the `after_cursor` of the page before. Users are asked with `include=identities`, so
  every email a user can be matched by comes with the page.
- `GET /api/v2/incremental/organizations?start_time=T`: each page says the second of its last
  row (`end_time`), where the next page starts. A page may repeat rows of its first second
  (storing them twice is harmless); one that ends where it began holds every row of that
  second, so the next starts a second later. A start time less than a minute ago is refused
  (`StartTimeTooRecent`): nothing can be read yet, and the stream is at its end.
Up to 1,000 rows a page; `end_of_stream` marks the page that reached the present. Each page
hands the caller a cursor (the `after_cursor`, or the `end_time` as text) that is kept and
handed back next time, so a refresh reads only what changed since.

These endpoints have their own limit, 10 requests a minute on top of the account's. The
`ExportPacer` spaces requests `60 / per_minute` seconds apart, so one process never earns the
exports' 429; one earned all the same (several processes) is waited out by the transport's
Retry-After handling, on a transport of their own in `wiring.py` whose short deadline ends
the refresh rather than hold up a run.
Answers are validated here and handed on as `DirectoryEntry` dataclasses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.errors import RejectedError
from bridge.http.transport import Transport
from bridge.zendesk.jobs import JSON_HEADERS
from bridge.zendesk.wire import API, IdStr, parse_answer

Kind = Literal["users", "organizations"]
MAX_PER_PAGE = 1000
EXPORTS_PER_MINUTE = 10  # api/zendesk.md: 10 a minute (30 with the High Volume add-on)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One user or organization as the export shows it; `emails` is every email identity
    (the primary first), as Zendesk spelled them."""

    id: str
    external_id: str | None
    emails: tuple[str, ...]
    name: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class ExportPage:
    kind: Kind
    entries: list[DirectoryEntry]
    cursor: str | None  # where the next read starts (after this page)
    end_of_stream: bool


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _UserWire(_Wire):
    id: IdStr
    name: str | None = None
    email: str | None = None
    external_id: IdStr | None = None
    active: bool = True


class _OrganizationWire(_Wire):
    id: IdStr
    name: str | None = None
    external_id: IdStr | None = None
    deleted_at: str | None = None


class _IdentityWire(_Wire):
    user_id: IdStr
    type: str
    value: str | None = None


class _ExportAnswer(_Wire):
    users: list[_UserWire] = []
    organizations: list[_OrganizationWire] = []
    identities: list[_IdentityWire] = []
    after_cursor: str | None = None
    end_time: int | None = None  # time-based exports
    end_of_stream: bool


class ExportPacer:
    """Spaces requests evenly so that at most `per_minute` are sent in any minute."""

    def __init__(
        self,
        per_minute: float = EXPORTS_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spacing = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            delay = self._next - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self._next = max(self._clock(), self._next) + self.spacing


class IncrementalExports:
    """Pages of one account's user or organization export, from a cursor or a start time."""

    def __init__(
        self, transport: Transport, base_url: str, *, pacer: ExportPacer | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> None:  # fmt: skip
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._pacer = pacer or ExportPacer()
        self._per_page = per_page

    async def pages(
        self, kind: Kind, cursor: str | None = None, *, start_time: int = 0
    ) -> AsyncIterator[ExportPage]:
        """Every page from `cursor` (or from `start_time` when there is none) to the present."""
        pages = self._time_pages if kind == "organizations" else self._cursor_pages
        async for page in pages(kind, cursor, start_time):
            yield page

    async def _time_pages(self, kind: Kind, cursor: str | None, start_time: int) -> AsyncIterator[ExportPage]:
        url = f"{self._base}/api/v2/incremental/{kind}"
        # A cursor that is not a time came from the cursor form this export once used: read all.
        start = int(cursor) if cursor is not None and cursor.isdigit() else start_time
        while True:
            await self._pacer.wait()
            try:
                resp = await self._transport.request(
                    "GET", url, params={"start_time": str(start), "per_page": str(self._per_page)},
                    headers=JSON_HEADERS,
                )  # fmt: skip
            except RejectedError as exc:
                if exc.status == 400 and exc.detail.startswith("StartTimeTooRecent"):
                    yield ExportPage(kind, [], str(start), True)
                    return
                raise
            answer = parse_answer(_ExportAnswer, resp)
            end = answer.end_time if answer.end_time is not None else start
            done = answer.end_of_stream
            following = end if end > start else end + 1  # the page held all of its only second
            yield ExportPage(kind, _entries(kind, answer), str(end if done else following), done)
            if done:
                return
            start = following

    async def _cursor_pages(self, kind: Kind, cursor: str | None, start_time: int) -> AsyncIterator[ExportPage]:
        url = f"{self._base}/api/v2/incremental/{kind}/cursor"
        while True:
            params = {"per_page": str(self._per_page)}
            params.update({"cursor": cursor} if cursor else {"start_time": str(start_time)})
            if kind == "users":
                params["include"] = "identities"
            await self._pacer.wait()
            resp = await self._transport.request("GET", url, params=params, headers=JSON_HEADERS)
            answer = parse_answer(_ExportAnswer, resp)
            page = ExportPage(kind, _entries(kind, answer), answer.after_cursor or cursor,
                              answer.end_of_stream or not answer.after_cursor)  # fmt: skip
            yield page
            if page.end_of_stream:
                return
            if answer.after_cursor == cursor:
                raise RejectedError(
                    f"Zendesk's {kind} export handed back the cursor it was given without "
                    "reaching the end of the stream; stopping to avoid a loop, report it",
                    api=API, method="GET", path=f"/api/v2/incremental/{kind}/cursor",
                )  # fmt: skip
            cursor = answer.after_cursor


def _entries(kind: Kind, answer: _ExportAnswer) -> list[DirectoryEntry]:
    if kind == "organizations":
        return [
            DirectoryEntry(o.id, o.external_id, (), o.name or "", o.deleted_at is not None)
            for o in answer.organizations
        ]
    emails: dict[str, list[str]] = {}
    for identity in answer.identities:
        if identity.type == "email" and identity.value:
            emails.setdefault(identity.user_id, []).append(identity.value)
    entries = []
    for u in answer.users:
        found = [u.email] if u.email else []
        found += [e for e in emails.get(u.id, []) if e.casefold() not in {f.casefold() for f in found}]
        entries.append(DirectoryEntry(u.id, u.external_id, tuple(found), u.name or "", not u.active))
    return entries
