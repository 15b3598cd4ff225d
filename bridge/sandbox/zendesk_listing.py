"""Record routes of the Zendesk simulator: cursor-paged listing, create, show, update, upsert by
external id or name, delete, count (`api/zendesk.md`, "Records").

Invariants: `page[size]` is at most 100; `page[after]`/`page[before]` are opaque base64
keysets of the sort (`id` or `updated_at` then `id`) and cannot be used together; the
default `id` order bisects the per-object id list (ULIDs are created in increasing order);
`links.next`/`links.prev` are null when there is nothing that way, and `meta.has_more`
says whether the listing goes on in the direction asked.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from bridge.sandbox.zendesk_http import errors
from bridge.sandbox.zendesk_records import RecordInvalid

if TYPE_CHECKING:
    from bridge.sandbox.zendesk import ZendeskSandbox

MAX_PAGE = 100
SORTS = ("id", "-id", "updated_at", "-updated_at")


def _cursor(key: Any) -> str:
    return base64.b64encode(json.dumps(key).encode()).decode()


def _uncursor(text: str) -> Any:
    value = json.loads(base64.b64decode(text.encode(), validate=True))
    return tuple(value) if isinstance(value, list) else value


def _not_found(what: str) -> web.Response:
    return errors(404, "RecordNotFound", "Not found", f"no such {what}")


def _invalid(exc: RecordInvalid) -> web.Response:
    return web.json_response(exc.body(), status=422)


class RecordRoutes:
    def __init__(self, sandbox: ZendeskSandbox) -> None:
        self.sb = sandbox

    def _key(self, request: web.Request) -> str | None:
        key = request.match_info["key"].removesuffix(".json")
        return key if key in self.sb.objects else None

    async def list_records(self, request: web.Request) -> web.StreamResponse:
        key, q = self._key(request), request.query
        if key is None:
            return _not_found("custom object")
        try:
            size = int(q.get("page[size]", str(MAX_PAGE)))
            if not 1 <= size <= MAX_PAGE:
                raise ValueError(f"page[size] must be between 1 and {MAX_PAGE}")
            if "page[after]" in q and "page[before]" in q:
                raise ValueError("page[after] and page[before] can't be used together")
            sort = q.get("sort", "id")
            if sort not in SORTS:
                raise ValueError(f"sort must be one of: {', '.join(SORTS)}")
            ordered, keys = self._ordered(key, sort, q)
            start, end, more = self._window(keys, sort.startswith("-"), size, q)
        except (ValueError, binascii.Error, json.JSONDecodeError) as exc:
            return errors(400, "InvalidPaginationParameter", "Invalid parameter", str(exc))
        return web.json_response(self._page(request, key, ordered[start:end], keys[start:end], more, start > 0 or "page[after]" in q))

    def _ordered(self, key: str, sort: str, q: Any) -> tuple[list[str], list[Any]]:
        records, ids = self.sb.record_table(key), self.sb.record_ids(key)
        wanted_ids = {i for i in q.get("filter[ids]", "").split(",") if i}
        wanted_ext = {e for e in q.get("filter[external_ids]", "").split(",") if e}
        if sort == "id" and not wanted_ids and not wanted_ext:
            return ids, ids
        rows = [records[i] for i in ids if (not wanted_ids or i in wanted_ids) and (not wanted_ext or records[i]["external_id"] in wanted_ext)]
        if sort.lstrip("-") == "updated_at":
            rows.sort(key=lambda r: (r["updated_at"], r["id"]), reverse=sort.startswith("-"))
            return [r["id"] for r in rows], [(r["updated_at"], r["id"]) for r in rows]
        if sort.startswith("-"):
            rows.reverse()
        return [r["id"] for r in rows], [r["id"] for r in rows]

    def _window(self, keys: list[Any], desc: bool, size: int, q: Any) -> tuple[int, int, bool]:
        if "page[before]" in q:
            ck = _uncursor(q["page[before]"])
            end = bisect.bisect_left(keys, ck) if not desc else next((i for i, k in enumerate(keys) if k <= ck), len(keys))
            start = max(0, end - size)
            return start, end, start > 0
        start = 0
        if "page[after]" in q:
            ck = _uncursor(q["page[after]"])
            start = bisect.bisect_right(keys, ck) if not desc else next((i for i, k in enumerate(keys) if k < ck), len(keys))
        end = min(start + size, len(keys))
        return start, end, end < len(keys)

    def _page(self, request: web.Request, key: str, ids: list[str], keys: list[Any], more: bool, has_prev: bool) -> dict[str, Any]:
        origin = str(request.url.origin())
        records = self.sb.record_table(key)
        after = _cursor(keys[-1]) if keys else None
        before = _cursor(keys[0]) if keys else None
        base = [(k, v) for k, v in request.query.items() if k not in ("page[after]", "page[before]")]
        url = f"{origin}{request.path}?"
        backwards = "page[before]" in request.query
        return {
            "custom_object_records": [self.sb.render(key, records[i], origin) for i in ids],
            "meta": {"has_more": more, "after_cursor": after, "before_cursor": before},
            "links": {
                "next": url + urlencode([*base, ("page[after]", after)]) if after and (more or backwards) else None,
                "prev": url + urlencode([*base, ("page[before]", before)]) if before and (has_prev or (backwards and more)) else None,
            },
            "count": len(ids),
        }

    async def count_records(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        if key is None:
            return _not_found("custom object")
        return web.json_response({"count": {"value": len(self.sb.record_ids(key)), "refreshed_at": self.sb.now()}})

    async def create_record(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        if key is None:
            return _not_found("custom object")
        payload = (await request.json()).get("custom_object_record") or {}
        try:
            rec = self.sb.create_record(key, payload)
        except RecordInvalid as exc:
            return _invalid(exc)
        return web.json_response({"custom_object_record": self.sb.render(key, rec, str(request.url.origin()))}, status=201)

    async def upsert_record(self, request: web.Request) -> web.StreamResponse:
        key, q = self._key(request), request.query
        if key is None:
            return _not_found("custom object")
        if ("external_id" in q) == ("name" in q):
            return errors(400, "InvalidParameter", "Invalid parameter", "give exactly one of external_id or name")
        payload = (await request.json()).get("custom_object_record") or {}
        try:
            if "external_id" in q:
                rec, _ = self.sb.upsert_by_external_id(key, q["external_id"], payload)
            else:
                rec, _ = self.sb.upsert_by_name(key, q["name"], payload)
        except RecordInvalid as exc:
            return _invalid(exc)
        return web.json_response({"custom_object_record": self.sb.render(key, rec, str(request.url.origin()))})

    async def delete_by_external_id(self, request: web.Request) -> web.StreamResponse:
        key, q = self._key(request), request.query
        if key is None:
            return _not_found("custom object")
        if "external_id" in q:
            done = self.sb.delete_record_by_external_id(key, q["external_id"])
        elif "name" in q:
            rid = next((r["id"] for r in self.sb.record_table(key).values() if r["name"] == q["name"]), "")
            done = self.sb.delete_record(key, rid)
        else:
            return errors(400, "InvalidParameter", "Invalid parameter", "give external_id or name")
        return web.Response(status=204) if done else _not_found("custom object record")

    def _record(self, request: web.Request) -> tuple[str | None, dict[str, Any] | None]:
        key = self._key(request)
        rid = request.match_info["id"].removesuffix(".json")
        return key, None if key is None else self.sb.record(key, rid)

    async def show_record(self, request: web.Request) -> web.StreamResponse:
        key, rec = self._record(request)
        if key is None or rec is None:
            return _not_found("custom object record")
        return web.json_response({"custom_object_record": self.sb.render(key, rec, str(request.url.origin()))})

    async def update_record(self, request: web.Request) -> web.StreamResponse:
        key, rec = self._record(request)
        if key is None or rec is None:
            return _not_found("custom object record")
        payload = (await request.json()).get("custom_object_record") or {}
        try:
            rec = self.sb.update_record(key, rec["id"], payload)
        except RecordInvalid as exc:
            return _invalid(exc)
        return web.json_response({"custom_object_record": self.sb.render(key, rec, str(request.url.origin()))})

    async def delete_record(self, request: web.Request) -> web.StreamResponse:
        key, rec = self._record(request)
        if key is None or rec is None:
            return _not_found("custom object record")
        self.sb.delete_record(key, rec["id"])
        return web.Response(status=204)
