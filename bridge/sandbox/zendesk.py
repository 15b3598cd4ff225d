"""A faithful Zendesk custom objects API simulator, read independently from `api/zendesk.md`
and `api/zendesk-oas.yaml`. This module holds the account state and its rules; the routes
are in `zendesk_http.py`, bulk jobs in `zendesk_jobs.py`, record validation in
`zendesk_records.py`. It never imports bridge's own Zendesk client.

Invariants:
- record ids are ULID-like, time-ordered and strictly increasing, so a per-object id list
  in creation order is also sorted and cursor paging bisects it;
- `external_id` is unique per object (an index maps it to the record id);
- a write either passes every validation rule and is stored whole, or changes nothing;
- auth accepts OAuth client-credentials tokens until they expire (`token_ttl`), static
  bearer tokens, and Basic `{email}/token:{api_token}`; `expire_tokens()` kills them all;
- the per-minute request window answers 429 with Retry-After once `rate_limit` is used, counting
  every caller of the account together (whatever its credentials), as Zendesk does; tests may
  shorten the window (`rate_window`, seconds) so that a budget's effect shows in seconds.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.sandbox import zendesk_http
from bridge.sandbox.zendesk_exports import Exports
from bridge.sandbox.zendesk_jobs import JobRunner
from bridge.sandbox.zendesk_record_export import RecordChanges
from bridge.sandbox.zendesk_records import RecordInvalid, check_fields, check_record, problem

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ADMIN_USER_ID = "10001"
AGENT_USER_ID = "10002"  # who changes records "by hand", in the Zendesk UI


def _utcnow() -> datetime:
    return datetime.now(UTC)


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ZendeskSandbox:
    """State and HTTP surface of one simulated Zendesk account."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rate_limit: int = 100_000,
        rate_window: int = 60,
        token_ttl: int = 3600,
        object_limit: int = 30,
        field_limit: int = 100,
        record_limit: int = 50_000_000,
        lookup_limit: int | None = None,
        max_jobs: int = 30,
        job_delay: float = 0.0,
        rng_seed: int = 0,
        export_rate_limit: int = 10,
    ) -> None:
        self.clock = clock
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.token_ttl = token_ttl
        self.object_limit = object_limit
        self.field_limit = field_limit
        self.record_limit = record_limit
        # 5 lookup fields per object on Suite Team/Growth (3 or 5 objects), else 10 (api/zendesk.md)
        self.lookup_limit = lookup_limit if lookup_limit is not None else (5 if object_limit <= 5 else 10)
        self.objects: dict[str, dict[str, Any]] = {}
        self.fields: dict[str, list[dict[str, Any]]] = {}
        self._records: dict[str, dict[str, dict[str, Any]]] = {}
        self._ids: dict[str, list[str]] = {}
        self._by_ext: dict[str, dict[str, str]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self._next_numeric = 360_000_000_001
        self._field_id = 4_398_096_842_879
        self._rng = random.Random(rng_seed)
        self._ulid_last = (0, 0)
        self._tokens: dict[str, float | None] = {}  # bearer token -> expiry (epoch s) or None
        self._api_tokens: dict[str, str] = {}  # api token -> email
        self._clients: dict[str, str] = {}
        self._window = (0, 0)
        self.jobs = JobRunner(self, max_jobs=max_jobs, delay=job_delay)
        # incremental exports: change log, tombstones, their own 10 requests/min (api/zendesk.md)
        self.exports = Exports(clock, rate_limit=export_rate_limit)
        self.record_changes = RecordChanges(clock)  # the custom object record export's log
        self.user_emails: dict[int, list[str]] = {}  # every email identity, primary first
        # called with (object key, "create" | "update", stored record, fields sent) after each write
        self.write_hooks: list[Callable[[str, str, dict[str, Any], dict[str, Any]], None]] = []

    # --- ids and time ------------------------------------------------------------------
    def now(self) -> str:
        return iso_seconds(self.clock())

    def new_ulid(self) -> str:
        """A 26-character ULID, strictly greater than every one before it."""
        ms = int(self.clock().timestamp() * 1000)
        last_ms, last_rand = self._ulid_last
        rand = last_rand + 1 if ms <= last_ms else self._rng.getrandbits(79)
        ms = max(ms, last_ms)
        self._ulid_last = (ms, rand)
        value = (ms << 80) | rand
        return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))

    def _numeric_id(self) -> int:
        self._next_numeric += 1
        return self._next_numeric

    # --- objects and fields -------------------------------------------------------------------
    def add_object(self, key: str, title: str, title_pluralized: str, description: str = "") -> dict[str, Any]:
        """Create a custom object (state API; the route applies the object limit first)."""
        now = self.now()
        obj = {
            "key": key, "title": title, "title_pluralized": title_pluralized, "description": description,
            "raw_title": title, "raw_title_pluralized": title_pluralized, "raw_description": description,
            "include_in_list_view": True, "allows_photos": False,
            "created_at": now, "updated_at": now, "created_by_user_id": ADMIN_USER_ID, "updated_by_user_id": ADMIN_USER_ID,
        }  # fmt: skip
        self.objects[key] = obj
        self.fields[key] = []
        self._records[key] = {}
        self._ids[key] = []
        self._by_ext[key] = {}
        return obj

    def delete_object(self, key: str) -> None:
        self.record_changes.forget(key)
        for table in (self.objects, self.fields, self._records, self._ids, self._by_ext):
            table.pop(key, None)

    def add_field(self, object_key: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a field from a `custom_object_field` payload (already validated)."""
        self._field_id += 1
        now = self.now()
        field = {
            "id": self._field_id, "key": spec["key"], "type": spec.get("type", "text"), "title": spec.get("title", spec["key"]),
            "description": spec.get("description", ""), "raw_title": spec.get("title", spec["key"]),
            "raw_description": spec.get("description", ""), "position": len(self.fields[object_key]), "active": True,
            "system": False, "regexp_for_validation": spec.get("regexp_for_validation"),
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        if field["type"] in ("dropdown", "multiselect"):
            field["custom_field_options"] = [
                {"id": self._field_id * 10 + i, "name": o["name"], "raw_name": o["name"], "value": o["value"], "position": i}
                for i, o in enumerate(spec.get("custom_field_options") or [])
            ]
        if field["type"] == "lookup":
            field["relationship_target_type"] = spec["relationship_target_type"]
        self.fields[object_key].append(field)
        return field

    def field(self, object_key: str, key_or_id: str) -> dict[str, Any] | None:
        return next((f for f in self.fields.get(object_key, []) if f["key"] == key_or_id or str(f["id"]) == key_or_id), None)

    # --- records ----------------------------------------------------------------------------
    def records(self, object_key: str) -> list[dict[str, Any]]:
        """Every record of an object, oldest first, as Zendesk would render it (without url)."""
        return [self.render(object_key, self._records[object_key][i]) for i in self._ids[object_key]]

    def record(self, object_key: str, record_id: str) -> dict[str, Any] | None:
        return self._records.get(object_key, {}).get(record_id)

    def record_table(self, object_key: str) -> dict[str, dict[str, Any]]:
        """Stored records of an object by id (not rendered; do not mutate)."""
        return self._records[object_key]

    def record_ids(self, object_key: str) -> list[str]:
        return self._ids[object_key]

    def record_by_external_id(self, object_key: str, external_id: str) -> dict[str, Any] | None:
        rid = self._by_ext.get(object_key, {}).get(external_id)
        return None if rid is None else self.render(object_key, self._records[object_key][rid])

    def record_count(self) -> int:
        return sum(len(r) for r in self._records.values())

    def render(self, object_key: str, rec: dict[str, Any], origin: str = "") -> dict[str, Any]:
        values = rec["custom_object_fields"]
        out = {**rec, "custom_object_fields": {f["key"]: values.get(f["key"]) for f in self.fields[object_key]}}
        if origin:
            out["url"] = f"{origin}/api/v2/custom_objects/{object_key}/records/{rec['id']}.json"
        return out

    def create_record(self, object_key: str, payload: dict[str, Any], *, by_hand: bool = False) -> dict[str, Any]:
        """Validate and store a new record; RecordInvalid if it breaks a rule. `by_hand`: an
        agent in the Zendesk UI made it, so it is not in the write log of API writes."""
        ext = payload.get("external_id")
        if ext is not None and ext in self._by_ext[object_key]:
            raise RecordInvalid({"external_id": problem(f"external_id {ext!r} is already taken", "DuplicateValue")})
        if self.record_count() >= self.record_limit:
            raise RecordInvalid({"base": problem("The account's record limit is reached", "LimitExceeded")})
        values = check_fields(self.fields[object_key], payload.get("custom_object_fields") or {}, self.resolve)
        now, rid = self.now(), self.new_ulid()
        rec: dict[str, Any] = {
            "id": rid, "name": payload.get("name"), "external_id": ext, "custom_object_key": object_key,
            "custom_object_fields": values, "created_at": now, "updated_at": now,
            "created_by_user_id": AGENT_USER_ID if by_hand else ADMIN_USER_ID,
            "updated_by_user_id": AGENT_USER_ID if by_hand else ADMIN_USER_ID,
        }  # fmt: skip
        check_record(rec, creating=True)
        self._records[object_key][rid] = rec
        self._ids[object_key].append(rid)
        if ext is not None:
            self._by_ext[object_key][ext] = rid
        self.record_changes.touch(object_key, rid)
        for hook in [] if by_hand else self.write_hooks:
            hook(object_key, "create", rec, values)
        return rec

    def update_record(
        self, object_key: str, record_id: str, payload: dict[str, Any], *, by_hand: bool = False
    ) -> dict[str, Any]:
        """Change only what `payload` sends; RecordInvalid if the result breaks a rule. `by_hand`:
        an agent in the Zendesk UI changed it, so it is not in the write log of API writes."""
        rec = self._records[object_key][record_id]
        values = check_fields(self.fields[object_key], payload.get("custom_object_fields") or {}, self.resolve)
        merged = {**rec, "custom_object_fields": {**rec["custom_object_fields"], **values}, "updated_at": self.now(),
                  "updated_by_user_id": AGENT_USER_ID if by_hand else ADMIN_USER_ID}  # fmt: skip
        if "name" in payload:
            merged["name"] = payload["name"]
        new_ext = payload.get("external_id", rec["external_id"])
        if new_ext != rec["external_id"] and new_ext in self._by_ext[object_key]:
            raise RecordInvalid({"external_id": problem(f"external_id {new_ext!r} is already taken", "DuplicateValue")})
        merged["external_id"] = new_ext
        check_record(merged, creating=False)
        if rec["external_id"] is not None:
            self._by_ext[object_key].pop(rec["external_id"], None)
        if new_ext is not None:
            self._by_ext[object_key][new_ext] = record_id
        rec.update(merged)
        self.record_changes.touch(object_key, record_id)
        for hook in [] if by_hand else self.write_hooks:
            hook(object_key, "update", rec, values)
        return rec

    def upsert_by_external_id(self, object_key: str, external_id: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(record, created): update the record with this external id, or create it."""
        rid = self._by_ext[object_key].get(external_id)
        body = {**payload, "external_id": external_id}
        if rid is None:
            return self.create_record(object_key, body), True
        return self.update_record(object_key, rid, body), False

    def upsert_by_name(self, object_key: str, name: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        rid = next((r["id"] for r in self._records[object_key].values() if r["name"] == name), None)
        body = {**payload, "name": name}
        if rid is None:
            return self.create_record(object_key, body), True
        return self.update_record(object_key, rid, body), False

    def delete_record(self, object_key: str, record_id: str) -> bool:
        rec = self._records[object_key].pop(record_id, None)
        if rec is None:
            return False
        ids = self._ids[object_key]
        ids.remove(record_id)
        if rec["external_id"] is not None:
            self._by_ext[object_key].pop(rec["external_id"], None)
        self.record_changes.bury(object_key, rec, self.now())
        return True

    def delete_record_by_external_id(self, object_key: str, external_id: str) -> bool:
        rid = self._by_ext[object_key].get(external_id)
        return rid is not None and self.delete_record(object_key, rid)

    # --- users and organizations --------------------------------------------------------------
    def add_user(self, name: str, email: str, external_id: str | None = None, *, other_emails: tuple[str, ...] = ()) -> int:
        uid, now = self._numeric_id(), self.now()
        self.users[uid] = {
            "id": uid, "name": name, "email": email, "external_id": external_id, "role": "end-user",
            "active": True, "verified": True, "created_at": now, "updated_at": now,
        }  # fmt: skip
        self.user_emails[uid] = [email, *other_emails]
        self.exports.touch("users", uid)
        return uid

    def update_user(self, user_id: int, **changes: Any) -> None:
        """Changes a user's attributes (`email` replaces the primary identity)."""
        row = self.users[user_id]
        row.update(changes, updated_at=self.now())
        if "email" in changes:
            self.user_emails[user_id] = [changes["email"], *self.user_emails.get(user_id, [])[1:]]
        self.exports.touch("users", user_id)

    def add_organization(self, name: str, external_id: str | None = None) -> int:
        oid, now = self._numeric_id(), self.now()
        self.organizations[oid] = {"id": oid, "name": name, "external_id": external_id, "created_at": now, "updated_at": now}
        self.exports.touch("organizations", oid)
        return oid

    def delete_user(self, user_id: int) -> None:
        row = self.users.pop(user_id, None)
        if row is not None:
            self.exports.bury("users", row, self.now())

    def delete_organization(self, org_id: int) -> None:
        row = self.organizations.pop(org_id, None)
        if row is not None:
            self.exports.bury("organizations", row, self.now())

    def identities(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The email identities of `users`, as the exports sideload them."""
        out: list[dict[str, Any]] = []
        for user in users:
            for n, value in enumerate(self.user_emails.get(int(user["id"]), [])):
                out.append({"id": int(user["id"]) * 100 + n, "user_id": user["id"], "type": "email",
                            "value": value, "primary": n == 0, "verified": True})  # fmt: skip
        return out

    def resolve(self, target_type: str, ref: str) -> str | None:
        """A lookup reference (`"123"`, `"external_id:X"`, `"name:X"`) as the target's id."""
        how, _, value = ref.partition(":") if ref.startswith(("external_id:", "name:")) else ("id", "", ref)
        if target_type.startswith("zen:custom_object:"):
            key = target_type.removeprefix("zen:custom_object:")
            if how == "id":
                return value if value in self._records.get(key, {}) else None
            if how == "external_id":
                return self._by_ext.get(key, {}).get(value)
            rows: list[dict[str, Any]] = list(self._records.get(key, {}).values())
        elif target_type in ("zen:user", "zen:organization"):
            table = self.users if target_type == "zen:user" else self.organizations
            if how == "id":
                return value if value.isdigit() and int(value) in table else None
            rows = list(table.values())
        else:  # zen:ticket: the sandbox keeps no tickets; numeric ids are accepted as they are
            return value if how == "id" and value.isdigit() else None
        return next((str(r["id"]) for r in rows if r.get(how) == value), None)

    # --- auth and rate limit -------------------------------------------------------------------
    def add_oauth_client(self, client_id: str, client_secret: str) -> None:
        self._clients[client_id] = client_secret

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = None
        return token

    def add_api_token(self, email: str) -> str:
        token = secrets.token_urlsafe(30)
        self._api_tokens[token] = email
        return token

    def expire_tokens(self) -> None:
        """Every bearer and API token answers 401 from now on."""
        self._tokens.clear()
        self._api_tokens.clear()

    def mint(self, client_id: str, client_secret: str, scope: str) -> dict[str, Any] | None:
        """A client-credentials token, or None when the client is unknown or the secret wrong."""
        secret = self._clients.get(client_id)
        if secret is None or not secrets.compare_digest(secret, client_secret):
            return None
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.clock().timestamp() + self.token_ttl
        return {"access_token": token, "token_type": "bearer", "scope": scope or "read write", "expires_in": self.token_ttl}

    def authenticated(self, header: str) -> bool:
        scheme, _, cred = header.partition(" ")
        if scheme.lower() == "bearer":
            expiry = self._tokens.get(cred.strip(), 0.0)
            return expiry is None or expiry > self.clock().timestamp()
        if scheme.lower() == "basic":
            try:
                user, _, secret = base64.b64decode(cred.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            email, _, kind = user.partition("/")
            return kind == "token" and self._api_tokens.get(secret) == email
        return False

    def rate_hit(self) -> tuple[bool, int, int]:
        """Count one request in the account's window: (allowed, remaining, seconds to reset)."""
        now = int(self.clock().timestamp())
        window = max(int(self.rate_window), 1)
        start = now - now % window
        if self._window[0] != start:
            self._window = (start, 0)
        used = self._window[1]
        if used >= self.rate_limit:
            return False, 0, max(start + window - now, 1)
        self._window = (start, used + 1)
        return True, self.rate_limit - used - 1, start + window - now

    # --- wiring -------------------------------------------------------------------------------
    def make_app(self, outer: list[Any]) -> web.Application:
        return zendesk_http.build_app(self, outer)

    def start_jobs(self) -> None:
        self.jobs.start()

    async def stop_jobs(self) -> None:
        await self.jobs.stop()
