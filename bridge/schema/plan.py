"""The difference between what the mappings need and what Zendesk has: `bridge schema plan`.

A plan is computed from the account's objects and fields, read once, and is pure data after
that: `apply.py` creates exactly its `create` lines, `limits.py` counts them, the CLI prints
them. Invariants: reading a plan changes nothing; every line names its mapping and key path;
a field that exists but differs (type, lookup target, dropdown options) is `differs` and is
never touched, because Zendesk field types and lookup targets are immutable and a recreated
field loses its values; a Zendesk field no mapping uses is `unused` and kept (bridge never
deletes); a dropdown or multiselect without options cannot be created and is `blocked`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bridge.mapping.model import Mapping
from bridge.mapping.templates import Template
from bridge.outreach.schema import METADATA, SourceType, canonical
from bridge.schema.desired import WantedField, WantedObject
from bridge.schema.scaffold import field_type, snake_case
from bridge.zendesk.client import ZendeskClient

Action = Literal["create", "ok", "differs", "blocked", "unused"]

# Wanted type → Zendesk types that accept every value bridge writes for it.
COMPATIBLE: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "textarea"}),
    "textarea": frozenset({"textarea", "text"}),
    "integer": frozenset({"integer", "decimal"}),
}


@dataclass(frozen=True, slots=True)
class FieldLine:
    """One field's verdict."""

    object: str
    key: str
    action: Action
    mapping: str
    path: str
    wanted: WantedField | None  # None for a Zendesk field no mapping uses
    actual_type: str | None = None
    reason: str = ""

    @property
    def compatible(self) -> bool:
        """Whether the existing field takes what the mapping writes (for validate --remote)."""
        if self.action != "differs" or self.wanted is None or self.actual_type is None:
            return self.action != "differs"
        if self.wanted.type == "lookup" or self.wanted.type in ("dropdown", "multiselect"):
            return False
        return self.actual_type in COMPATIBLE.get(self.wanted.type, frozenset({self.wanted.type}))


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    wanted: WantedObject
    exists: bool
    fields: tuple[FieldLine, ...]
    lookups_in_zendesk: int = 0

    @property
    def to_create(self) -> tuple[FieldLine, ...]:
        return tuple(f for f in self.fields if f.action == "create")


@dataclass(frozen=True, slots=True)
class SourceLine:
    """Outreach drift: an attribute the source type has and the mapping does not read, or a
    source type the schema does not list."""

    mapping: str
    object: str
    attribute: str  # "" when the whole type is missing from the schema
    key: str = ""  # the field key a scaffold would give it
    type: str = ""  # the Zendesk type a scaffold would give it
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    objects: tuple[ObjectPlan, ...]
    source: tuple[SourceLine, ...] = ()

    @property
    def objects_to_create(self) -> tuple[ObjectPlan, ...]:
        return tuple(o for o in self.objects if not o.exists)

    @property
    def fields_to_create(self) -> tuple[FieldLine, ...]:
        return tuple(f for o in self.objects for f in o.to_create)

    @property
    def left_alone(self) -> tuple[FieldLine, ...]:
        return tuple(f for o in self.objects for f in o.fields if f.action in ("differs", "blocked", "unused"))

    @property
    def has_changes(self) -> bool:
        return bool(self.objects_to_create or self.fields_to_create)

    def as_dict(self) -> dict[str, Any]:
        return {"objects": [_object_dict(o) for o in self.objects],
                "outreach": [asdict(line) for line in self.source]}


async def make_plan(
    zendesk: ZendeskClient, wanted: list[WantedObject], source: Iterable[SourceLine] = ()
) -> Plan:
    """Reads the account's objects and the fields of those that exist; writes nothing."""
    existing = {str(o.get("key")) for o in await zendesk.list_objects()}
    plans = []
    for obj in wanted:
        fields = await zendesk.list_fields(obj.key) if obj.key in existing else None
        plans.append(compare(obj, fields))
    return Plan(tuple(plans), tuple(source))


def source_drift(mappings: dict[str, Mapping], order: Iterable[str], types: dict[str, SourceType]) -> list[SourceLine]:
    """Per mapping, the Outreach attributes it does not read (new ones show up here)."""
    lines: list[SourceLine] = []
    for name in order:
        mapping = mappings[name]
        source = types.get(mapping.source.type) or types.get(canonical(mapping.source.type))
        if source is None:
            lines.append(SourceLine(name, mapping.target.object, "", note=(
                f"Outreach's schema does not list {mapping.source.type!r}; custom objects are only listed for "
                "an authenticated caller: run `bridge validate --remote` to see why")))
            continue
        read = {spec.path[0] for spec in mapping.fields.values()} | Template.parse(mapping.target.name).names
        for attr in source.attributes.values():
            if attr.name not in read and attr.name not in METADATA:
                key = snake_case(attr.name)
                lines.append(SourceLine(name, mapping.target.object, attr.name, key, field_type(attr),
                                        f"not mapped; to sync it add fields.{key}: {{from: {attr.name}, "
                                        f"type: {field_type(attr)}}}"))
    return lines


def compare(wanted: WantedObject, fields: list[dict[str, Any]] | None) -> ObjectPlan:
    """The verdict for one object; `fields` is None when the object does not exist."""
    actual = {str(f.get("key")): f for f in fields or [] if not str(f.get("key", "")).startswith("standard::")}
    lines = [_field_line(wanted, w, actual.get(w.key)) for w in wanted.fields]
    keys = {w.key for w in wanted.fields}
    lines += [
        FieldLine(wanted.key, key, "unused", wanted.mapping, "", None, str(f.get("type")),
                  "no mapping writes it; kept (bridge never deletes)")
        for key, f in actual.items() if key not in keys
    ]  # fmt: skip
    lookups = sum(1 for f in actual.values() if f.get("type") == "lookup")
    return ObjectPlan(wanted, fields is not None, tuple(lines), lookups)


def _field_line(obj: WantedObject, wanted: WantedField, actual: dict[str, Any] | None) -> FieldLine:
    line = FieldLine(obj.key, wanted.key, "ok", wanted.mapping, wanted.path, wanted)
    if actual is None:
        if wanted.type in ("dropdown", "multiselect") and not wanted.options:
            return _with(line, "blocked", None, f"a {wanted.type} needs options; add {wanted.path}.options")
        return _with(line, "create", None, "")
    actual_type = str(actual.get("type") or "text")
    reason = _difference(wanted, actual, actual_type)
    return _with(line, "differs" if reason else "ok", actual_type, reason)


def _difference(wanted: WantedField, actual: dict[str, Any], actual_type: str) -> str:
    if actual_type != wanted.type:
        return (f"Zendesk has type {actual_type}, the mapping wants {wanted.type}; left alone (bridge "
                f"never retypes: values would be lost); change {wanted.path}.type or recreate the field by hand")
    if wanted.type == "lookup" and actual.get("relationship_target_type") != wanted.target:
        return (f"Zendesk's lookup points at {actual.get('relationship_target_type')}, the mapping at "
                f"{wanted.target}; lookup targets are immutable, so it is left alone; fix {wanted.path}.target "
                "or recreate the field by hand")
    if wanted.options:
        values = {str(o.get("value")) for o in actual.get("custom_field_options") or [] if isinstance(o, dict)}
        missing = [o for o in wanted.options if o not in values]
        if missing:
            return (f"Zendesk's options lack {', '.join(missing)}; left alone; add them in Zendesk "
                    f"or remove them from {wanted.path}.options")
    return ""


def _with(line: FieldLine, action: Action, actual_type: str | None, reason: str) -> FieldLine:
    return FieldLine(line.object, line.key, action, line.mapping, line.path, line.wanted, actual_type, reason)


def describe_type(wanted: WantedField | None, actual_type: str | None = None) -> str:
    if wanted is None:
        return actual_type or "?"
    if wanted.target:
        return f"lookup → {wanted.target}"
    if wanted.options:
        return f"{wanted.type} [{', '.join(wanted.options)}]"
    return wanted.type


def _object_dict(o: ObjectPlan) -> dict[str, Any]:
    return {
        "mapping": o.wanted.mapping, "object": o.wanted.key, "action": "ok" if o.exists else "create",
        "title": o.wanted.title, "title_pluralized": o.wanted.title_pluralized,
        "fields": [
            {"key": f.key, "action": f.action, "path": f.path, "type": f.wanted.type if f.wanted else f.actual_type,
             "zendesk_type": f.actual_type, "target": f.wanted.target if f.wanted else None,
             "options": list(f.wanted.options) if f.wanted else [], "reason": f.reason}
            for f in o.fields
        ],
    }  # fmt: skip
