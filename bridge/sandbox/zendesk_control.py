"""Control endpoints of the Zendesk simulator: changes "by hand" and the exports' switches.

An agent in the Zendesk UI creates, edits and deletes records without bridge: such a change
bumps `updated_at`, shows in the record export and in the listing, but is neither counted as a
request nor logged among the API writes (`/_sandbox/writes`). Tests and other processes make
them here (under `/_sandbox/zendesk/...`, so never counted nor faulted):

- `POST /_sandbox/zendesk/records/create` `{"object", "name", "external_id"?, "fields"?}` →
  201 `{"record"}`: a record made by hand (say, with bridge's external-id prefix, unknown to it);
- `POST /_sandbox/zendesk/records/edit` `{"object", "id" | "external_id", "name"?, "fields"?}` →
  200 `{"record"}`: only what is sent changes, validated as the UI would;
- `POST /_sandbox/zendesk/records/delete` `{"object", "id" | "external_id"}` → 200
  `{"deleted": id}`: the record goes, its tombstone stays in the export for 30 days;
- `POST /_sandbox/zendesk/exports` `{"rate_limit"?, "record_export_unavailable"?: 403 | 404 |
  null, "expire_cursors"?: true, "hold_back_seconds"?}` → 200 `{"rate_limit",
  "record_export_unavailable", "hold_back_seconds"}`: the exports' shared per-minute limit,
  the record export switched off as on an account without it, every record-export cursor
  handed out so far made invalid, changes younger than this left out of the record export
  until they are older (0, the default, serves every change at once).

A missing object or record is 404, a bad body 400, a change Zendesk would refuse 422 with the
`RecordInvalid` body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.sandbox.zendesk import ZendeskSandbox
from bridge.sandbox.zendesk_record_export import UNAVAILABLE_BODIES
from bridge.sandbox.zendesk_records import RecordInvalid

PREFIX = "/_sandbox/zendesk"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_routes(app: web.Application, zendesk: ZendeskSandbox) -> None:
    control = _Control(zendesk)
    app.router.add_post(f"{PREFIX}/records/create", _guarded(control.create))
    app.router.add_post(f"{PREFIX}/records/edit", _guarded(control.edit))
    app.router.add_post(f"{PREFIX}/records/delete", _guarded(control.delete))
    app.router.add_post(f"{PREFIX}/exports", _guarded(control.exports))


def _guarded(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise _Refused(400, "the body must be a JSON object")
            return web.json_response(handler(body), status=201 if request.path.endswith("/create") else 200)
        except RecordInvalid as exc:
            return web.json_response(exc.body(), status=422)
        except _Refused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad control request: {exc!r}"}, status=400)

    return handle


class _Control:
    def __init__(self, zendesk: ZendeskSandbox) -> None:
        self.zd = zendesk

    def _object(self, body: dict[str, Any]) -> str:
        key = str(body["object"])
        if key not in self.zd.objects:
            raise _Refused(404, f"no custom object {key!r}")
        return key

    def _record_id(self, key: str, body: dict[str, Any]) -> str:
        if "id" in body:
            found = self.zd.record(key, str(body["id"]))
        else:
            found = self.zd.record_by_external_id(key, str(body["external_id"]))
        if found is None:
            raise _Refused(404, f"no {key} record with {body.get('id') or body.get('external_id')!r}")
        return str(found["id"])

    def _payload(self, body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {k: body[k] for k in ("name", "external_id") if k in body}
        fields = body.get("fields", {})
        if not isinstance(fields, dict):
            raise _Refused(400, "fields must be an object of field key to value")
        payload["custom_object_fields"] = fields
        return payload

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self._object(body)
        record = self.zd.create_record(key, self._payload(body), by_hand=True)
        return {"record": self.zd.render(key, record)}

    def edit(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self._object(body)
        rid = self._record_id(key, body)
        payload = self._payload({k: v for k, v in body.items() if k != "external_id"})
        return {"record": self.zd.render(key, self.zd.update_record(key, rid, payload, by_hand=True))}

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self._object(body)
        rid = self._record_id(key, body)
        self.zd.delete_record(key, rid)
        return {"deleted": rid}

    def exports(self, body: dict[str, Any]) -> dict[str, Any]:
        changes = self.zd.record_changes
        if "rate_limit" in body:
            self.zd.exports.rate_limit = int(body["rate_limit"])
        if "record_export_unavailable" in body:
            status = body["record_export_unavailable"]
            if status is not None and status not in UNAVAILABLE_BODIES:
                raise _Refused(400, f"record_export_unavailable must be null or one of {sorted(UNAVAILABLE_BODIES)}")
            changes.unavailable = status
        if body.get("expire_cursors"):
            changes.expire_cursors()
        if "hold_back_seconds" in body:
            changes.hold_back = max(float(body["hold_back_seconds"]), 0.0)
        return {"rate_limit": self.zd.exports.rate_limit, "record_export_unavailable": changes.unavailable,
                "hold_back_seconds": changes.hold_back}  # fmt: skip
