"""`bridge mappings scaffold <type>`: a commented starter mapping from Outreach's schema.

The output is a mapping file that loads as it is, that `schema apply` can create unchanged
and that `backfill` can run; the comments say what to review. Choices made for the user:
- attribute types → Zendesk field types: string → text (an `enum` → dropdown with its
  options), integer → integer, number → decimal, boolean → checkbox, date-time → date,
  array → text joined with ", "; nested objects and bridge's own metadata (`id`,
  `createdAt`, `updatedAt`) are left out;
- field keys are snake_case of the attribute names (Zendesk keys are letters, digits, `_`);
- relationships → lookups: prospects and users as `zen:user` matched by email, accounts as
  `zen:organization` matched by name (`targets.people_target`), custom objects as
  `mapping:<the mapping reading them>`. A lookup with no such mapping yet, or to a type
  Zendesk has no counterpart for, is written commented out with the reason, so the file
  still loads;
- the record name is the first of `name`, `*_name`/`*Name`, `title` attributes, else the id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from pathlib import Path

from bridge import targets
from bridge.errors import MappingError
from bridge.mapping.load import load_mapping
from bridge.mapping.model import MAX_LOOKUP_FIELDS, check_key
from bridge.outreach.schema import METADATA, STANDARD_TYPES, Attribute, Relationship, SourceType, canonical

NO_COUNTERPART = frozenset(t for t in STANDARD_TYPES if targets.people_target(t) is None)


@dataclass(frozen=True, slots=True)
class ScaffoldOptions:
    mapping_name: str  # the file name the scaffold is written to, without .yaml
    object_key: str | None = None  # Zendesk object key; default: the type, singular
    readers: AbcMapping[str, str] | None = None  # Outreach type (canonical) -> mapping reading it


def readers_in(folder: Path) -> dict[str, str]:
    """Outreach type (canonical) -> the mapping in `folder` that reads it; broken files skipped."""
    readers: dict[str, str] = {}
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix in (".yaml", ".yml"):
            try:
                mapping = load_mapping(path)
            except MappingError:
                continue
            readers.setdefault(canonical(mapping.source.type), mapping.name)
    return readers


def default_object_key(type_name: str) -> str:
    key = snake_case(type_name)
    if key.endswith("ies"):
        return key[:-3] + "y"
    return key[:-1] if key.endswith("s") and not key.endswith("ss") else key


def snake_case(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()
    return f"f_{text}" if not text or text.isdigit() else text


def scaffold(source: SourceType, options: ScaffoldOptions, command: str) -> str:
    """The mapping file's text."""
    key = check_key(options.object_key or default_object_key(source.name))
    lines = [
        f"# Mapping {options.mapping_name!r}, scaffolded by `{command}` from Outreach's /api/v2/schema.",
        f"# Copies Outreach {source.path_name} into the Zendesk custom object {key!r}. Review the types and",
        "# the lookups, then: bridge validate --remote; bridge schema plan; bridge schema apply; bridge backfill.",
        "# Keys are described in DESIGN.md \"Mapping files\"; transforms are listed in the README.",
        "source:",
        f"  type: {source.path_name}",
        f"  custom_object: {'true' if source.custom_object else 'false'}",
        "target:",
        f"  object: {key}",
        f"  name: {json.dumps(_name_template(source))}",
        "fields:",
    ]
    lines += [_field_line(a) for a in source.attributes.values() if a.name not in METADATA]
    relationship_lines = _relationship_lines(source, options)
    if relationship_lines:
        lines += ["relationships:", *relationship_lines]
    lines += ["schedule: {every: 5m}", "on_delete: keep", ""]
    return "\n".join(lines)


def _field_line(attr: Attribute) -> str:
    key = snake_case(attr.name)
    described = attr.type + (f", {attr.format}" if attr.format else "")
    if attr.type == "object":
        return f"  # {key}: {{from: {attr.name}.<sub-key>}}  # {described}: nested; map a sub-key if you need one"
    parts = [f"from: {attr.name}", f"type: {field_type(attr)}"]
    if attr.enum and attr.type == "string":
        parts.append(f"options: [{', '.join(json.dumps(v) for v in attr.enum)}]")
    if attr.type == "array":
        parts.append("transform: [join]")
    return f"  {key}: {{{', '.join(parts)}}}  # Outreach {described}"


def field_type(attr: Attribute) -> str:
    if attr.format in ("date-time", "date"):
        return "date"
    if attr.type == "string" and attr.enum:
        return "dropdown"
    return {"integer": "integer", "number": "decimal", "boolean": "checkbox"}.get(attr.type, "text")


def _relationship_lines(source: SourceType, options: ScaffoldOptions) -> list[str]:
    lines, active = [], 0
    taken = {snake_case(a.name) for a in source.attributes.values()}
    for rel in source.relationships.values():
        body, why = _lookup(source, rel, options)
        key = snake_case(rel.name)
        key = f"{key}_lookup" if key in taken else key
        if body is not None and not why and active < MAX_LOOKUP_FIELDS:
            active += 1
            lines.append(f"  {key}: {{{body}}}  # Outreach {rel.target or 'unknown type'}")
        else:
            why = why or f"Zendesk allows at most {MAX_LOOKUP_FIELDS} lookup fields per object"
            shown = body or f"from: {rel.name}, target: ?"
            lines.append(f"  # {key}: {{{shown}}}  # {why}")
    return lines


def _lookup(source: SourceType, rel: Relationship, options: ScaffoldOptions) -> tuple[str | None, str]:
    target = canonical(rel.target) if rel.target else None
    if target is None:
        return None, "the schema does not say what it points at"
    people = targets.people_target(target)
    if people is not None:
        return f"from: {rel.name}, target: {people[0]}, match: {people[1]}", ""
    readers = dict(options.readers or {})
    readers.setdefault(canonical(source.name), options.mapping_name)
    reader = readers.get(target)
    body = f"from: {rel.name}, target: {targets.of_mapping(reader or target)}"
    if reader is not None:
        return body, ""
    if target in NO_COUNTERPART:
        return None, f"Outreach {target} has no Zendesk counterpart"
    return body, (f"no mapping reads {target} yet: run `bridge mappings scaffold {target} --out "
                  f"mappings/{target}.yaml`, then uncomment")


def _name_template(source: SourceType) -> str:
    strings = [a.name for a in source.attributes.values()
               if a.type == "string" and not a.format and a.name not in METADATA]
    for candidate in strings:
        if candidate == "name":
            return "{name}"
    for candidate in strings:
        if candidate.endswith(("_name", "Name")) or candidate == "title":
            return f"{{{candidate}}}"
    return f"{source.name} {{id}}"
