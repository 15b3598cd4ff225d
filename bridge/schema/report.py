"""Plans and apply results as text a person reads on a terminal (and in CI logs).

Pure: data in, lines out. A plan is a table, one row per object and per field, with the
mapping and the action; rows that are left alone carry their reason on the next line, so
the table stays narrow. The last line says what happens next.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.schema.apply import Change
from bridge.schema.plan import Plan, describe_type

HEADER = ("MAPPING", "OBJECT", "FIELD", "TYPE", "ACTION")


def plan_table(plan: Plan) -> str:
    rows: list[tuple[str, ...]] = []
    notes: dict[int, str] = {}
    for obj in plan.objects:
        w = obj.wanted
        rows.append((w.mapping, w.key, "-", "custom object", "ok" if obj.exists else "create"))
        for line in obj.fields:
            kind = describe_type(line.wanted, line.actual_type)
            rows.append((line.mapping, line.object, line.key, kind, line.action))
            if line.reason:
                notes[len(rows) - 1] = line.reason
    for src in plan.source:
        rows.append((src.mapping, src.object, src.key or "-", src.type or "-",
                     "unmapped" if src.attribute else "not in schema"))
        notes[len(rows) - 1] = (f"Outreach attribute {src.attribute!r}: " if src.attribute else "") + src.note
    out = _table([HEADER, *rows], notes)
    return "\n".join([*out, "", plan_summary(plan)])


def plan_summary(plan: Plan) -> str:
    objects, fields = len(plan.objects_to_create), len(plan.fields_to_create)
    left = len(plan.left_alone)
    tail = f"; {left} left alone (see notes)" if left else ""
    if plan.source:
        tail += f"; {len(plan.source)} Outreach attribute(s) not mapped"
    if not plan.has_changes:
        return f"nothing to create: Zendesk has every object and field the mappings need{tail}"
    return f"to create: {objects} object(s), {fields} field(s){tail}; run `bridge schema apply` to create them"


def changes_text(changes: Sequence[Change]) -> str:
    created = [c for c in changes if c.action == "created"]
    lines = [f"created {_what(c)}" for c in created]
    lines += [f"left alone {_what(c)}: {c.reason}" for c in changes if c.action == "left_alone"]
    existing = sum(1 for c in changes if c.action == "exists")
    lines.append(f"{len(created)} created, {existing} already there, "
                 f"{sum(1 for c in changes if c.action == 'left_alone')} left alone")
    return "\n".join(lines)


def _what(change: Change) -> str:
    return f"field {change.object}.{change.field}" if change.field else f"object {change.object}"


def _table(rows: list[tuple[str, ...]], notes: dict[int, str]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index - 1 in notes:
            lines.append(f"    ↳ {notes[index - 1]}")
    return lines
