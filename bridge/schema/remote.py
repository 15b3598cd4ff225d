"""`bridge validate --remote`: the mappings checked against the live Outreach schema and Zendesk.

Outreach side (`GET /api/v2/schema`): the source type exists; each mapped attribute,
template placeholder, filter and relationship exists; `updatedAt` is filterable and sortable
(incremental sync filters and sorts on it). Zendesk side: each object and field exists with a
type that takes what the mapping writes (`plan.COMPATIBLE`). Every mismatch is a
`MappingProblem` with the file and key path, all reported together.

Outreach lists custom objects in its schema only for an authenticated caller, so a type
missing from the schema is explained by probing its list endpoint once: refused credentials,
no such type, or a schema lagging behind the records. `locate_type` is shared with scaffold.
"""

from __future__ import annotations

from pathlib import Path

from bridge.errors import AuthError, ConfigError, MappingProblem, RejectedError
from bridge.mapping.model import Mapping
from bridge.mapping.templates import Template
from bridge.outreach.client import OutreachClient
from bridge.outreach.schema import SourceType, canonical
from bridge.schema.desired import wanted_objects
from bridge.schema.plan import Plan, make_plan
from bridge.zendesk.client import ZendeskClient

AUTH_HINT = ("custom objects are only listed in /api/v2/schema for an authenticated caller, and Outreach "
             "refused the credentials ({detail}); set a valid OUTREACH_ACCESS_TOKEN, or OUTREACH_CLIENT_ID, "
             "OUTREACH_CLIENT_SECRET and OUTREACH_REFRESH_TOKEN")


class MissingType(ConfigError):
    """An Outreach type is not in the schema; the message says why, as far as can be told."""


def mapping_files(folder: Path) -> dict[str, str]:
    return {p.stem: str(p) for p in sorted(folder.glob("*")) if p.suffix in (".yaml", ".yml")}


async def locate_type(
    outreach: OutreachClient, types: dict[str, SourceType], name: str, *, custom_object: bool
) -> SourceType:
    """The schema's entry for `name` (`prospects` finds `prospect`), or MissingType saying why."""
    found = types.get(name) or types.get(canonical(name))
    if found is not None:
        return found
    try:
        await outreach.probe(name, custom_object=custom_object)
    except AuthError as exc:
        raise MissingType(f"Outreach type {name!r} is not in the schema: " + AUTH_HINT.format(detail=exc.detail or
                          f"HTTP {exc.status}")) from exc
    except RejectedError as exc:
        known = ", ".join(sorted(t.path_name for t in types.values() if t.custom_object)) or "none listed"
        raise MissingType(f"Outreach has no {'custom object' if custom_object else 'type'} {name!r} "
                          f"(HTTP {exc.status}); custom objects in the schema: {known}; use the internal name "
                          "your administrator chose") from exc
    raise MissingType(f"Outreach lists {name!r} records but /api/v2/schema does not describe the type yet; "
                      "try again later or check the internal name")


async def remote_problems(
    outreach: OutreachClient, zendesk: ZendeskClient, mappings: dict[str, Mapping], files: dict[str, str],
    order: list[str],
) -> list[MappingProblem]:
    """Every mismatch between the mappings and the two live APIs."""
    types = await outreach.source_types()
    problems: list[MappingProblem] = []
    for name in order:
        mapping = mappings[name]
        file = files.get(name, f"{name}.yaml")
        try:
            source = await locate_type(outreach, types, mapping.source.type, custom_object=mapping.source.custom_object)
        except MissingType as exc:
            problems.append(MappingProblem(file, "source.type", str(exc)))
            continue
        found = outreach_mismatches(mapping, source, mappings, types)
        problems.extend(MappingProblem(file, path, msg) for path, msg in found)
    plan = await make_plan(zendesk, wanted_objects(mappings, order))
    problems.extend(MappingProblem(files.get(m, f"{m}.yaml"), path, msg) for m, path, msg in zendesk_mismatches(plan))
    return problems


def outreach_mismatches(
    mapping: Mapping, source: SourceType, mappings: dict[str, Mapping], types: dict[str, SourceType]
) -> list[tuple[str, str]]:
    """(key path, message) for what the mapping reads but the Outreach type lacks."""
    attrs, rels = source.attributes, source.relationships
    known = ", ".join(sorted(attrs)) or "none"
    found: list[tuple[str, str]] = []
    updated = attrs.get("updatedAt")
    if updated is None or not (updated.filterable and updated.sortable):
        found.append(("source.type", f"Outreach's {source.name}.updatedAt is not filterable and sortable; "
                                     "incremental sync needs both, so this type cannot be synced"))
    for key, spec in mapping.fields.items():
        head = spec.path[0]
        if spec.type != "lookup" and head and head not in attrs:
            found.append((f"fields.{key}.from", f"Outreach type {source.name!r} has no attribute {head!r}; "
                                                f"expected one of: {known}"))
    for placeholder in sorted(Template.parse(mapping.target.name).names - {"id", "type"}):
        if placeholder.split(".")[0] not in attrs:
            found.append(("target.name", f"placeholder {{{placeholder}}}: Outreach type {source.name!r} has no "
                                         f"such attribute; expected one of: {known}"))
    for query_key in mapping.source.filter:
        head = query_key.removeprefix("filter[").split("]")[0]
        if head not in attrs and head not in rels:
            found.append((f"source.filter.{query_key}", f"Outreach type {source.name!r} has no attribute or "
                                                          f"relationship {head!r} to filter on"))
    for key, rel in mapping.relationships.items():
        found.extend(_relationship_mismatch(source, key, rel.from_, rel.mapping_target, mappings, types))
    return found


def _relationship_mismatch(
    source: SourceType, key: str, name: str, target_mapping: str | None,
    mappings: dict[str, Mapping], types: dict[str, SourceType],
) -> list[tuple[str, str]]:
    rel = source.relationships.get(name)
    if rel is None:
        known = ", ".join(sorted(source.relationships)) or "none"
        return [(f"relationships.{key}.from", f"Outreach type {source.name!r} has no relationship {name!r}; "
                                              f"expected one of: {known}")]
    other = mappings.get(target_mapping) if target_mapping else None
    if other is not None and rel.target is not None and canonical(other.source.type) != canonical(rel.target):
        return [(f"relationships.{key}.target", f"Outreach's {source.name}.{name} points at {rel.target!r}, but "
                                                f"mapping {target_mapping!r} reads {other.source.type!r}")]
    return []


def zendesk_mismatches(plan: Plan) -> list[tuple[str, str, str]]:
    """(mapping, key path, message) for objects and fields Zendesk lacks or types it cannot take."""
    found: list[tuple[str, str, str]] = []
    for obj in plan.objects:
        w = obj.wanted
        if not obj.exists:
            found.append((w.mapping, "target.object", f"Zendesk has no custom object {w.key!r}; run "
                                                      "`bridge schema apply` to create it and its fields"))
            continue
        for line in obj.fields:
            if line.action == "create":
                found.append((line.mapping, line.path, f"Zendesk object {w.key!r} has no field {line.key!r}; "
                                                        "run `bridge schema apply` to create it"))
            elif line.action == "blocked" or (line.action == "differs" and not line.compatible):
                found.append((line.mapping, line.path, line.reason))
    return found
