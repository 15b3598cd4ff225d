"""Why a record is not in Zendesk, in one sentence (`bridge explain`).

From bridge's state first, in this order: an id-map row not marked gone means it is in
Zendesk; one marked gone means it was deleted in Outreach and kept (`on_delete: keep`); a dead
letter means it could not be written; a `deleted` changelog row means it was deleted in Outreach
and removed from Zendesk (`on_delete: delete`). With no state at all, only Outreach can tell:
no such record there is "never seen"; a record outside `source.filter` is "filtered out"; one
updated after the watermark, or before any run settled a page, is "not read yet". A record
updated before the watermark that no run read was left out by the listing: "filtered out" when
the filter has conditions bridge cannot check itself (ranges, related names), "never seen"
when there is no filter or the record passes all of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bridge.mapping.model import Mapping
from bridge.outreach.models import SourceRecord
from bridge.store import changelog, checkpoints, dead_letters, idmap, links

Status = Literal[
    "in_zendesk", "deleted_kept", "deleted_removed", "dead_lettered", "filtered_out",
    "not_read_yet", "never_seen",
]  # fmt: skip
IN_ZENDESK: frozenset[str] = frozenset({"in_zendesk", "deleted_kept"})


@dataclass(slots=True)
class RecordState:
    """What bridge keeps about one record."""

    written: idmap.WrittenRecord | None
    letter: dead_letters.DeadLetterRow | None
    changes: list[changelog.Entry]
    last: changelog.Entry | None
    parked: list[tuple[links.ParkedLink, datetime]]
    refused: list[str]
    checkpoint: checkpoints.StoredCheckpoint | None

    def deleted(self) -> changelog.Entry | None:
        """The changelog row of bridge deleting the record's Zendesk record, if one is kept."""
        return next((e for e in self.changes if e.change.action == "deleted"), None)

    def settles_it(self) -> bool:
        """Whether this state alone says where the record stands: an id-map row, a dead letter
        or a kept `deleted` row. Other changelog rows alone (their id-map row and dead letter
        gone since: a purge, a reset) do not, so Outreach is asked."""
        return self.written is not None or self.letter is not None or self.deleted() is not None


def status_of(
    mapping: Mapping, source_id: str, state: RecordState, asked: bool, found: SourceRecord | None
) -> tuple[Status, str | None]:
    """The record's status and, unless it is simply in Zendesk, the one sentence saying why.

    `asked`: whether Outreach was asked (then `found` is its answer: the record, or None)."""
    row, letter, what = state.written, state.letter, f"{mapping.source.type} {source_id}"
    if row is not None and row.gone_at is None:
        return "in_zendesk", None
    if row is not None:
        return "deleted_kept", (
            f"Deleted in Outreach: reconcile marked it gone at {_when(row.gone_at)}, and its Zendesk "
            f"record {row.zendesk_id or '(id unknown)'} is kept, as on_delete: keep says."
        )
    if letter is not None:
        return "dead_lettered", (
            f"Dead-lettered: it could not be written ({letter.attempts} attempt(s) since "
            f"{_when(letter.first_failed_at)}): {letter.error}"
        )
    deleted = state.deleted()
    if deleted is not None:
        return "deleted_removed", (
            f"Deleted in Outreach: bridge deleted its Zendesk record at {_when(deleted.at)}, "
            "as on_delete: delete says."
        )
    if not asked:
        return "never_seen", f"Never seen: bridge has no state for {what} (no run has read it)."
    status, reason = _from_outreach(mapping, what, state.checkpoint, found)
    if status == "never_seen" and state.changes:  # read once, its id-map row and letter gone since
        last = state.changes[0]
        now = "has no such record" if found is None else f"has it (updated at {_when(found.updated_at)})"
        reason = (
            f"Not written: a run read it ({last.change.action.replace('_', ' ')} at {_when(last.at)}), but "
            f"bridge keeps no id-map row or dead letter for it now (a dead letter purged?), and Outreach {now}."
        )
    return status, reason


def _from_outreach(
    mapping: Mapping, what: str, cp: checkpoints.StoredCheckpoint | None, found: SourceRecord | None
) -> tuple[Status, str]:
    """The status of a record bridge has no state for, from what Outreach says of it now."""
    if found is None:
        return "never_seen", (
            f"Never seen: bridge never read {what} and Outreach has no such record "
            "(deleted before a run reached it, or a wrong id)."
        )
    passes, failed = outside_filter(mapping, found)
    if passes is False:
        return "filtered_out", f"Filtered out by source.filter: {failed}."
    updated = found.updated_at
    watermark = cp.watermark if cp is not None else None
    if watermark is None:
        return "not_read_yet", (
            f"Not read yet: no run of {mapping.name} has settled a page yet (no watermark); "
            "the next run reads it."
        )
    if updated is None or updated > watermark:
        return "not_read_yet", (
            f"Not read yet: updated in Outreach at {_when(updated)}, after the watermark "
            f"{_when(watermark)}; the next run of {mapping.name} reads it."
        )
    if passes is None:
        return "filtered_out", (
            f"Filtered out by source.filter: updated at {_when(updated)}, before the watermark "
            f"{_when(watermark)}, yet no run listed it under the filter {mapping.source.query_filters()}."
        )
    return "never_seen", (
        f"Never seen: Outreach has it (updated at {_when(updated)}, before the watermark "
        f"{_when(watermark)}) but no run read it; `bridge backfill {mapping.name} --full` reads everything again."
    )


def outside_filter(mapping: Mapping, record: SourceRecord) -> tuple[bool | None, str | None]:
    """Whether the record passes `source.filter`, judged on the plain conditions bridge can check
    itself (an attribute or a relationship id equal to a value or one of a list): (False, which
    condition it fails), (True, None) when it passes every condition, (None, None) when it
    passes those and another kind (a range, a related name, a null test) is left unchecked."""
    checked_all = True
    for key, wanted in mapping.source.filter.items():
        path = re.findall(r"\[([^\]]+)\]", key)
        values = [str(v) for v in wanted] if isinstance(wanted, list) else str(wanted).split(",")
        if any(".." in v or v.startswith("__") for v in values):
            checked_all = False
            continue
        if len(path) == 1 and path[0] in record.attributes:
            have = _text(record.attributes[path[0]])
        elif len(path) == 2 and path[1] == "id" and path[0] in record.relationships:
            ref = record.relationships[path[0]]
            have = str(ref.id) if ref is not None else None
        else:
            checked_all = False
            continue
        if have not in values:
            wants = " or ".join(map(repr, values))
            return False, f"{'.'.join(path)} is {have!r} in Outreach, the filter wants {wants}"
    return (True if checked_all else None), None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _when(moment: datetime | None) -> str:
    """A time as a sentence gives it: UTC, to the second."""
    if moment is None:
        return "an unknown time"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
