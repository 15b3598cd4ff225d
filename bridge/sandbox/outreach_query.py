"""The Outreach simulator's record model and list query engine: filters, sort, keyset cursors.

Follows `api/outreach.md` ("Paging", "Filters and sort") and the custom objects seed page.
Invariants:
- timestamps are kept as integer microseconds since the epoch (UTC) and rendered with
  microseconds like the seed (`2024-07-25T13:18:30.736332Z`); filters on them may carry at
  most millisecond precision, anything finer is a 400 `validationError`;
- every ordering ends with `id`, so equal sort values never make a page boundary ambiguous;
- a cursor (`page[after]`) is base64 of the JSON keyset `[sort values..., id]` of the last
  record served; the next page starts strictly after it, so records updated mid-listing
  simply move later in an `updatedAt` listing (as on the real API).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from multidict import MultiMapping

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
VIRTUAL_FIELDS = {"id": "integer", "createdAt": "date-time", "updatedAt": "date-time"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?$")


class QueryError(Exception):
    """A list request the real API would refuse with 400 `validationError`."""

    def __init__(self, detail: str, parameter: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter


@dataclass(slots=True)
class TypeDef:
    """One Outreach resource type: a standard one (`prospect`) or a custom object (`vehicles`)."""

    name: str
    custom_object: bool
    display_field: str | None
    attributes: dict[str, str]  # name -> JSON type ("string", "integer", "date-time", ...)
    relationships: dict[str, str]  # name -> target type
    index: dict[str, int] = field(default_factory=dict)
    rel_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.attributes)}
        self.rel_index = {name: i for i, name in enumerate(self.relationships)}

    def field_type(self, name: str) -> str | None:
        return VIRTUAL_FIELDS.get(name) or self.attributes.get(name)


@dataclass(slots=True)
class Rec:
    """One stored record, compact: values aligned with `TypeDef.attributes`, rels likewise."""

    id: int
    created: int
    updated: int
    values: list[Any]
    rels: list[int | None]
    # attributes served verbatim over the stored values: any JSON, even of the wrong type
    raw: dict[str, Any] = field(default_factory=dict)


def to_micros(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def render_ts(micros: int) -> str:
    """Microseconds since the epoch rendered like the seed: `2024-07-25T13:18:30.736332Z`."""
    seconds, frac = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:06d}Z"


def parse_ts(text: str, *, max_digits: int = 6) -> int:
    """An ISO 8601 timestamp (`Z` or offset, date only allowed) as microseconds; ValueError if not."""
    match = _TS.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    day, clock, frac, zone = match.groups()
    if frac and len(frac) > max_digits:
        raise ValueError(f"timestamp {text!r} has more than millisecond precision")
    base = datetime.fromisoformat(f"{day}T{clock or '00:00:00'}{_zone(zone)}")
    return to_micros(base) + int((frac or "0").ljust(6, "0")[:6])


def _zone(zone: str | None) -> str:
    if zone in (None, "Z"):
        return "+00:00"
    return zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
}


def coerce(t: TypeDef, key: str, value: Any) -> Any:
    """A state-API or request value in its stored form; ValueError when the type is wrong.
    Date-times are stored as µs integers (a datetime, an ISO string or µs are accepted)."""
    kind = t.attributes[key]
    if value is None:
        return None
    if kind == "date-time":
        if isinstance(value, datetime):
            return to_micros(value)
        if isinstance(value, str):
            return parse_ts(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{key} must be an ISO 8601 timestamp")
    check = _CHECKS.get(kind)
    if check is not None and not check(value):
        raise ValueError(f"{key} must be of type {kind}, got {type(value).__name__}")
    return list(value) if kind == "array" else value


def getter(typedef: TypeDef, name: str) -> Callable[[Rec], Any]:
    """Read attribute `name` (or id/createdAt/updatedAt) from a record."""
    if name == "id":
        return lambda r: r.id
    if name == "createdAt":
        return lambda r: r.created
    if name == "updatedAt":
        return lambda r: r.updated
    i = typedef.index[name]
    return lambda r: r.values[i]


def encode_cursor(values: list[Any]) -> str:
    return base64.b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode_cursor(text: str, width: int) -> list[Any]:
    try:
        values = json.loads(base64.b64decode(text.encode(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise QueryError(f"page[after] {text!r} is not a cursor this API issued", "page[after]") from exc
    if not isinstance(values, list) or len(values) != width:
        raise QueryError("page[after] does not match this sort; start again from the first page", "page[after]")
    return values


class Resolver(Protocol):
    """Finds related records by a field value, for `filter[rel][name]=X`."""

    def ids_where(self, type_name: str, field_name: str, values: set[str]) -> set[int]: ...


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    desc: bool


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed list request."""

    predicates: tuple[Callable[[Rec], bool], ...]
    sort: tuple[SortKey, ...]
    size: int
    after: list[Any] | None
    count: bool
    updated_from: int | None  # lower bound of an updatedAt filter, for the index fast path

    @property
    def by_updated(self) -> bool:
        """True when the order is exactly (updatedAt, id) ascending: the indexed fast path."""
        return [(k.field, k.desc) for k in self.sort] == [("updatedAt", False), ("id", False)]


class _Desc:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def sort_key_fn(typedef: TypeDef, sort: tuple[SortKey, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """Turn raw keyset values `[v1, ..., id]` into a comparable tuple honouring directions."""
    desc = [k.desc for k in sort]

    def key(values: list[Any]) -> tuple[Any, ...]:
        parts = ((v is not None, v) for v in values)
        return tuple(_Desc(p) if d else p for p, d in zip(parts, desc, strict=True))

    return key


def keyset_fn(typedef: TypeDef, sort: tuple[SortKey, ...]) -> Callable[[Rec], list[Any]]:
    getters = [getter(typedef, k.field) for k in sort]
    return lambda r: [g(r) for g in getters]


def parse_sort(typedef: TypeDef, text: str | None) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name = part.lstrip("-")
        if typedef.field_type(name) is None:
            raise QueryError(f"cannot sort {typedef.name} by unknown field {name!r}", "sort")
        keys.append(SortKey(name, part.startswith("-")))
    if not any(k.field == "id" for k in keys):
        keys.append(SortKey("id", False))
    return tuple(keys)


def parse_page_size(params: Mapping[str, str]) -> int:
    if "page[offset]" in params or "page[limit]" in params:
        raise QueryError("offset paging is deprecated and stops at 10,000 rows; use page[size] and links.next", "page[offset]")
    raw = params.get("page[size]", str(DEFAULT_PAGE_SIZE))
    try:
        size = int(raw)
    except ValueError as exc:
        raise QueryError(f"page[size] must be an integer, got {raw!r}", "page[size]") from exc
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise QueryError(f"page[size] must be between 1 and {MAX_PAGE_SIZE}, got {size}", "page[size]")
    return size


def parse_query(typedef: TypeDef, params: MultiMapping[str], resolver: Resolver, relationship_types: Mapping[str, TypeDef]) -> Query:
    """Parse a list request's query string; raise QueryError for what the API refuses."""
    sort = parse_sort(typedef, params.get("sort"))
    size = parse_page_size(params)
    after = decode_cursor(params["page[after]"], len(sort)) if "page[after]" in params else None
    predicates, updated_from = build_filters(typedef, params, resolver, relationship_types)
    count = params.get("count", "true").lower() != "false"
    return Query(tuple(predicates), sort, size, after, count, updated_from)


# --- filters -------------------------------------------------------------------------------
_FILTER = re.compile(r"^filter\[([^\]]+)\](?:\[([^\]]*)\])?$")
_OPS = {"gte", "gt", "lte", "lt", "eq", ""}


def build_filters(
    typedef: TypeDef, params: MultiMapping[str], resolver: Resolver, types: Mapping[str, TypeDef]
) -> tuple[list[Callable[[Rec], bool]], int | None]:
    """Predicates for every `filter[...]` parameter, and the lower updatedAt bound if any."""
    new_syntax = params.get("newFilterSyntax", "").lower() == "true"
    predicates: list[Callable[[Rec], bool]] = []
    updated_from: int | None = None
    for key in set(params.keys()):
        match = _FILTER.match(key)
        if not match:
            continue
        name, sub = match.group(1), match.group(2)
        values = params.getall(key)
        if name in typedef.relationships:
            predicates.append(_relationship_filter(typedef, name, sub, values[0], resolver, types, key))
            continue
        kind = typedef.field_type(name)
        if kind is None:
            raise QueryError(f"cannot filter {typedef.name} by unknown field {name!r}", key)
        cond = _condition(kind, sub, values, new_syntax, key)
        predicates.append(_attribute_filter(getter(typedef, name), cond, kind))
        if name == "updatedAt" and cond.low is not None:
            updated_from = cond.low if updated_from is None else max(updated_from, cond.low)
    return predicates, updated_from


@dataclass(slots=True)
class _Cond:
    """One filter condition: null test, set membership, or range (bounds inclusive unless strict)."""

    null: bool | None = None
    among: set[Any] | None = None
    low: Any = None
    high: Any = None
    low_strict: bool = False
    high_strict: bool = False


def _condition(kind: str, sub: str | None, values: list[str], new_syntax: bool, key: str) -> _Cond:
    if sub is not None and sub not in _OPS:
        raise QueryError(f"unknown filter operator [{sub}]", key)
    if sub in ("gte", "gt", "lte", "lt"):
        if not new_syntax:
            raise QueryError(f"filter operator [{sub}] needs newFilterSyntax=true", key)
        bound = _convert(kind, values[0], key)
        return _Cond(
            low=bound if sub in ("gte", "gt") else None,
            high=bound if sub in ("lte", "lt") else None,
            low_strict=sub == "gt",
            high_strict=sub == "lt",
        )
    if sub == "" or (new_syntax and len(values) > 1):
        return _Cond(among={_convert(kind, v, key) for v in values})
    return _classic(kind, values[0], new_syntax, key)


def _classic(kind: str, text: str, new_syntax: bool, key: str) -> _Cond:
    if text == "__null__":
        return _Cond(null=True)
    if text == "__notnull__":
        return _Cond(null=False)
    if not new_syntax and ".." in text:
        lo, _, hi = text.partition("..")
        return _Cond(
            low=None if lo in ("neginf", "") else _convert(kind, lo, key),
            high=None if hi in ("inf", "") else _convert(kind, hi, key),
        )
    if not new_syntax and "," in text:
        return _Cond(among={_convert(kind, v, key) for v in text.split(",")})
    return _Cond(among={_convert(kind, text, key)})


def _convert(kind: str, text: str, key: str) -> Any:
    try:
        if kind == "date-time":
            return parse_ts(text, max_digits=3)
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"not a boolean: {text!r}")
            return text.lower() == "true"
    except ValueError as exc:
        raise QueryError(f"{key}: {exc}", key) from exc
    return text


def _attribute_filter(get: Callable[[Rec], Any], cond: _Cond, kind: str) -> Callable[[Rec], bool]:
    def test(value: Any) -> bool:
        if cond.null is not None:
            return (value is None) == cond.null
        if value is None:
            return False
        if cond.among is not None:
            return value in cond.among
        if cond.low is not None and (value < cond.low or (cond.low_strict and value == cond.low)):
            return False
        return not (cond.high is not None and (value > cond.high or (cond.high_strict and value == cond.high)))

    if kind == "array":
        return lambda r: _test_list(get(r), test)
    return lambda r: test(get(r))


def _test_list(values: Any, test: Callable[[Any], bool]) -> bool:
    if not values:
        return test(None)
    return any(test(v) for v in values)


def _relationship_filter(
    typedef: TypeDef, name: str, sub: str | None, text: str, resolver: Resolver, types: Mapping[str, TypeDef], key: str
) -> Callable[[Rec], bool]:
    i = typedef.rel_index[name]
    if sub == "id":
        cond = _classic("integer", text, False, key)
        return _attribute_filter(lambda r: r.rels[i], cond, "integer")
    target = types[typedef.relationships[name]]
    if sub is None or sub not in _name_fields(target):
        allowed = ", ".join(["id", *_name_fields(target)])
        raise QueryError(f"filter on relationship {name!r} must use one of: {allowed}", key)
    ids = resolver.ids_where(target.name, sub, set(text.split(",")))
    return lambda r: r.rels[i] in ids


def _name_fields(target: TypeDef) -> list[str]:
    """What a relationship filter may match on besides id (the custom objects seed page)."""
    if target.custom_object:
        return [target.display_field] if target.display_field else []
    if target.name == "user":
        return ["email", "name"]
    return ["name"]
