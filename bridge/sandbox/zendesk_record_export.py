"""The incremental export of custom object records in the Zendesk simulator, cursor based.

Read from `api/zendesk.md` ("Incremental exports"): `GET /api/v2/incremental/custom_objects/
{key}/cursor?start_time=UNIX` (first request only; less than a minute ago → 400
`StartTimeTooRecent`), then `?cursor=…` (unreadable or expired → 400 `InvalidCursor`),
`per_page` ≤ 1000 (the default), `filter[exclude_deleted]=true` to leave deleted records out.
The answer holds `custom_object_records` (oldest change first), `after_cursor`/`after_url` (kept
on the last page too, so a client can come back later), `before_cursor`/`before_url`,
`meta.has_more`, `filter` and the `end_of_stream` every incremental export carries.

Invariants:
- every change of a record (create, update, delete; through the API, a bulk job or by hand)
  takes the next sequence number of the account; a record is listed once, at its latest
  change, and the cursor is that sequence number, so a cursor resumes exactly after what it
  served and never misses a later change (the order is the `updated_at` order: the clock
  only moves forward);
- a deleted record is listed as a tombstone for 30 days: its `id`, `created_at` and
  `updated_at` (the deletion time) kept, `name`, `external_id` and every field `"[DELETED]"`;
- `expire_cursors()` makes every cursor handed out so far answer `InvalidCursor`;
- with `hold_back` seconds set, changes younger than that are not served yet (a page stops
  before the first of them), as Zendesk may hold back the last minute: nothing is skipped,
  the same cursor serves them later;
- the export shares its limit with the user and organization exports (`Exports.rate_hit`);
- `unavailable` set to 403 or 404 answers every request as an account without the export
  would (a plan or role without it), before anything else is looked at.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.sandbox.zendesk_exports import MAX_PER_PAGE, Exports

if TYPE_CHECKING:
    from bridge.sandbox.zendesk import ZendeskSandbox

DELETED = "[DELETED]"
TOMBSTONE_DAYS = 30
UNAVAILABLE_BODIES: dict[int, dict[str, str]] = {
    403: {"error": "Forbidden", "description": "You do not have access to this page. Please contact the account owner of this help desk for further help."},
    404: {"error": "InvalidEndpoint", "description": "Not found"},
}  # fmt: skip


class RecordChanges:
    """Change log and tombstones of every object's records, and the export's switches."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.unavailable: int | None = None  # 403 or 404: the account has no such export
        self._seq = 0
        self._epoch = 0
        self._changed: dict[str, dict[str, int]] = {}  # object key → record id → latest seq
        # object key → (seq, record id) of every change in order; stale ones skipped, then pruned
        self._log: dict[str, list[tuple[int, str]]] = {}
        self.compact_slack = 10_000  # stale change-log entries kept before pruning them
        # Zendesk may leave out the last minute's changes ("data isn't provided for the most
        # recent minute"); off by default so that a change shows at once in tests and the demo
        self.hold_back = 0.0
        self._tombstones: dict[str, dict[str, dict[str, Any]]] = {}

    def touch(self, key: str, record_id: str) -> None:
        self._seq += 1
        latest, log = self._changed.setdefault(key, {}), self._log.setdefault(key, [])
        latest[record_id] = self._seq
        log.append((self._seq, record_id))
        if len(log) > len(latest) + self.compact_slack:
            log[:] = [(seq, rid) for seq, rid in log if latest[rid] == seq]

    def bury(self, key: str, record: dict[str, Any], now: str) -> None:
        """Keeps a deleted record's tombstone, listed at its deletion."""
        self._tombstones.setdefault(key, {})[record["id"]] = {**record, "updated_at": now}
        self.touch(key, record["id"])

    def forget(self, key: str) -> None:
        """An object deleted: its records leave the export with it."""
        self._changed.pop(key, None)
        self._log.pop(key, None)
        self._tombstones.pop(key, None)

    def expire_cursors(self) -> None:
        self._epoch += 1

    def cursor(self, seq: int) -> str:
        return base64.urlsafe_b64encode(f"{self._epoch}:{seq}".encode()).decode().rstrip("=")

    def uncursor(self, cursor: str) -> int | None:
        """The sequence number a cursor stands for; None when unreadable or expired."""
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            epoch, seq = (int(part) for part in text.split(":"))
        except (ValueError, UnicodeDecodeError):
            return None
        return seq if epoch == self._epoch and 0 <= seq <= self._seq else None

    def page(
        self, key: str, live: dict[str, dict[str, Any]], after: int, start_time: int | None,
        per_page: int, exclude_deleted: bool,
    ) -> tuple[list[dict[str, Any]], int, bool]:  # fmt: skip
        """Records changed after sequence `after` (at or after `start_time`): (rows, last seq,
        has more). A row is a stored record, or a tombstone under the key `DELETED`."""
        now = self.clock()
        kept_since = (now - timedelta(days=TOMBSTONE_DAYS)).timestamp()
        held_from = (now - timedelta(seconds=self.hold_back)).timestamp() if self.hold_back else float("inf")
        latest, log = self._changed.get(key, {}), self._log.get(key, [])
        rows: list[dict[str, Any]] = []
        last = after
        for n in range(bisect.bisect_right(log, (after, "\uffff")), len(log)):
            seq, rid = log[n]
            if latest[rid] != seq:
                continue  # changed again later: listed there
            gone = None if rid in live else self._tombstones.get(key, {}).get(rid, {})
            changed = live[rid]["updated_at"] if gone is None else gone.get("updated_at", "1970-01-01T00:00:00Z")
            if _epoch(changed) > held_from:
                break  # too fresh: served once it is `hold_back` seconds old, from this cursor
            if len(rows) == per_page:
                return rows, last, True
            last = seq
            if gone is not None:
                if not gone or exclude_deleted or _epoch(changed) < kept_since:
                    continue
                row = {DELETED: True, **gone}
            else:
                row = live[rid]
            if start_time is not None and _epoch(changed) < start_time:
                continue
            rows.append(row)
        return rows, last, False


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _bad_request(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "description": description}, status=400)


def _tombstone(row: dict[str, Any], field_keys: list[str], origin: str) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != DELETED}
    out.update(name=DELETED, external_id=DELETED, custom_object_fields=dict.fromkeys(field_keys, DELETED))
    out["url"] = f"{origin}/api/v2/custom_objects/{row['custom_object_key']}/records/{row['id']}.json"
    return out


def _refusal(changes: RecordChanges, exports: Exports, sb: ZendeskSandbox, key: str) -> web.Response | None:
    if changes.unavailable is not None:
        body = UNAVAILABLE_BODIES.get(changes.unavailable, UNAVAILABLE_BODIES[403])
        return web.json_response(body, status=changes.unavailable)
    wait = exports.rate_hit()
    if wait:
        response = web.json_response(
            {"error": "APIRateLimitExceeded", "description": "Number of allowed incremental export API requests per minute exceeded"},
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if key not in sb.objects:
        return web.json_response({"errors": [{"code": "NotFound", "title": "Not Found", "detail": "no such custom object", "status": "404"}]}, status=404)
    return None


async def export(request: web.Request, sb: ZendeskSandbox) -> web.StreamResponse:
    """One page of an object's record export."""
    key, changes, query = request.match_info["key"], sb.record_changes, request.query
    refused = _refusal(changes, sb.exports, sb, key)
    if refused is not None:
        return refused
    try:
        per_page = max(min(int(query.get("per_page", MAX_PER_PAGE)), MAX_PER_PAGE), 1)
    except ValueError:
        return _bad_request("InvalidPaginationParameter", "per_page must be an integer")
    start_time: int | None = None
    if "cursor" in query:
        found = changes.uncursor(query["cursor"])
        if found is None:
            return _bad_request("InvalidCursor", "The cursor is invalid or has expired")
        after = found
    elif query.get("start_time", "").lstrip("-").isdigit():
        start_time, after = int(query["start_time"]), 0
        if start_time > sb.clock().timestamp() - 60:
            return _bad_request("StartTimeTooRecent", "Too recent start_time. Use a start_time older than 1 minute")
    else:
        return _bad_request("InvalidValue", "start_time or cursor is required")
    exclude = query.get("filter[exclude_deleted]", "").lower() == "true"
    rows, last, more = changes.page(key, sb.record_table(key), after, start_time, per_page, exclude)
    origin = str(request.url.origin())
    field_keys = [f["key"] for f in sb.fields[key]]
    cursor = changes.cursor(last)
    before = query.get("cursor")
    base = f"{origin}/api/v2/incremental/custom_objects/{key}/cursor.json?"
    shown = "&filter[exclude_deleted]=true" if exclude else ""
    return web.json_response({
        "custom_object_records": [_tombstone(r, field_keys, origin) if DELETED in r else sb.render(key, r, origin) for r in rows],
        "after_cursor": cursor,
        "after_url": f"{base}cursor={cursor}{shown}",
        "before_cursor": before,
        "before_url": f"{base}cursor={before}{shown}" if before else None,
        "meta": {"has_more": more},
        "filter": {"exclude_deleted": exclude},
        "end_of_stream": not more,
    })  # fmt: skip
