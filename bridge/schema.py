"""The Zendesk custom objects and fields that mappings need, and creating what is missing.

Creating only ever adds: an object or field that exists is left as it is, whatever its
type, so running this twice makes no second change. Objects are created before any field,
so a lookup field's target object exists when the field is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.zendesk.client import ZendeskClient

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    object: str
    field: str | None  # None: the object itself
    action: str  # created | exists


def field_definitions(mapping: Mapping, mappings: dict[str, Mapping]) -> list[dict[str, Any]]:
    """Zendesk `custom_object_field` bodies for a mapping's fields and lookups."""
    fields: list[dict[str, Any]] = []
    for key, spec in mapping.fields.items():
        if spec.type == "lookup":
            continue
        body: dict[str, Any] = {"key": key, "title": _title(key), "type": spec.type}
        if spec.type in ("dropdown", "multiselect") and spec.options:
            body["custom_field_options"] = [{"name": o, "value": o} for o in spec.options]
        if spec.type == "regexp" and spec.pattern:
            body["regexp_for_validation"] = spec.pattern
        fields.append(body)
    for key, rel in mapping.relationships.items():
        target = _lookup_target(rel.target, mappings)
        if target is not None:
            fields.append(
                {"key": key, "title": _title(key), "type": "lookup", "relationship_target_type": target}
            )
    return fields


async def ensure_objects(
    zendesk: ZendeskClient, mappings: dict[str, Mapping], order: Iterable[str]
) -> list[Change]:
    """Creates the missing objects, then their missing fields; returns what it did."""
    names = list(order)
    changes: list[Change] = []
    for name in names:
        changes.append(await _ensure_object(zendesk, mappings[name]))
    for name in names:
        mapping = mappings[name]
        existing = {f.get("key") for f in await zendesk.list_fields(mapping.target.object)}
        for body in field_definitions(mapping, mappings):
            if body["key"] in existing:
                continue
            await zendesk.create_field(mapping.target.object, body)
            changes.append(Change(mapping.target.object, body["key"], "created"))
            log.info("field_created", object=mapping.target.object, field=body["key"])
    return changes


async def _ensure_object(zendesk: ZendeskClient, mapping: Mapping) -> Change:
    key = mapping.target.object
    if await zendesk.get_object(key) is not None:
        return Change(key, None, "exists")
    title = _title(key)
    await zendesk.create_object(
        key, title, f"{title}s", f"Synced from Outreach {mapping.source.type} by bridge"
    )
    log.info("object_created", object=key)
    return Change(key, None, "created")


def _lookup_target(target: str, mappings: dict[str, Mapping]) -> str | None:
    if target.startswith("mapping:"):
        other = mappings.get(target.removeprefix("mapping:"))
        return f"zen:custom_object:{other.target.object}" if other else None
    return target if target in ("zen:user", "zen:organization") else None


def _title(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()
