"""A faithful Outreach API v2 simulator (aiohttp), read independently from `api/outreach.md`.

It serves custom object and standard records as JSON:API, the schema endpoint, OAuth
refresh-token rotation and the hourly rate limit, so bridge can be run, tested and
benchmarked without Outreach. It never imports bridge's own Outreach client.
Invariants:
- ids are integers, per type, increasing; `updatedAt` of API and state-API writes is
  strictly increasing (a monotonic microsecond stamp), while seeding may pass explicit
  equal stamps to exercise tie-breaking by id;
- each type keeps `(updatedAt, id)` keys sorted, so `sort=updatedAt` pages are bisected,
  not rescanned;
- every `/api/v2` request except `/api/v2/schema` needs a live bearer token (401
  `unauthorizedRequest`); bodies need `application/vnd.api+json` (415); every response
  carries the X-RateLimit headers, and an exhausted window answers 429 with Retry-After;
- a refresh rotates the refresh token and a client (one authorising user) may mint at most
  one access token per `mint_interval` seconds of the sandbox clock, else 429 with a
  whole-second Retry-After; access tokens live `access_ttl` seconds (fractions allowed) and
  answer 401 once expired. With `strict_rotation` (the default) a refresh token works once;
  without it the previous one keeps working for one more mint, as some providers allow
  (api/outreach.md leaves this unsure).
Offset paging (`page[offset]`) is refused with 400 rather than emulating its 10,000 cap.
"""

from __future__ import annotations

import bisect
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.sandbox import outreach_http
from bridge.sandbox.outreach_query import Rec, TypeDef, coerce, to_micros
from bridge.sandbox.outreach_webhooks import Webhooks

JSONAPI = "application/vnd.api+json"
STANDARD_TYPES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "prospect": (
        {"firstName": "string", "lastName": "string", "name": "string", "emails": "array", "title": "string"},
        {"account": "account", "owner": "user"},
    ),
    "user": ({"firstName": "string", "lastName": "string", "name": "string", "email": "string"}, {}),
    "account": ({"name": "string", "domain": "string"}, {"owner": "user"}),
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class OAuthClient:
    secret: str
    refresh_token: str
    last_mint: int | None = None  # sandbox-clock microseconds of the last access token minted
    previous_refresh: str | None = None  # still accepted once unless rotation is strict


class OutreachSandbox:
    """State and HTTP surface of one simulated Outreach organization."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rate_limit: int = 10_000,
        mint_interval: float = 60.0,
        access_ttl: float = 7200,
        strict_rotation: bool = True,
    ) -> None:
        self.clock = clock
        self.rate_limit = rate_limit
        self.mint_interval = mint_interval
        self.access_ttl = access_ttl
        self.strict_rotation = strict_rotation
        self.types: dict[str, TypeDef] = {}
        self._records: dict[str, dict[int, Rec]] = {}
        self._order: dict[str, list[tuple[int, int]]] = {}
        self._next_id: dict[str, int] = {}
        self._last_stamp = 0
        self._tokens: dict[str, int | None] = {}  # access token -> expiry (µs) or None
        self._clients: dict[str, OAuthClient] = {}
        self._window = (0, 0)  # (hour window start in seconds, requests counted in it)
        self._mid_listing: dict[str, list[Callable[[], None]]] = {}
        self.webhooks = Webhooks(self)
        for name, (attributes, relationships) in STANDARD_TYPES.items():
            self.add_type(name, custom_object=False, display_field=None, attributes=attributes, relationships=relationships)

    # --- types and records (the state API) ------------------------------------------------
    def add_type(
        self,
        name: str,
        *,
        custom_object: bool,
        display_field: str | None,
        attributes: dict[str, str],
        relationships: dict[str, str],
    ) -> None:
        """Declare a resource type; relationship targets are type names (`prospect`, `vehicle_brands`)."""
        rels = {rel: self.canonical(target) for rel, target in relationships.items()}
        self.types[name] = TypeDef(name, custom_object, display_field, dict(attributes), rels)
        self._records.setdefault(name, {})
        self._order.setdefault(name, [])
        self._next_id.setdefault(name, 1)

    def canonical(self, type_name: str) -> str:
        """`prospects` → `prospect`: standard types are singular in JSON:API, plural in paths."""
        if type_name.endswith("s") and type_name[:-1] in STANDARD_TYPES:
            return type_name[:-1]
        return type_name

    def typedef(self, type_name: str) -> TypeDef:
        name = self.canonical(type_name)
        if name not in self.types:
            raise KeyError(f"unknown Outreach type {type_name!r}; add it with add_type() first")
        return self.types[name]

    def stamp(self) -> int:
        """Now on the sandbox clock, in µs, strictly after every earlier stamp."""
        self._last_stamp = max(to_micros(self.clock()), self._last_stamp + 1)
        return self._last_stamp

    def put(
        self,
        type_name: str,
        attributes: dict[str, Any],
        relationships: dict[str, int | None] | None = None,
        *,
        at: datetime | int | None = None,
    ) -> int:
        """Create a record and return its id; `at` (datetime or µs) pins createdAt/updatedAt."""
        t = self.typedef(type_name)
        when = self.stamp() if at is None else (at if isinstance(at, int) else to_micros(at))
        self._last_stamp = max(self._last_stamp, when)
        rid = self._next_id[t.name]
        self._next_id[t.name] = rid + 1
        values: list[Any] = [None] * len(t.attributes)
        for key, value in attributes.items():
            values[t.index[key]] = coerce(t, key, value)
        rels: list[int | None] = [None] * len(t.relationships)
        for key, target in (relationships or {}).items():
            rels[t.rel_index[key]] = target
        rec = Rec(rid, when, when, values, rels)
        self._fill_name(t, rec)
        self._records[t.name][rid] = rec
        order = self._order[t.name]
        if not order or order[-1] < (when, rid):
            order.append((when, rid))
        else:
            bisect.insort(order, (when, rid))
        self._emit(t, rec, "created")
        return rid

    def update(self, type_name: str, record_id: int, **attributes: Any) -> None:
        """Change attributes of a record and bump its updatedAt."""
        t = self.typedef(type_name)
        rec = self._rec(t, record_id)
        for key, value in attributes.items():
            rec.values[t.index[key]] = coerce(t, key, value)
        self._fill_name(t, rec)
        self._touch(t, rec)
        self._emit(t, rec, "updated")

    def edit_mid_listing(self, type_name: str, edit: Callable[[], None]) -> None:
        """Run `edit` once, just before serving the next continuation page (`page[after]`)
        of a listing of this type: an edit made while a client is paging, at a known point."""
        self._mid_listing.setdefault(self.typedef(type_name).name, []).append(edit)

    def listing_continues(self, type_name: str) -> None:
        """Called before a continuation page of `type_name` is served: runs pending edits."""
        for edit in self._mid_listing.pop(type_name, []):
            edit()

    def serve_raw(self, type_name: str, record_id: int, **attributes: Any) -> None:
        """Serve these attributes verbatim, whatever their JSON type (a number for `updatedAt`,
        an object for a text field), until `serve_stored`; the record keeps its place in
        listings and filters, which read the stored values."""
        self._rec(self.typedef(type_name), record_id).raw.update(attributes)

    def serve_stored(self, type_name: str, record_id: int) -> None:
        """Serve the stored values of this record again."""
        self._rec(self.typedef(type_name), record_id).raw.clear()

    def set_relationship(self, type_name: str, record_id: int, name: str, target_id: int | None) -> None:
        t = self.typedef(type_name)
        rec = self._rec(t, record_id)
        rec.rels[t.rel_index[name]] = target_id
        self._touch(t, rec)
        self._emit(t, rec, "updated")

    def touch(self, type_name: str, ids: list[int]) -> None:
        """Bump updatedAt of these records without changing anything else."""
        t = self.typedef(type_name)
        for rid in ids:
            self._touch(t, rec := self._rec(t, rid))
            self._emit(t, rec, "updated")

    def delete(self, type_name: str, record_id: int) -> None:
        t = self.typedef(type_name)
        rec = self._records[t.name].pop(record_id)
        order = self._order[t.name]
        del order[bisect.bisect_left(order, (rec.updated, rec.id))]
        self._emit(t, rec, "destroyed")  # carries the last known attributes

    def get(self, type_name: str, record_id: int) -> dict[str, Any] | None:
        """The record as a JSON:API resource (without links), or None."""
        t = self.typedef(type_name)
        rec = self._records[t.name].get(record_id)
        return None if rec is None else outreach_http.resource(t, rec, None, "")

    def ids(self, type_name: str) -> list[int]:
        return list(self._records[self.typedef(type_name).name])

    def records_of(self, type_name: str) -> dict[int, Rec]:
        return self._records[self.typedef(type_name).name]

    def order_of(self, type_name: str) -> list[tuple[int, int]]:
        return self._order[self.typedef(type_name).name]

    def ids_where(self, type_name: str, field_name: str, values: set[str]) -> set[int]:
        """Ids of `type_name` records whose `field_name` is one of `values` (relationship filters)."""
        t = self.typedef(type_name)
        i = t.index[field_name]
        return {r.id for r in self._records[t.name].values() if r.values[i] in values}

    def _rec(self, t: TypeDef, record_id: int) -> Rec:
        rec = self._records[t.name].get(record_id)
        if rec is None:
            raise KeyError(f"no {t.name} record with id {record_id}")
        return rec

    def _emit(self, t: TypeDef, rec: Rec, action: str) -> None:
        if not t.custom_object and self.webhooks.hooks:  # custom objects send no events
            self.webhooks.emit(t.name, action, outreach_http.resource(t, rec, None, ""))

    def _touch(self, t: TypeDef, rec: Rec) -> None:
        order = self._order[t.name]
        del order[bisect.bisect_left(order, (rec.updated, rec.id))]
        rec.updated = self.stamp()
        order.append((rec.updated, rec.id))

    def _fill_name(self, t: TypeDef, rec: Rec) -> None:
        if not t.custom_object and "name" in t.index and "firstName" in t.index:
            first, last = rec.values[t.index["firstName"]], rec.values[t.index["lastName"]]
            rec.values[t.index["name"]] = " ".join(p for p in (first, last) if p) or None

    # --- auth ---------------------------------------------------------------------------
    def issue_token(self) -> str:
        """A valid access token that does not expire (until expire_tokens())."""
        token = secrets.token_urlsafe(24)
        self._tokens[token] = None
        return token

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        self._tokens.clear()

    def add_oauth_client(self, client_id: str, client_secret: str) -> str:
        """Register an OAuth client; returns its first refresh token."""
        refresh = secrets.token_urlsafe(32)
        self._clients[client_id] = OAuthClient(client_secret, refresh)
        return refresh

    def token_valid(self, token: str) -> bool:
        if token not in self._tokens:
            return False
        expiry = self._tokens[token]
        return expiry is None or to_micros(self.clock()) < expiry

    def mint(self, client_id: str, client_secret: str, refresh_token: str) -> tuple[int, dict[str, Any]]:
        """Exchange a refresh token: (status, body). Rotates the refresh token on success."""
        client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, client_secret):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed."}
        if not self._grant_live(client, refresh_token):
            return 400, {"error": "invalid_grant", "error_description": "The refresh token is invalid, expired or revoked."}
        now = to_micros(self.clock())
        if client.last_mint is not None and now - client.last_mint < self.mint_interval * 1e6:
            wait = math.ceil((client.last_mint + self.mint_interval * 1e6 - now) / 1e6)
            return 429, {"retry_after": max(wait, 1), "interval": self.mint_interval}
        client.last_mint = now
        client.previous_refresh = None if self.strict_rotation else client.refresh_token
        client.refresh_token = secrets.token_urlsafe(32)
        access = secrets.token_urlsafe(24)
        self._tokens[access] = now + round(self.access_ttl * 1_000_000)
        ttl = self.access_ttl
        return 200, {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
            "refresh_token": client.refresh_token,
            "scope": "custom_objects.all prospects.read users.read accounts.read",
            "created_at": now // 1_000_000,
        }

    def _grant_live(self, client: OAuthClient, refresh_token: str) -> bool:
        if secrets.compare_digest(client.refresh_token, refresh_token):
            return True
        previous = client.previous_refresh
        return previous is not None and secrets.compare_digest(previous, refresh_token)

    # --- rate limit -----------------------------------------------------------------------
    def rate_hit(self) -> tuple[bool, int, int]:
        """Count one request: (allowed, remaining, reset epoch seconds) for the hour window."""
        now = to_micros(self.clock()) // 1_000_000
        start = now - now % 3600
        if self._window[0] != start:
            self._window = (start, 0)
        used = self._window[1]
        if used >= self.rate_limit:
            return False, 0, start + 3600
        self._window = (start, used + 1)
        return True, self.rate_limit - used - 1, start + 3600

    def now_seconds(self) -> int:
        return to_micros(self.clock()) // 1_000_000

    def make_app(self, outer: list[Any]) -> web.Application:
        """The aiohttp application; `outer` middlewares (counters, faults) run first."""
        return outreach_http.build_app(self, outer)


__all__ = ["JSONAPI", "OutreachSandbox"]
