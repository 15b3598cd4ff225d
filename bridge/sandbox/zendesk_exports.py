"""The incremental user and organization exports of the Zendesk simulator.

Read from `api/zendesk.md` ("Incremental exports") and the OpenAPI file. Zendesk offers the
cursor form for users only (and tickets); organizations are exported by time alone:
- users, `CursorBasedExportIncrementalUsersResponse`: `GET /api/v2/incremental/users/cursor?
  start_time=UNIX` (first request only) then `?cursor=…` (unreadable → 400 `InvalidCursor`),
  `per_page` ≤ 1000 (the default). The answer holds the rows changed since, oldest change
  first, `after_cursor`/`after_url` (kept even on the last page, so a client can come back
  later), `before_*` null and `end_of_stream`;
- organizations, `ExportIncrementalOrganizationsResponse`: `GET /api/v2/incremental/
  organizations?start_time=UNIX`. The answer holds the rows whose `updated_at` is at or after
  `start_time`, oldest first, `end_time` (the second of the last row), `next_page` (the same
  request from `end_time`), `count` and `end_of_stream`. As with Zendesk, a page may repeat
  rows of its first second that the page before also held, and a page never splits a second:
  it takes every row of its last second, even past `per_page`.
A `start_time` less than a minute ago is 400 `StartTimeTooRecent` on both.

Invariants:
- every change (create, update, delete) of a user or organization takes the next sequence
  number; a row is listed once, at its latest change, so a cursor never misses a change made
  after it was handed out;
- deleted users stay listed with `active: false`, deleted organizations with `deleted_at`;
- `include=identities` sideloads every email identity of the listed users (`identities`);
- the exports have their own limit, `rate_limit` requests a minute on top of the account's,
  answered with 429 and `Retry-After` when spent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

MAX_PER_PAGE = 1000
KINDS = ("users", "organizations")


class Exports:
    """Change log, tombstones and the export rate window of one simulated account."""

    def __init__(self, clock: Callable[[], datetime], *, rate_limit: int = 10) -> None:
        self.clock = clock
        self.rate_limit = rate_limit
        self._seq = 0
        self._changed: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}  # id → seq
        self.deleted: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._window = (0, 0)

    def touch(self, kind: str, row_id: int) -> None:
        self._seq += 1
        self._changed[kind][row_id] = self._seq

    def bury(self, kind: str, row: dict[str, Any], now: str) -> None:
        gone = {**row, "updated_at": now}
        gone.update({"active": False} if kind == "users" else {"deleted_at": now})
        self.deleted[kind][int(row["id"])] = gone
        self.touch(kind, int(row["id"]))

    def rate_hit(self) -> int:
        """Counts one export request; 0 when allowed, else the seconds until the next window."""
        now = int(self.clock().timestamp())
        start = now - now % 60
        if self._window[0] != start:
            self._window = (start, 0)
        if self._window[1] >= self.rate_limit:
            return max(start + 60 - now, 1)
        self._window = (start, self._window[1] + 1)
        return 0

    def page(
        self, kind: str, live: dict[int, dict[str, Any]], after: int, start_time: int | None, per_page: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Rows changed after sequence `after` (and at or after `start_time`): (rows, last seq, end)."""
        changes = sorted((seq, rid) for rid, seq in self._changed[kind].items() if seq > after)
        rows: list[dict[str, Any]] = []
        last = after
        for seq, rid in changes:
            last = seq
            row = live.get(rid) or self.deleted[kind].get(rid)
            if row is None or (start_time is not None and _epoch(row["updated_at"]) < start_time):
                continue
            rows.append(row)
            if len(rows) == per_page:
                break
        return rows, last, last == (changes[-1][0] if changes else after)


    def time_page(
        self, kind: str, live: dict[int, dict[str, Any]], start_time: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Rows updated at or after `start_time`, oldest first: (rows, end_time, end)."""
        rows = [r for r in (*live.values(), *self.deleted[kind].values()) if _epoch(r["updated_at"]) >= start_time]
        rows.sort(key=lambda r: (_epoch(r["updated_at"]), int(r["id"])))
        if len(rows) <= per_page:
            return rows, _epoch(rows[-1]["updated_at"]) if rows else start_time, True
        last = _epoch(rows[per_page - 1]["updated_at"])
        page = [r for r in rows if _epoch(r["updated_at"]) <= last]
        return page, last, len(page) == len(rows)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{seq}.0||{seq}|".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text.split(".", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return None


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _bad_request(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "description": description}, status=400)


def _rate_limited(exports: Exports) -> web.Response | None:
    """The 429 for an export request past the exports' own limit, else None (and it counts)."""
    wait = exports.rate_hit()
    if not wait:
        return None
    response = web.json_response(
        {"error": "APIRateLimitExceeded", "description": "Number of allowed incremental export API requests per minute exceeded"},
        status=429,
    )
    response.headers["Retry-After"] = str(wait)
    return response


def _per_page(request: web.Request) -> int | None:
    try:
        return max(min(int(request.query.get("per_page", MAX_PER_PAGE)), MAX_PER_PAGE), 1)
    except ValueError:
        return None


def _too_recent(exports: Exports, start_time: int) -> bool:
    return start_time > exports.clock().timestamp() - 60


async def export_by_time(
    request: web.Request, kind: str, live: dict[int, dict[str, Any]], exports: Exports
) -> web.StreamResponse:
    """One page of the time-based `kind` export (organizations)."""
    if (limited := _rate_limited(exports)) is not None:
        return limited
    per_page, raw = _per_page(request), request.query.get("start_time", "")
    if per_page is None:
        return _bad_request("InvalidPaginationParameter", "per_page must be an integer")
    if not raw.lstrip("-").isdigit():
        return _bad_request("InvalidValue", "start_time is required")
    if _too_recent(exports, int(raw)):
        return _bad_request("StartTimeTooRecent", "Too recent start_time. Use a start_time older than 1 minute")
    rows, end_time, end = exports.time_page(kind, live, int(raw), per_page)
    origin = str(request.url.origin())
    return web.json_response({
        kind: [{**r, "url": f"{origin}/api/v2/{kind}/{r['id']}.json"} for r in rows],
        "count": len(rows),
        "end_time": end_time,
        "next_page": f"{origin}/api/v2/incremental/{kind}.json?start_time={end_time}",
        "end_of_stream": end,
    })  # fmt: skip


async def export(request: web.Request, kind: str, live: dict[int, dict[str, Any]], exports: Exports,
                 identities: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> web.StreamResponse:  # fmt: skip
    """One page of the cursor-based `kind` export (users), after the export rate window let it through."""
    if (limited := _rate_limited(exports)) is not None:
        return limited
    query = request.query
    per_page = _per_page(request)
    if per_page is None:
        return _bad_request("InvalidPaginationParameter", "per_page must be an integer")
    start_time: int | None = None
    if "cursor" in query:
        after = decode_cursor(query["cursor"])
        if after is None:
            return _bad_request("InvalidCursor", "The cursor is invalid or has expired")
    elif "start_time" in query and query["start_time"].lstrip("-").isdigit():
        start_time, after = int(query["start_time"]), 0
        if _too_recent(exports, start_time):
            return _bad_request("StartTimeTooRecent", "Too recent start_time. Use a start_time older than 1 minute")
    else:
        return _bad_request("InvalidValue", "start_time or cursor is required")
    rows, last, end = exports.page(kind, live, after, start_time, per_page)
    cursor = encode_cursor(last)
    origin = str(request.url.origin())
    body: dict[str, Any] = {
        kind: [{**r, "url": f"{origin}/api/v2/{kind}/{r['id']}.json"} for r in rows],
        "after_cursor": cursor,
        "after_url": f"{origin}/api/v2/incremental/{kind}/cursor.json?cursor={cursor}",
        "before_cursor": None,
        "before_url": None,
        "end_of_stream": end,
    }
    if kind == "users" and "identities" in query.get("include", "").split(","):
        body["identities"] = identities(rows)
    return web.json_response(body)
