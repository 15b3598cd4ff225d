"""The JSON:API envelope as Outreach sends it, parsed tolerantly into `models` dataclasses.

This is the pydantic boundary of the Outreach client (api/outreach.md, "Envelope"): unknown
keys are ignored, ids may be integers or strings and become strings, `updatedAt` is read with
millisecond or microsecond precision, and relationships keep only what bridge can use — a
to-one `data` object becomes a `RelatedRef`, an explicit `null` becomes None, link-only and
to-many relationships are left out. Resources are read one by one: a malformed one (a
wrong JSON type, an unreadable `updatedAt`) becomes a record that carries its `problem` and
is dead-lettered downstream, so one bad record never costs its page. Only an envelope that
is not JSON:API, or a resource without a readable type and id, raises `ValueError` (via
pydantic), which the client turns into an `ApiError`.

A listing page holds up to 1,000 resources, so each is first read by `_fast_record`, plain
code for the one shape Outreach sends (typed fields, nothing to coerce). It gives the record
pydantic would give, or None for any other shape, and then pydantic reads the resource and
says what is wrong with it: the fast path never decides that a resource is malformed.
Attribute objects are the decoded body's own (no copy): nothing downstream changes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bridge.http.transport import Response, generic_error_detail
from bridge.logs import get_logger
from bridge.outreach.models import OutreachId, Page, RelatedRef, SourceRecord
from bridge.redact import redact_text

log = get_logger(__name__)


def _id_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("an id must be an integer or a string")
    if isinstance(value, int):
        return str(value)
    return value


WireId = Annotated[str, BeforeValidator(_id_to_str)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireRef(_Tolerant):
    type: str
    id: WireId


class WireRelationship(_Tolerant):
    data: WireRef | list[WireRef] | None = None


class WireResource(_Tolerant):
    type: str
    id: WireId
    attributes: dict[str, Any] = {}
    relationships: dict[str, WireRelationship] = {}


class WireLinks(_Tolerant):
    next: str | None = None


class WireList(_Tolerant):
    data: list[Any]  # resources, each read on its own by `read_resource`
    included: list[Any] = []
    links: WireLinks | None = None


class WireOne(_Tolerant):
    data: dict[str, Any]
    included: list[Any] = []


def parse_timestamp(value: Any) -> datetime | None:
    """`2024-07-25T13:18:30.000Z` or `...30.736332Z` → aware UTC datetime; None if absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"updatedAt must be a timestamp string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"updatedAt {value[:40]!r} is not an ISO 8601 timestamp ({exc})") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def to_record(resource: WireResource) -> SourceRecord:
    relationships: dict[str, RelatedRef | None] = {}
    for name, rel in resource.relationships.items():
        if "data" not in rel.model_fields_set or isinstance(rel.data, list):
            continue  # link-only or to-many: not a single target
        relationships[name] = (
            None if rel.data is None else RelatedRef(rel.data.type, OutreachId(rel.data.id))
        )
    return SourceRecord(
        type=resource.type,
        id=OutreachId(resource.id),
        attributes=resource.attributes,
        relationships=relationships,
        updated_at=parse_timestamp(resource.attributes.get("updatedAt")),
    )


def read_resource(raw: Any) -> SourceRecord | None:
    """One resource → its record; a malformed one → a record carrying its `problem` (and the
    attributes, when they are an object), or None (logged) when it has no readable type and id."""
    try:
        record = _fast_record(raw)
        return record if record is not None else to_record(WireResource.model_validate(raw))
    except ValueError as exc:  # pydantic's ValidationError is one
        problem = _problem(exc)
    identity = _identity(raw)
    if identity is None:
        log.warning("record_unreadable", problem=problem)
        return None
    attributes = raw.get("attributes")
    kept = dict(attributes) if isinstance(attributes, dict) else {}
    return SourceRecord(identity[0], identity[1], kept, {}, None, problem=problem)


def _fast_record(raw: Any) -> SourceRecord | None:
    """The record of a well-formed resource, as `to_record` would make it; None for any
    other shape. Raises ValueError only for an unreadable `updatedAt`, as `to_record` does."""
    if raw.__class__ is not dict:
        return None
    kind, ident = raw.get("type"), raw.get("id")
    ident = _fast_id(ident)
    if kind.__class__ is not str or ident is None:
        return None
    attributes = raw.get("attributes", _ABSENT)
    if attributes is _ABSENT:
        attributes = {}
    elif attributes.__class__ is not dict:
        return None
    relationships = _fast_relationships(raw.get("relationships", _ABSENT))
    if relationships is None:
        return None
    updated_at = parse_timestamp(attributes.get("updatedAt"))
    return SourceRecord(kind, ident, attributes, relationships, updated_at)


_ABSENT: Any = object()


def _fast_id(value: Any) -> OutreachId | None:
    # OutreachId is a NewType: calling it only costs a call, so the str is returned as one
    if value.__class__ is str:
        return value  # type: ignore[return-value]
    return str(value) if value.__class__ is int else None  # type: ignore[return-value]  # a bool's class is bool


def _fast_relationships(raw: Any) -> dict[str, RelatedRef | None] | None:
    if raw is _ABSENT:
        return {}
    if raw.__class__ is not dict:
        return None
    out: dict[str, RelatedRef | None] = {}
    for name, rel in raw.items():
        if rel.__class__ is not dict:
            return None
        if "data" not in rel:
            continue  # link-only
        data = rel["data"]
        if data is None:
            out[name] = None
        elif data.__class__ is dict:  # _fast_ref, inlined: two relationships a record, or more
            kind, ident = data.get("type"), _fast_id(data.get("id"))
            if kind.__class__ is not str or ident is None:
                return None
            out[name] = RelatedRef(kind, ident)
        elif data.__class__ is not list or not all(
            item.__class__ is dict and _fast_ref(item) for item in data
        ):
            return None  # to-many: left out, once every item is a readable reference
    return out


def _fast_ref(data: dict[str, Any]) -> RelatedRef | None:
    kind, ident = data.get("type"), _fast_id(data.get("id"))
    if kind.__class__ is not str or ident is None:
        return None
    return RelatedRef(kind, ident)


def _identity(raw: Any) -> tuple[str, OutreachId] | None:
    if not isinstance(raw, dict):
        return None
    kind, ident = raw.get("type"), raw.get("id")
    if not isinstance(kind, str) or not kind or isinstance(ident, bool):
        return None
    if isinstance(ident, int) or (isinstance(ident, str) and ident):
        return kind, OutreachId(str(ident))
    return None


def _problem(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "resource"
        return f"{where}: {first['msg']}"
    return str(exc)


def _included(resources: list[Any]) -> dict[tuple[str, OutreachId], dict[str, Any]]:
    """Attributes of the included resources that have a type, an id and an attributes object."""
    out: dict[tuple[str, OutreachId], dict[str, Any]] = {}
    for raw in resources:
        identity = _identity(raw)
        attributes = raw.get("attributes") if identity is not None else None
        if identity is not None and isinstance(attributes, dict):
            out[identity] = dict(attributes)
    return out


def to_page(body: Any, url: str, next_url: str | None) -> Page:
    """A list body → `Page`; raises ValueError (pydantic's) when the envelope is not JSON:API."""
    wire = WireList.model_validate(body)
    return Page(
        records=[r for r in map(read_resource, wire.data) if r is not None],
        url=url,
        next_url=next_url,
        included=_included(wire.included),
    )


def to_single(body: Any) -> SourceRecord:
    """A single-resource body → its record (with its `problem` when malformed)."""
    record = read_resource(WireOne.model_validate(body).data)
    if record is None:
        raise ValueError("data: the resource has no readable type and id")
    return record


def error_detail(resp: Response, *, codes_only: bool = False) -> str:
    """The one reading of Outreach's error bodies, redacted and short.

    JSON:API `{"errors": [{"id", "title", "detail" | "details", "source": {"pointer"}}]}`
    (api/outreach.md, "Rate limits and errors") → "id: detail (at pointer); …"; any other
    body → the generic reading. With `codes_only` (the token endpoint, whose descriptions may
    echo the form that was sent) only error codes come back: OAuth's bare `error` code
    (`invalid_grant`), or the JSON:API ids, never free text.
    """
    try:
        body = json.loads(resp.body)
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        items = [e for e in errors[:5] if isinstance(e, Mapping)]
        if codes_only:
            return "; ".join(filter(None, (_code(e.get("id")) for e in items)))
        return redact_text("; ".join(filter(None, map(_one_error, items))))[:500]
    if codes_only:
        return _code(body.get("error")) if isinstance(body, dict) else ""
    return generic_error_detail(resp)


def _one_error(error: Mapping[str, Any]) -> str:
    ident = error.get("id") or error.get("title") or ""
    detail = error.get("detail") or error.get("details") or error.get("title") or ""
    source = error.get("source")
    pointer = source.get("pointer") if isinstance(source, Mapping) else None
    text = f"{ident}: {detail}" if ident and detail and ident != detail else str(ident or detail)
    return f"{text} (at {pointer})" if pointer else text


def _code(value: Any) -> str:
    """An error code as sent (letters, digits, underscores), or "" for anything else."""
    if isinstance(value, str) and value.replace("_", "").isalnum():
        return value[:64]
    return ""
