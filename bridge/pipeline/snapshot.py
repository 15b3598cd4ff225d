"""What bridge keeps of a record it wrote: the Outreach record as read, and the payload sent.

The id map stores, for every record written, a snapshot of the source record (`snapshot`)
and the payload that went to Zendesk (`sent_payload`), both packed (`store.idmap.pack`). From
the snapshot, `restore` gives back the `SourceRecord` and the `included` resources its lookups
read, so that what the CURRENT mapping would write can be rebuilt without asking Outreach
(`bridge explain`, `backfill --dry-run --diff`), and compared field by field with what was
sent. Invariants:
- `translate(mapping, *restore(snapshot(r, included)))` gives the record the same payload
  hash as `translate(mapping, r)` with the page's `included`: attribute values are JSON as
  Outreach sent them, and JSON round-trips them exactly;
- a snapshot keeps every attribute (a mapping edited later may read another one), every
  to-one relationship, and, of the page's `included`, only the resources the record's
  relationships point at (what email and name matches read);
- the sent payload is exactly what the bulk job carried: the translated fields and the lookup
  values sent; a lookup Zendesk refused and that was sent again without it is sent as null;
- keeping them never fails a write: what JSON cannot hold (a lone surrogate in an attribute
  no field reads) is kept as None, "not known", like rows written before payloads were kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.outreach.models import OutreachId, RelatedRef, SourceRecord
from bridge.store import idmap
from bridge.translate import Translated

Included = dict[tuple[str, OutreachId], dict[str, Any]]

# Keys of a snapshot (short: one is stored per record written).
TYPE, ID, ATTRIBUTES, RELATIONSHIPS, UPDATED_AT, INCLUDED = "type", "id", "attributes", "relationships", "updatedAt", "included"


def snapshot(record: SourceRecord, included: Mapping[tuple[str, OutreachId], Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON object kept of `record`, with the `included` resources it points at."""
    relationships: dict[str, list[str] | None] = {}
    related: list[list[Any]] = []
    for name, ref in record.relationships.items():
        if ref is None:
            relationships[name] = None
            continue
        relationships[name] = [ref.type, ref.id]
        attributes = included.get((ref.type, ref.id))
        if attributes is not None:
            related.append([ref.type, ref.id, attributes])
    value: dict[str, Any] = {
        TYPE: record.type,
        ID: record.id,
        ATTRIBUTES: record.attributes,
        RELATIONSHIPS: relationships,
        UPDATED_AT: record.updated_at.isoformat() if record.updated_at is not None else None,
    }
    if related:
        value[INCLUDED] = related
    return value


def restore(value: Mapping[str, Any]) -> tuple[SourceRecord, Included]:
    """The record and the `included` resources a `snapshot` kept, as the page gave them."""
    relationships: dict[str, RelatedRef | None] = {
        name: None if ref is None else RelatedRef(ref[0], OutreachId(ref[1]))
        for name, ref in value[RELATIONSHIPS].items()
    }
    updated = value.get(UPDATED_AT)
    record = SourceRecord(
        value[TYPE],
        OutreachId(value[ID]),
        dict(value[ATTRIBUTES]),
        relationships,
        datetime.fromisoformat(updated) if updated is not None else None,
    )
    included: Included = {(t, OutreachId(i)): dict(a) for t, i, a in value.get(INCLUDED, [])}
    return record, included


def sent_payload(record: Translated, lookups: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """What an upsert item carried for `record` with the lookup values sent: {"name", "fields"}."""
    return {"name": record.name, "fields": {**record.fields, **lookups} if lookups else record.fields}


def packed(value: Mapping[str, Any]) -> bytes | None:
    """`value` in its stored form (`idmap.pack`), or None when JSON cannot hold it."""
    try:
        return idmap.pack(value)
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
        return None
