"""HTTP surface of the Zendesk simulator: routes, auth and rate-limit middleware, error shapes.

Paths, bodies and statuses follow `api/zendesk-oas.yaml` (checked by
tests/sandbox/test_spec_conformance.py). Error bodies use the three real shapes on purpose,
so clients must parse them all: `{"errors": [{"code", "title", "detail", "status"}]}` for
custom object routes, `{"error", "description"[, "details"]}` for RecordInvalid,
RecordNotFound of users/jobs and rate limits, and `{"error": "Couldn't authenticate you"}`
for 401. Ids in paths may carry Zendesk's optional `.json` suffix.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.sandbox import zendesk_exports, zendesk_record_export
from bridge.sandbox.zendesk_jobs import ACTIONS, MAX_ITEMS, TooManyJobs
from bridge.sandbox.zendesk_records import FIELD_TYPES, RecordInvalid, job_request_problem

if TYPE_CHECKING:
    from bridge.sandbox.zendesk import ZendeskSandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_KEY = re.compile(r"^(?!\d+$)[A-Za-z0-9_]+$")
_TARGET = re.compile(r"^zen:(user|organization|ticket|custom_object:[A-Za-z0-9_]+)$")


def errors(status: int, code: str, title: str, detail: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "title": title, "detail": detail, "status": str(status)}]}, status=status)


def legacy(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "description": description}, status=status)


def _strip(value: str) -> str:
    return value.removesuffix(".json")


def build_app(sandbox: ZendeskSandbox, outer: list[Any]) -> web.Application:
    api = _Api(sandbox)
    app = web.Application(middlewares=[*outer, api.middleware], client_max_size=8 * 1024 * 1024)
    r, co = app.router, "/api/v2/custom_objects"
    r.add_post("/oauth/tokens", api.oauth_tokens, name="oauth_tokens")
    r.add_get(co, api.list_objects, name="list_objects")
    r.add_post(co, api.create_object, name="create_object")
    r.add_get(f"{co}/limits/object_limit", api.object_limit, name="object_limit")
    r.add_get(f"{co}/limits/record_limit", api.record_limit, name="record_limit")
    r.add_get(co + "/{key}", api.show_object, name="show_object")
    r.add_patch(co + "/{key}", api.update_object, name="update_object")
    r.add_delete(co + "/{key}", api.delete_object, name="delete_object")
    r.add_get(co + "/{key}/fields", api.list_fields, name="list_fields")
    r.add_post(co + "/{key}/fields", api.create_field, name="create_field")
    r.add_get(co + "/{key}/fields/{field}", api.show_field, name="show_field")
    r.add_get(co + "/{key}/limits/field_limit", api.field_limit, name="field_limit")
    r.add_post(co + "/{key}/jobs", api.create_job, name="create_job")
    from bridge.sandbox.zendesk_listing import RecordRoutes  # imports this module's helpers

    listing = RecordRoutes(sandbox)
    r.add_get(co + "/{key}/records", listing.list_records, name="list_records")
    r.add_post(co + "/{key}/records", listing.create_record, name="create_record")
    r.add_patch(co + "/{key}/records", listing.upsert_record, name="upsert_record")
    r.add_delete(co + "/{key}/records", listing.delete_by_external_id, name="delete_record_by_external_id")
    r.add_get(co + "/{key}/records/count", listing.count_records, name="count_records")
    r.add_get(co + "/{key}/records/{id}", listing.show_record, name="show_record")
    r.add_patch(co + "/{key}/records/{id}", listing.update_record, name="update_record")
    r.add_delete(co + "/{key}/records/{id}", listing.delete_record, name="delete_record")
    r.add_get("/api/v2/job_statuses/show_many", api.job_statuses, name="job_statuses")
    r.add_get("/api/v2/job_statuses/{id}", api.job_status, name="job_status")
    r.add_get("/api/v2/users/show_many", api.users_show_many, name="users_show_many")
    r.add_get("/api/v2/users/search", api.users_search, name="users_search")
    r.add_get("/api/v2/organizations/show_many", api.organizations_show_many, name="organizations_show_many")
    r.add_get("/api/v2/organizations/search", api.organizations_search, name="organizations_search")
    r.add_get("/api/v2/incremental/users/cursor{ext:(\\.json)?}", api.export_users, name="incremental_users")
    r.add_get("/api/v2/incremental/organizations{ext:(\\.json)?}", api.export_organizations, name="incremental_organizations")
    r.add_get("/api/v2/incremental/custom_objects/{key}/cursor{ext:(\\.json)?}", api.export_records, name="incremental_custom_object_records")
    return app


class _Api:
    def __init__(self, sandbox: ZendeskSandbox) -> None:
        self.sb = sandbox

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/v2"):
            return await handler(request)
        allowed, remaining, reset = self.sb.rate_hit()
        if not allowed:
            response: web.StreamResponse = legacy(429, "APIRateLimitExceeded", "Number of allowed API requests per minute exceeded")
            response.headers["Retry-After"] = str(reset)
        elif not self.sb.authenticated(request.headers.get("Authorization", "")):
            response = web.json_response({"error": "Couldn't authenticate you"}, status=401)
        else:
            response = await handler(request)
        response.headers["X-Rate-Limit"] = str(self.sb.rate_limit)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        return response

    async def oauth_tokens(self, request: web.Request) -> web.StreamResponse:
        data: dict[str, Any] = await request.json() if request.content_type == "application/json" else dict(await request.post())
        if data.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type", "error_description": "Use grant_type=client_credentials."}, status=400)
        token = self.sb.mint(str(data.get("client_id", "")), str(data.get("client_secret", "")), str(data.get("scope", "")))
        if token is None:
            return web.json_response({"error": "invalid_client", "error_description": "Client authentication failed."}, status=401)
        return web.json_response(token, status=201)

    # --- objects ----------------------------------------------------------------------------
    def _object(self, request: web.Request) -> dict[str, Any] | None:
        return self.sb.objects.get(_strip(request.match_info["key"]))

    def _render_object(self, request: web.Request, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "url": f"{request.url.origin()}/api/v2/custom_objects/{obj['key']}.json"}

    async def list_objects(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"custom_objects": [self._render_object(request, o) for o in self.sb.objects.values()]})

    async def create_object(self, request: web.Request) -> web.StreamResponse:
        body = (await request.json()).get("custom_object") or {}
        key = body.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            return errors(400, "InvalidKey", "Invalid key", "key must be letters, digits and underscores, not only digits")
        if key in self.sb.objects:
            return errors(422, "DuplicateKey", "Key taken", f"a custom object with key {key!r} already exists")
        if not body.get("title") or not body.get("title_pluralized"):
            return errors(400, "InvalidAttribute", "Missing attribute", "title and title_pluralized are required")
        if len(self.sb.objects) >= self.sb.object_limit:
            return errors(422, "LimitExceeded", "Object limit reached", f"the account allows {self.sb.object_limit} custom objects")
        obj = self.sb.add_object(key, body["title"], body["title_pluralized"], body.get("description") or "")
        return web.json_response({"custom_object": self._render_object(request, obj)}, status=201)

    async def show_object(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        if obj is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        return web.json_response({"custom_object": self._render_object(request, obj)})

    async def update_object(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        if obj is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        body = (await request.json()).get("custom_object") or {}
        for name in ("title", "title_pluralized", "description"):
            if name in body:
                obj[name] = obj[f"raw_{name}"] = body[name]
        obj["updated_at"] = self.sb.now()
        return web.json_response({"custom_object": self._render_object(request, obj)})

    async def delete_object(self, request: web.Request) -> web.StreamResponse:
        if self._object(request) is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        self.sb.delete_object(_strip(request.match_info["key"]))
        return web.Response(status=204)

    async def object_limit(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"count": len(self.sb.objects), "limit": self.sb.object_limit})

    async def record_limit(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"count": self.sb.record_count(), "limit": self.sb.record_limit})

    # --- fields -----------------------------------------------------------------------------
    def _render_field(self, request: web.Request, key: str, field: dict[str, Any]) -> dict[str, Any]:
        return {**field, "url": f"{request.url.origin()}/api/v2/custom_objects/{key}/fields/{field['id']}.json"}

    async def list_fields(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        if obj is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        fields = [self._render_field(request, obj["key"], f) for f in self.sb.fields[obj["key"]]]
        if request.query.get("include_standard_fields", "").lower() == "true":
            fields = [*_standard_fields(), *fields]
        return web.json_response({"custom_object_fields": fields})

    async def show_field(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        field = None if obj is None else self.sb.field(obj["key"], _strip(request.match_info["field"]))
        if obj is None or field is None:
            return errors(404, "NotFound", "Not Found", "no such custom object field")
        return web.json_response({"custom_object_field": self._render_field(request, obj["key"], field)})

    async def field_limit(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        if obj is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        return web.json_response({"count": len(self.sb.fields[obj["key"]]), "limit": self.sb.field_limit})

    async def create_field(self, request: web.Request) -> web.StreamResponse:
        obj = self._object(request)
        if obj is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        spec = (await request.json()).get("custom_object_field") or {}
        problem = _field_problem(spec, self.sb.fields[obj["key"]])
        if problem:
            return web.json_response({"error": "RecordInvalid", "description": "Record validation errors", "details": {"base": [{"description": problem, "error": "InvalidValue"}]}}, status=422)
        if len(self.sb.fields[obj["key"]]) >= self.sb.field_limit:
            return errors(422, "LimitExceeded", "Field limit reached", f"an object allows {self.sb.field_limit} fields")
        lookups = sum(1 for f in self.sb.fields[obj["key"]] if f["type"] == "lookup")
        if spec.get("type") == "lookup" and lookups >= self.sb.lookup_limit:
            return errors(422, "LimitExceeded", "Lookup field limit reached", f"an object allows {self.sb.lookup_limit} lookup fields")
        field = self.sb.add_field(obj["key"], spec)
        return web.json_response({"custom_object_field": self._render_field(request, obj["key"], field)}, status=201)

    # --- jobs -------------------------------------------------------------------------------
    async def create_job(self, request: web.Request) -> web.StreamResponse:
        if self._object(request) is None:
            return errors(404, "NotFound", "Not Found", "no such custom object")
        job = (await request.json()).get("job") or {}
        action, items = job.get("action"), job.get("items")
        if action not in ACTIONS:
            return errors(400, "InvalidAction", "Invalid action", f"action must be one of: {', '.join(ACTIONS)}")
        if not isinstance(items, list) or not items:
            return errors(400, "InvalidItems", "Invalid items", "items must be a non-empty array")
        if len(items) > MAX_ITEMS:
            return errors(400, "TooManyItems", "Too many items", f"a job takes at most {MAX_ITEMS} items, got {len(items)}")
        refused = job_request_problem(action, items)
        if refused is not None:
            return web.json_response(refused[1], status=refused[0])
        try:
            status = self.sb.jobs.submit(_strip(request.match_info["key"]), action, items)
        except TooManyJobs as exc:
            return legacy(429, "TooManyJobs", str(exc))
        return web.json_response({"job_status": self.sb.jobs.render(status["id"], str(request.url.origin()))}, status=201)

    async def job_status(self, request: web.Request) -> web.StreamResponse:
        status = self.sb.jobs.render(_strip(request.match_info["id"]), str(request.url.origin()))
        if status is None:
            return legacy(404, "RecordNotFound", "Not found")
        return web.json_response({"job_status": status})

    async def job_statuses(self, request: web.Request) -> web.StreamResponse:
        origin = str(request.url.origin())
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        found = [self.sb.jobs.render(i, origin) for i in ids]
        return web.json_response({"job_statuses": [s for s in found if s is not None]})

    # --- users and organizations ----------------------------------------------------------------
    async def users_show_many(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_people("users", self.sb.users, request, "users"))

    async def organizations_show_many(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_people("organizations", self.sb.organizations, request, "organizations"))

    async def organizations_search(self, request: web.Request) -> web.StreamResponse:
        """`external_id` or `name`, not both; exact match, case-insensitive (the spec's words)."""
        origin, orgs = str(request.url.origin()), list(self.sb.organizations.values())
        if ("external_id" in request.query) == ("name" in request.query):
            return legacy(400, "InvalidParameter", "Search by exactly one of external_id and name")
        field = "external_id" if "external_id" in request.query else "name"
        wanted = request.query[field].casefold()
        found = [o for o in orgs if str(o.get(field) or "").casefold() == wanted]
        return web.json_response({"organizations": [_person(origin, "organizations", o) for o in found[:100]], "count": len(found), "next_page": None, "previous_page": None})

    async def export_users(self, request: web.Request) -> web.StreamResponse:
        return await zendesk_exports.export(request, "users", self.sb.users, self.sb.exports, self.sb.identities)

    async def export_organizations(self, request: web.Request) -> web.StreamResponse:
        return await zendesk_exports.export_by_time(request, "organizations", self.sb.organizations, self.sb.exports)

    async def export_records(self, request: web.Request) -> web.StreamResponse:
        return await zendesk_record_export.export(request, self.sb)

    async def users_search(self, request: web.Request) -> web.StreamResponse:
        origin, users = str(request.url.origin()), list(self.sb.users.values())
        if "external_id" in request.query:
            found = [u for u in users if u["external_id"] == request.query["external_id"]]
        else:
            query = request.query.get("query", "").strip()
            field, _, value = query.partition(":") if ":" in query else ("", "", query)
            value = value.strip().strip('"')
            if field in ("email", "name", "external_id"):
                found = [u for u in users if str(u.get(field) or "").lower() == value.lower()]
            else:
                found = [u for u in users if value.lower() in f"{u['name']} {u['email']}".lower()]
        return web.json_response({"users": [_person(origin, "users", u) for u in found[:100]], "count": len(found), "next_page": None, "previous_page": None})


def _person(origin: str, kind: str, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "url": f"{origin}/api/v2/{kind}/{row['id']}.json"}


def _people(kind: str, table: dict[int, dict[str, Any]], request: web.Request, key: str) -> dict[str, Any]:
    origin = str(request.url.origin())
    if "ids" in request.query:
        wanted = [int(i) for i in request.query["ids"].split(",") if i.strip().isdigit()][:100]
        rows = [table[i] for i in wanted if i in table]
    else:
        exts = set([e for e in request.query.get("external_ids", "").split(",") if e][:100])
        rows = [r for r in table.values() if r.get("external_id") in exts]
    return {key: [_person(origin, kind, r) for r in rows], "count": len(rows), "next_page": None, "previous_page": None}


def _field_problem(spec: dict[str, Any], existing: list[dict[str, Any]]) -> str:
    key, kind = spec.get("key"), spec.get("type", "text")
    if not isinstance(key, str) or not _KEY.match(key):
        return "key must be letters, digits and underscores, not only digits"
    if any(f["key"] == key for f in existing):
        return f"a field with key {key!r} already exists"
    if kind not in FIELD_TYPES:
        return f"type must be one of: {', '.join(FIELD_TYPES)}"
    if not spec.get("title"):
        return "title is required"
    if kind in ("dropdown", "multiselect"):
        options = spec.get("custom_field_options")
        if not isinstance(options, list) or not options or not all(isinstance(o, dict) and o.get("name") and o.get("value") for o in options):
            return "custom_field_options must be a non-empty list of {name, value}"
    if kind == "lookup" and not _TARGET.match(str(spec.get("relationship_target_type", ""))):
        return "relationship_target_type must be zen:user, zen:organization, zen:ticket or zen:custom_object:KEY"
    if kind == "regexp":
        try:
            re.compile(str(spec.get("regexp_for_validation") or ""))
        except re.error:
            return "regexp_for_validation is not a valid regular expression"
        if not spec.get("regexp_for_validation"):
            return "regexp_for_validation is required for a regexp field"
    return ""


def _standard_fields() -> list[dict[str, Any]]:
    return [
        {"id": 1, "key": "standard::name", "type": "text", "title": "Name", "active": True, "system": True, "position": 0},
        {"id": 2, "key": "standard::external_id", "type": "text", "title": "External ID", "active": True, "system": True, "position": 1},
    ]


__all__ = ["RecordInvalid", "build_app", "errors", "legacy"]
