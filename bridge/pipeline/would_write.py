"""What bridge would write for one record now: its payload under the current mapping file.

`bridge explain` compares this with the payload last written, so a mapping change (a transform
added, a field renamed) shows as the fields it changes. The record is translated exactly as a
run translates it (`translate.translate`); its lookups are resolved the way a run resolves them
now, but read-only and without a request: `mapping:` targets from the id map (less the ids
Zendesk refused), `zen:` targets from the people directory when its first load is complete.
A lookup the directory cannot answer is reported as unknown rather than looked up in Zendesk:
explain sends no request it was not asked to send.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import Any, cast

from bridge import targets
from bridge.errors import RecordError
from bridge.mapping.model import Mapping
from bridge.outreach.models import SourceRecord
from bridge.pipeline.resolve import Included, match_value
from bridge.store import directory, idmap, links
from bridge.store.pool import Connection
from bridge.translate import Link, translate
from bridge.zendesk.models import ZendeskRecord

# The people directory's table for each `zen:` kind (bridge/directory.py keeps them).
KINDS: dict[str, directory.Kind] = {"zen:user": "users", "zen:organization": "organizations"}


@dataclass(frozen=True, slots=True)
class Preview:
    """The payload (`{"name", "fields"}`) the current mapping makes of a record, or why not."""

    payload: dict[str, Any] | None
    error: str | None = None  # the translation error (the record would be dead-lettered)
    notes: dict[str, str] = field(default_factory=dict)  # lookup field → why its value is so
    unknown: frozenset[str] = frozenset()  # lookup fields whose value only Zendesk could tell


async def would_write(
    conn: Connection, mapping: Mapping, record: SourceRecord, included: Included
) -> Preview:
    """The payload a run would send for `record` now (lookups as they resolve now)."""
    try:
        translated = translate(mapping, record)
    except RecordError as exc:
        return Preview(None, error=str(exc))
    fields = dict(translated.fields)
    notes: dict[str, str] = {}
    unknown: set[str] = set()
    for link in translated.links:
        value, note, known = await _lookup_now(conn, link, included)
        fields[link.field] = value
        if note:
            notes[link.field] = note
        if not known:
            unknown.add(link.field)
    return Preview({"name": translated.name, "fields": fields}, None, notes, frozenset(unknown))


async def _lookup_now(conn: Connection, link: Link, included: Included) -> tuple[str | None, str, bool]:
    """(Zendesk id or None, a note saying why, whether the answer is known without Zendesk)."""
    if link.source_id is None:
        return None, "relationship is null: cleared", True
    target = targets.parse(link.target)
    if target.mapping is not None:
        row = (await idmap.lookup(conn, target.mapping, [link.source_id])).get(link.source_id)
        refused = await links.refused_ids(conn, target.mapping, [link.source_id])
        if row is None or row.zendesk_id is None:
            return None, f"parked: {target.mapping} {link.source_id} is not in Zendesk yet", True
        if (link.source_id, row.zendesk_id) in refused:
            return None, f"parked: Zendesk refused {row.zendesk_id} ({target.mapping} {link.source_id})", True
        return row.zendesk_id, "", True
    value = match_value(link, included)
    if value is None or link.match is None:
        return None, f"parked: the related {link.source_type} {link.source_id} has no {link.match}", True
    kind = KINDS[target.kind.value]
    stored = await directory.load_cursor(conn, kind)
    if stored is None or not stored.complete:
        return None, f"unknown: a run would look up {link.match} {value!r} in Zendesk", False
    match = cast(directory.Match, link.match)
    key = value if match == "external_id" else value.lower()
    found = (await directory.find(conn, kind, match, [value])).get(key)
    if found is None:
        return None, f"parked: no {target.kind.value} with {link.match} {value!r} in the people directory", True
    return found, "", True


# --- versions side by side ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One field (or the record's name) in each version; `differs`: would write ≠ last written;
    `zendesk_differs` (with --live): Zendesk now ≠ last written, e.g. edited by hand."""

    field: str
    would_write: Any
    last_written: Any
    differs: bool
    note: str | None = None
    zendesk_now: Any = None
    zendesk_differs: bool = False


def field_rows(
    mapping: Mapping, preview: Preview, written: AbcMapping[str, Any] | None, zendesk: ZendeskRecord | None
) -> list[FieldRow]:
    """`name`, then each mapped field (mapping order), then any other field a version has."""
    would = preview.payload
    would_fields = would.get("fields", {}) if would else {}
    last_fields = written.get("fields", {}) if written else {}
    zen_fields = zendesk.fields if zendesk else {}
    keys = ["name", *mapping.fields, *mapping.relationships]
    keys += [k for k in (*would_fields, *last_fields) if k not in keys]
    rows = []
    for key in dict.fromkeys(keys):
        if key == "name":
            now, last = (would or {}).get("name"), (written or {}).get("name")
            zen = zendesk.name if zendesk else None
        else:
            now, last, zen = would_fields.get(key), last_fields.get(key), zen_fields.get(key)
        known = would is not None and key not in preview.unknown
        rows.append(FieldRow(
            field=key, would_write=now, last_written=last,
            differs=known and written is not None and not _same(now, last), note=preview.notes.get(key),
            zendesk_now=zen, zendesk_differs=zendesk is not None and written is not None and not _same(zen, last),
        ))  # fmt: skip
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal as Zendesk would store them (a lookup id may come back as a number or text)."""
    if isinstance(a, int | str) and isinstance(b, int | str) and not isinstance(a, bool) and not isinstance(b, bool):
        return str(a) == str(b)
    return bool(a == b)
