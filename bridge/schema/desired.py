"""What the mappings need in Zendesk: one custom object per mapping and its fields.

Pure: mappings in, frozen descriptions out, in the mappings' dependency order (lookup targets
first). Each wanted field remembers the mapping and key path it comes from, so every plan
line, limit message and remote-validation problem can point at the file that asked for it.
Invariants: a lookup field's target is `zen:user`, `zen:organization` or
`zen:custom_object:<key>` of the mapping it names; dropdown and multiselect options keep the
mapping's order; titles are derived from keys (Zendesk needs one, the mapping has none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge import targets
from bridge.mapping.model import Mapping


@dataclass(frozen=True, slots=True)
class WantedField:
    """One Zendesk field a mapping writes."""

    mapping: str
    path: str  # key path in the mapping file: fields.<key> or relationships.<key>
    key: str
    type: str
    options: tuple[str, ...] = ()
    target: str | None = None  # relationship_target_type of a lookup
    pattern: str | None = None  # regexp_for_validation

    @property
    def title(self) -> str:
        return title_of(self.key)

    def body(self) -> dict[str, Any]:
        """The `custom_object_field` attributes that create it (api/zendesk.md "Fields")."""
        body: dict[str, Any] = {"key": self.key, "title": self.title, "type": self.type}
        if self.options:
            body["custom_field_options"] = [{"name": o, "value": o} for o in self.options]
        if self.target is not None:
            body["relationship_target_type"] = self.target
        if self.pattern is not None:
            body["regexp_for_validation"] = self.pattern
        return body


@dataclass(frozen=True, slots=True)
class WantedObject:
    """One Zendesk custom object a mapping writes, with the fields it needs."""

    mapping: str
    key: str
    source_type: str
    fields: tuple[WantedField, ...]
    depends_on: tuple[str, ...] = ()  # object keys its lookups point at

    @property
    def title(self) -> str:
        return title_of(self.key)

    @property
    def title_pluralized(self) -> str:
        return pluralize(self.title)

    @property
    def description(self) -> str:
        return f"Synced from Outreach {self.source_type} by bridge"

    @property
    def lookups(self) -> tuple[WantedField, ...]:
        return tuple(f for f in self.fields if f.type == "lookup")


def wanted_objects(mappings: dict[str, Mapping], order: Iterable[str]) -> list[WantedObject]:
    """The objects `order`'s mappings need, lookup targets first where the order allows."""
    return [wanted_object(mappings[name], mappings) for name in order]


def wanted_object(mapping: Mapping, mappings: dict[str, Mapping]) -> WantedObject:
    fields = [_value_field(mapping.name, key, spec) for key, spec in mapping.fields.items() if spec.type != "lookup"]
    depends: list[str] = []
    for key, rel in mapping.relationships.items():
        target = lookup_target(rel.target, mappings)
        if target is None:
            continue
        fields.append(WantedField(mapping.name, f"relationships.{key}", key, "lookup", target=target))
        if (object_key := targets.custom_object_key(target)) is not None:
            depends.append(object_key)
    return WantedObject(mapping.name, mapping.target.object, mapping.source.type, tuple(fields), tuple(depends))


def lookup_target(target: str, mappings: dict[str, Mapping]) -> str | None:
    """`mapping:<name>` → `zen:custom_object:<its object>`; zen targets as they are; None
    for a mapping not among `mappings` or text that names no target."""
    try:
        lookup = targets.parse(target)
    except ValueError:
        return None
    other = mappings.get(lookup.mapping) if lookup.mapping is not None else None
    return targets.schema_type(lookup, other.target.object if other else None)


def _value_field(mapping: str, key: str, spec: Any) -> WantedField:
    return WantedField(
        mapping, f"fields.{key}", key, spec.type,
        options=tuple(spec.options or ()) if spec.type in ("dropdown", "multiselect") else (),
        pattern=spec.pattern if spec.type == "regexp" else None,
    )  # fmt: skip


def title_of(key: str) -> str:
    return key.replace("_", " ").strip().capitalize() or key


def pluralize(title: str) -> str:
    if title.endswith("y") and not title.endswith(("ay", "ey", "oy", "uy")):
        return title[:-1] + "ies"
    if title.endswith(("s", "x", "z", "ch", "sh")):
        return title + "es"
    return title + "s"
