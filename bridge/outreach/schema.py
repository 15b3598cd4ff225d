"""Outreach's `GET /api/v2/schema` read into plain types: attributes, relationships, flags.

The endpoint is a draft-07 hyper-schema with one `definitions` entry per standard type and
per custom object (api/outreach.md "Custom objects", the custom objects seed page). Each
type's own `definitions` holds its fields with `type`, `format`, `filterable` and
`sortable`. How relationships are described is not documented, so they are read
tolerantly: from `properties.relationships.properties`, their target type from
`x-target-type`, or from a `data.type` const/enum, else unknown (None).

Invariants: parsing is pure and never raises on a type it cannot fully read (it keeps what
it can); only a body without a `definitions` object is refused, by the client. Custom
objects are absent when the caller is not authenticated: callers that miss one must say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Standard resource types (singular, as JSON:API names them); their list paths are plural.
STANDARD_TYPES = frozenset({
    "account", "call", "content", "event", "mailbox", "mailing", "opportunity", "persona",
    "prospect", "sequence", "sequenceState", "stage", "task", "team", "template", "user",
})  # fmt: skip
METADATA = frozenset({"id", "createdAt", "updatedAt"})


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    type: str  # JSON type: string, integer, number, boolean, array, object
    format: str | None = None  # e.g. date-time
    filterable: bool = False
    sortable: bool = False
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Relationship:
    name: str
    target: str | None  # the target's type name (`prospect`, `vehicle_brands`), if stated


@dataclass(frozen=True, slots=True)
class SourceType:
    """One Outreach type as the schema describes it."""

    name: str
    custom_object: bool
    attributes: dict[str, Attribute] = field(default_factory=dict)
    relationships: dict[str, Relationship] = field(default_factory=dict)

    @property
    def path_name(self) -> str:
        """The name a mapping's `source.type` uses: custom objects as is, standard ones plural."""
        return self.name if self.custom_object else plural(self.name)


def plural(name: str) -> str:
    if name.endswith("y") and not name.endswith(("ay", "ey", "oy")):
        return name[:-1] + "ies"
    return name if name.endswith("s") else name + "s"


def canonical(name: str) -> str:
    """`prospects` → `prospect` for standard types; custom objects keep their internal name."""
    for standard in STANDARD_TYPES:
        if name in (standard, plural(standard)):
            return standard
    return name


def is_standard(name: str) -> bool:
    """A standard resource (`prospects`, `account`), as opposed to a custom object."""
    return canonical(name) in STANDARD_TYPES


def parse_schema(body: Mapping[str, Any]) -> dict[str, SourceType]:
    """Every type in the schema body, by its JSON:API type name."""
    definitions = body.get("definitions")
    if not isinstance(definitions, Mapping):
        return {}
    return {
        str(name): _type(str(name), entry)
        for name, entry in definitions.items()
        if isinstance(entry, Mapping)
    }


def _type(name: str, entry: Mapping[str, Any]) -> SourceType:
    fields = entry.get("definitions")
    attributes = {
        str(key): _attribute(str(key), spec)
        for key, spec in (fields.items() if isinstance(fields, Mapping) else ())
        if isinstance(spec, Mapping)
    }
    return SourceType(name, _is_custom(name, entry), attributes, _relationships(entry))


def _attribute(name: str, spec: Mapping[str, Any]) -> Attribute:
    kind = spec.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), "string")
    enum = spec.get("enum")
    return Attribute(
        name=name,
        type=str(kind or "string"),
        format=str(spec["format"]) if isinstance(spec.get("format"), str) else None,
        filterable=spec.get("filterable") is True,
        sortable=spec.get("sortable") is True,
        enum=tuple(str(v) for v in enum if v is not None) if isinstance(enum, list) else (),
    )


def _relationships(entry: Mapping[str, Any]) -> dict[str, Relationship]:
    props = _get(entry, "properties", "relationships", "properties")
    if not isinstance(props, Mapping):
        return {}
    return {str(n): Relationship(str(n), _target(spec)) for n, spec in props.items()}


def _target(spec: Any) -> str | None:
    if not isinstance(spec, Mapping):
        return None
    if isinstance(spec.get("x-target-type"), str):
        return str(spec["x-target-type"])
    kind = _get(spec, "properties", "data", "properties", "type")
    if isinstance(kind, Mapping):
        if isinstance(kind.get("const"), str):
            return str(kind["const"])
        enum = kind.get("enum")
        if isinstance(enum, list) and len(enum) == 1:
            return str(enum[0])
    return None


def _is_custom(name: str, entry: Mapping[str, Any]) -> bool:
    links = entry.get("links")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, Mapping) and "/customObjects/" in str(link.get("href", "")):
            return True
    return name not in STANDARD_TYPES


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data
