"""HTTP surface of the Outreach simulator: routes, JSON:API rendering, include, sparse fieldsets.

Split from `outreach.py` (state, auth, rate limit) so each stays readable. Rules kept here,
from `api/outreach.md` and the custom objects seed page: list envelopes with absolute
`links.first`/`links.next` that carry every original parameter; `include` goes one level
deep through custom-object targets but may chain through standard ones
(`main_driver.account`); `fields[type]` trims attributes and relationships of data and
included alike; errors are `{"errors": [{"id", "title", "detail", "source"?}]}`.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from bridge.sandbox.outreach_query import (
    Query,
    QueryError,
    Rec,
    TypeDef,
    coerce,
    encode_cursor,
    keyset_fn,
    parse_query,
    render_ts,
    sort_key_fn,
)

if TYPE_CHECKING:
    from bridge.sandbox.outreach import OutreachSandbox

JSONAPI = "application/vnd.api+json"
SCHEMA_URI = "http://json-schema.org/draft-07/hyper-schema#"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Fields = dict[str, set[str]]


class RawNumber:
    """A JSON number written verbatim, however long: `json` cannot write an int past 4,300
    digits, and a real API can still send one (`serve_raw(..., speed=RawNumber("9" * 5000))`)."""

    def __init__(self, digits: str) -> None:
        if not digits.lstrip("-").isdigit():
            raise ValueError(f"not an integer: {digits[:20]!r}")
        self.digits = digits


def dumps(body: Any) -> str:
    raw: list[str] = []

    def placeholder(value: Any) -> str:
        if not isinstance(value, RawNumber):
            raise TypeError(f"cannot serve {type(value).__name__} as JSON")
        raw.append(value.digits)
        return f"\x00raw{len(raw) - 1}"

    text = json.dumps(body, separators=(",", ":"), default=placeholder)
    for index, digits in enumerate(raw):
        text = text.replace(f'"\\u0000raw{index}"', digits, 1)
    return text


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(body), status=status, content_type=JSONAPI)


def error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> web.Response:
    item: dict[str, Any] = {"id": code, "title": title, "detail": detail}
    if pointer:
        item["source"] = {"pointer": pointer} if pointer.startswith("/") else {"parameter": pointer}
    return reply({"errors": [item]}, status)


def not_found(what: str) -> web.Response:
    return error(404, "resourceNotFound", "Resource Not Found", f"Could not find {what}.")


def resource(t: TypeDef, rec: Rec, fields: Fields | None, origin: str) -> dict[str, Any]:
    """One record as a JSON:API resource; `origin` empty leaves out links."""
    wanted = fields.get(t.name) if fields else None
    attrs: dict[str, Any] = {}
    if wanted is None or "createdAt" in wanted:
        attrs["createdAt"] = render_ts(rec.created)
    for name, i in t.index.items():
        if wanted is None or name in wanted:
            value = rec.values[i]
            attrs[name] = render_ts(value) if value is not None and t.attributes[name] == "date-time" else value
    if wanted is None or "updatedAt" in wanted:
        attrs["updatedAt"] = render_ts(rec.updated)
    attrs.update((name, value) for name, value in rec.raw.items() if wanted is None or name in wanted)
    rels = {
        name: {"data": None if rec.rels[i] is None else {"type": t.relationships[name], "id": rec.rels[i]}}
        for name, i in t.rel_index.items()
        if wanted is None or name in wanted
    }
    out: dict[str, Any] = {"type": t.name, "id": rec.id, "attributes": attrs, "relationships": rels}
    if origin:
        out["links"] = {"self": f"{origin}{record_path(t)}/{rec.id}"}
    return out


def record_path(t: TypeDef) -> str:
    return f"/api/v2/customObjects/{t.name}" if t.custom_object else f"/api/v2/{t.name}s"


def build_app(sandbox: OutreachSandbox, outer: list[Any]) -> web.Application:
    api = _Api(sandbox)
    app = web.Application(middlewares=[*outer, api.middleware])
    r = app.router
    r.add_post("/oauth/token", api.oauth_token, name="oauth_token")
    r.add_get("/api/v2/schema", api.schema, name="schema")
    sandbox.webhooks.add_routes(app)  # before /api/v2/{type}, which would take /api/v2/webhooks
    r.add_get("/api/v2/customObjects/{type}", api.list_custom, name="list_custom")
    r.add_post("/api/v2/customObjects/{type}", api.create_custom, name="create_custom")
    r.add_get("/api/v2/customObjects/{type}/{id}", api.show_custom, name="show_custom")
    r.add_patch("/api/v2/customObjects/{type}/{id}", api.update_custom, name="update_custom")
    r.add_delete("/api/v2/customObjects/{type}/{id}", api.delete_custom, name="delete_custom")
    r.add_get("/api/v2/{type}", api.list_standard, name="list_standard")
    r.add_get("/api/v2/{type}/{id}", api.show_standard, name="show_standard")
    return app


class _Api:
    def __init__(self, sandbox: OutreachSandbox) -> None:
        self.sb = sandbox

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/v2"):
            return await handler(request)
        allowed, remaining, reset = self.sb.rate_hit()
        if not allowed:
            response: web.StreamResponse = error(429, "rateLimitExceeded", "Rate Limit Exceeded", "Too many requests this hour; retry after the reset.")
            response.headers["Retry-After"] = str(max(reset - self.sb.now_seconds(), 1))
        else:
            response = await self._checked(request, handler)
        response.headers["X-RateLimit-Limit"] = str(self.sb.rate_limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(reset)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/api/v2/schema" and not self._authenticated(request):
            return error(401, "unauthorizedRequest", "Unauthorized Request", "A valid bearer access token is required.")
        if request.method in ("POST", "PATCH", "PUT") and request.content_type != JSONAPI:
            return error(415, "unsupportedMediaType", "Unsupported Media Type", f"Send Content-Type: {JSONAPI}.")
        return await handler(request)

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.sb.token_valid(token.strip())

    # --- OAuth ------------------------------------------------------------------------------
    async def oauth_token(self, request: web.Request) -> web.StreamResponse:
        data: dict[str, Any]
        if request.content_type == "application/json":
            data = await request.json()
        else:
            data = dict(await request.post())
        if data.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type", "error_description": "Only grant_type=refresh_token is supported."}, status=400)
        status, body = self.sb.mint(str(data.get("client_id", "")), str(data.get("client_secret", "")), str(data.get("refresh_token", "")))
        if status == 429:
            detail = f"At most one access token per {body['interval']:g} s may be minted; retry later."
            response = error(429, "rateLimitExceeded", "Rate Limit Exceeded", detail)
            response.headers["Retry-After"] = str(body["retry_after"])
            return response
        return web.json_response(body, status=status)

    # --- schema -----------------------------------------------------------------------------
    async def schema(self, request: web.Request) -> web.StreamResponse:
        authed = self._authenticated(request)
        defs = {name: _type_schema(t) for name, t in self.sb.types.items() if authed or not t.custom_object}
        return reply({"$schema": SCHEMA_URI, "definitions": defs})

    # --- records ----------------------------------------------------------------------------
    def _type(self, request: web.Request, custom: bool) -> TypeDef | None:
        name = request.match_info["type"]
        if not custom:
            if not name.endswith("s"):
                return None
            name = name[:-1]
        t = self.sb.types.get(name)
        return t if t is not None and t.custom_object == custom else None

    async def list_custom(self, request: web.Request) -> web.StreamResponse:
        return self._list(request, self._type(request, True))

    async def list_standard(self, request: web.Request) -> web.StreamResponse:
        return self._list(request, self._type(request, False))

    async def show_custom(self, request: web.Request) -> web.StreamResponse:
        return self._show(request, self._type(request, True))

    async def show_standard(self, request: web.Request) -> web.StreamResponse:
        return self._show(request, self._type(request, False))

    def _list(self, request: web.Request, t: TypeDef | None) -> web.StreamResponse:
        if t is None:
            return not_found(f"resource type {request.match_info['type']!r}")
        try:
            query = parse_query(t, request.query, self.sb, self.sb.types)
            include, fields = self._include(t, request), _fields(request)
        except QueryError as exc:
            return error(400, "validationError", "Validation Error", exc.detail, exc.parameter)
        if "page[after]" in request.query:
            self.sb.listing_continues(t.name)
        page, more = self._page(t, query)
        origin = str(request.url.origin())
        body: dict[str, Any] = {"data": [resource(t, r, fields, origin) for r in page]}
        if include:
            body["included"] = self._included(t, page, include, fields, origin)
        body["meta"] = {"count": sum(1 for _ in self._matching(t, query)), "count_truncated": False} if query.count else {}
        body["links"] = self._links(request, t, query, page, more, origin)
        return reply(body)

    def _matching(self, t: TypeDef, query: Query) -> Any:
        preds = query.predicates
        return (r for r in self.sb.records_of(t.name).values() if all(p(r) for p in preds))

    def _page(self, t: TypeDef, query: Query) -> tuple[list[Rec], bool]:
        if query.by_updated:
            return self._page_by_updated(t, query)
        key, keyset = sort_key_fn(t, query.sort), keyset_fn(t, query.sort)
        matched = sorted(self._matching(t, query), key=lambda r: key(keyset(r)))
        start = 0
        if query.after is not None:
            start = bisect.bisect_right(matched, key(query.after), key=lambda r: key(keyset(r)))
        window = matched[start : start + query.size + 1]
        return window[: query.size], len(window) > query.size

    def _page_by_updated(self, t: TypeDef, query: Query) -> tuple[list[Rec], bool]:
        order, records, preds = self.sb.order_of(t.name), self.sb.records_of(t.name), query.predicates
        if query.after is not None:
            start = bisect.bisect_right(order, (query.after[0], query.after[1]))
        elif query.updated_from is not None:
            start = bisect.bisect_left(order, (query.updated_from, -1))
        else:
            start = 0
        out: list[Rec] = []
        for i in range(start, len(order)):
            rec = records[order[i][1]]
            if all(p(rec) for p in preds):
                if len(out) == query.size:
                    return out, True
                out.append(rec)
        return out, False

    def _links(self, request: web.Request, t: TypeDef, query: Query, page: list[Rec], more: bool, origin: str) -> dict[str, str]:
        params = [(k, v) for k, v in request.query.items() if k != "page[after]"]
        if "page[size]" not in request.query:
            params.append(("page[size]", str(query.size)))
        base = f"{origin}{request.path}"
        links = {"first": f"{base}?{urlencode(params)}"}
        if more:
            cursor = keyset_fn(t, query.sort)(page[-1])
            links["next"] = f"{base}?{urlencode([*params, ('page[after]', encode_cursor(cursor))])}"
        return links

    def _show(self, request: web.Request, t: TypeDef | None) -> web.StreamResponse:
        rec = self._lookup(request, t)
        if t is None or rec is None:
            return not_found(f"{request.match_info['type']} {request.match_info['id']}")
        try:
            include, fields = self._include(t, request), _fields(request)
        except QueryError as exc:
            return error(400, "validationError", "Validation Error", exc.detail, exc.parameter)
        origin = str(request.url.origin())
        body: dict[str, Any] = {"data": resource(t, rec, fields, origin)}
        if include:
            body["included"] = self._included(t, [rec], include, fields, origin)
        return reply(body)

    def _lookup(self, request: web.Request, t: TypeDef | None) -> Rec | None:
        if t is None or not request.match_info["id"].isdigit():
            return None
        return self.sb.records_of(t.name).get(int(request.match_info["id"]))

    # --- include ----------------------------------------------------------------------------
    def _include(self, t: TypeDef, request: web.Request) -> list[list[str]]:
        text = request.query.get("include", "")
        paths = [p.split(".") for p in text.split(",") if p.strip()]
        for path in paths:
            current, through_custom = t, False
            for name in path:
                if through_custom:
                    raise QueryError(f"include {'.'.join(path)!r} goes deeper than one level through a custom object", "include")
                if name not in current.relationships:
                    raise QueryError(f"{current.name} has no relationship {name!r} to include", "include")
                current = self.sb.types[current.relationships[name]]
                through_custom = current.custom_object
        return paths

    def _included(self, t: TypeDef, recs: list[Rec], paths: list[list[str]], fields: Fields | None, origin: str) -> list[dict[str, Any]]:
        seen: dict[tuple[str, int], dict[str, Any]] = {}
        for path in paths:
            frontier = [(t, r) for r in recs]
            for name in path:
                nxt: list[tuple[TypeDef, Rec]] = []
                for owner, rec in frontier:
                    target_id = rec.rels[owner.rel_index[name]]
                    target_t = self.sb.types[owner.relationships[name]]
                    target = None if target_id is None else self.sb.records_of(target_t.name).get(target_id)
                    if target is not None:
                        nxt.append((target_t, target))
                        seen.setdefault((target_t.name, target.id), resource(target_t, target, fields, origin))
                frontier = nxt
        return list(seen.values())

    # --- writes -----------------------------------------------------------------------------
    async def create_custom(self, request: web.Request) -> web.StreamResponse:
        t = self._type(request, True)
        if t is None:
            return not_found(f"resource type {request.match_info['type']!r}")
        parsed = await self._body(request, t)
        if isinstance(parsed, web.Response):
            return parsed
        attrs, rels = parsed
        rid = self.sb.put(t.name, attrs, rels)
        return reply({"data": resource(t, self.sb.records_of(t.name)[rid], None, str(request.url.origin()))}, 201)

    async def update_custom(self, request: web.Request) -> web.StreamResponse:
        t = self._type(request, True)
        rec = self._lookup(request, t)
        if t is None or rec is None:
            return not_found(f"{request.match_info['type']} {request.match_info['id']}")
        parsed = await self._body(request, t)
        if isinstance(parsed, web.Response):
            return parsed
        attrs, rels = parsed
        self.sb.update(t.name, rec.id, **attrs)
        for name, target in rels.items():
            self.sb.set_relationship(t.name, rec.id, name, target)
        return reply({"data": resource(t, rec, None, str(request.url.origin()))})

    async def delete_custom(self, request: web.Request) -> web.StreamResponse:
        t = self._type(request, True)
        rec = self._lookup(request, t)
        if t is None or rec is None:
            return not_found(f"{request.match_info['type']} {request.match_info['id']}")
        self.sb.delete(t.name, rec.id)
        return web.Response(status=204)

    async def _body(self, request: web.Request, t: TypeDef) -> tuple[dict[str, Any], dict[str, int | None]] | web.Response:
        try:
            data = (await request.json())["data"]
            if data.get("type") != t.name:
                return error(400, "validationError", "Validation Error", f"data.type must be {t.name!r}", "/data/type")
            attrs = {k: v for k, v in (data.get("attributes") or {}).items() if k not in ("createdAt", "updatedAt")}
            for key, value in attrs.items():
                if key not in t.attributes:
                    return error(400, "validationError", "Validation Error", f"{t.name} has no attribute {key!r}", f"/data/attributes/{key}")
                coerce(t, key, value)
            rels: dict[str, int | None] = {}
            for key, value in (data.get("relationships") or {}).items():
                if key not in t.relationships:
                    return error(400, "validationError", "Validation Error", f"{t.name} has no relationship {key!r}", f"/data/relationships/{key}")
                rels[key] = None if value.get("data") is None else int(value["data"]["id"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return error(400, "validationError", "Validation Error", f"invalid request body: {exc}", "/data")
        return attrs, rels


def _fields(request: web.Request) -> Fields | None:
    out: Fields = {}
    for key, value in request.query.items():
        if key.startswith("fields[") and key.endswith("]"):
            out[key[7:-1]] = {v.strip() for v in value.split(",") if v.strip()}
    return out or None


_JSON_TYPES: dict[str, dict[str, Any]] = {"date-time": {"type": "string", "format": "date-time"}, "array": {"type": "array", "items": {"type": "string"}}}


def _type_schema(t: TypeDef) -> dict[str, Any]:
    """One type's draft-07 hyper-schema: attributes as `definitions` with filterable/sortable;
    relationships under `properties.relationships` with their target type."""
    fields = {"id": "integer", "createdAt": "date-time", **t.attributes, "updatedAt": "date-time"}
    defs = {
        name: {**_JSON_TYPES.get(kind, {"type": kind}), "filterable": True, "sortable": kind != "array"}
        for name, kind in fields.items()
    }
    rels = {name: {"type": "object", "x-target-type": target, "filterable": True, "sortable": False} for name, target in t.relationships.items()}
    return {
        "$schema": SCHEMA_URI,
        "title": t.name,
        "definitions": defs,
        "properties": {
            "attributes": {"type": "object", "properties": {n: {"$ref": f"#/definitions/{t.name}/definitions/{n}"} for n in fields if n != "id"}},
            "relationships": {"type": "object", "properties": rels},
        },
        "links": [{"rel": "self", "href": f"{record_path(t)}/{{id}}"}, {"rel": "instances", "href": record_path(t)}],
        "stability": "prototype",
        "type": "object",
    }
