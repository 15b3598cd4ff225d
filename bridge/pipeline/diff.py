"""What a run would do to each record, field by field: the classification behind
`bridge backfill --dry-run --diff`.

Pure and per record, so a preview of any size streams: `classify` says what a run would do
with a translated record given what the id map holds for it, and `field_changes` compares
the payload it would send with the one last sent. Invariants:
- the action is the run's own decision: `create` when the id map has no row for the record
  or its row is marked gone (the run writes it again), `unchanged` when the payload hash
  equals the stored one (the run skips it), else `update`; a record that cannot be
  translated is a `dead_letter`. A record Zendesk would refuse cannot be known without
  writing it, so such records count as creates or updates here;
- only what would be sent is compared: the name and every field of the new payload. A field
  left out of it (a relationship absent from the record, a field dropped from the mapping)
  is not sent, and Zendesk keeps its value, so it is no change;
- a lookup whose Zendesk id cannot be known without a write or a Zendesk request is an
  `Unresolved` value: the run sends it empty and parks the link (after asking Zendesk, for
  `zen:` targets). One that was sent empty last time and is unresolved again is no change;
- the previous payload is the one the id map kept (`store.idmap.written`); rows written
  before payloads were kept have none, and their update says only that it changes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAME = "name"  # how the record's name is listed among its fields' changes


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DEAD_LETTER = "dead_letter"


ACTIONS = tuple(Action)


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A lookup value the preview cannot know without writing or asking Zendesk."""

    reason: str

    def __str__(self) -> str:
        return f"(unresolved: {self.reason})"


# The run would park it: a `mapping:` target bridge has not written (or Zendesk refused),
# or a `zen:` match value the page does not carry.
WOULD_PARK = Unresolved("would park")
# A `mapping:` target not written yet, of a mapping this same run writes: parked, then set
# by the run's fill if the run writes the target.
WOULD_PARK_OR_FILL = Unresolved("would park; set if this run writes the target")
# A `zen:` target the people directory does not answer: the run asks Zendesk (a batched
# check, or a search when there is no directory) and parks the link if Zendesk has none.
WOULD_ASK = Unresolved("would ask Zendesk, else park")


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One value sent differently: `before` is what was last sent (None for a create)."""

    field: str
    before: Any
    after: Any  # a JSON value, or an Unresolved lookup


@dataclass(frozen=True, slots=True)
class RecordDiff:
    mapping: str
    source_id: str
    external_id: str | None
    action: Action
    zendesk_id: str | None = None
    changes: tuple[FieldChange, ...] = ()
    previous_kept: bool = True  # False: an update of a row written before payloads were kept
    error: str | None = None  # why a dead letter cannot be translated

    def as_json(self) -> dict[str, Any]:
        """The stable JSON form (one line of `--diff --json`); every key always present."""
        return {
            "type": "record",
            "mapping": self.mapping,
            "source_id": self.source_id,
            "external_id": self.external_id,
            "action": self.action.value,
            "zendesk_id": self.zendesk_id,
            "previous_kept": self.previous_kept,
            "changes": [
                {
                    "field": c.field,
                    "from": c.before,
                    "to": None if isinstance(c.after, Unresolved) else c.after,
                    "unresolved": c.after.reason if isinstance(c.after, Unresolved) else None,
                }
                for c in self.changes
            ],
            "error": self.error,
        }


@dataclass(slots=True)
class Tally:
    """Counts of one mapping's preview, by action."""

    mapping: str
    counts: dict[Action, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))

    def add(self, diff: RecordDiff) -> None:
        self.counts[diff.action] += 1

    @property
    def read(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {"type": "summary", "mapping": self.mapping, "read": self.read,
                **{a.value: self.counts[a] for a in ACTIONS}}  # fmt: skip


def classify(payload_hash: str, stored_hash: str | None) -> Action:
    """What a run does with a translated record: `stored_hash` is the id map's hash for it,
    None when it has no row or its row is marked gone (`store.idmap.hashes`)."""
    if stored_hash is None:
        return Action.CREATE
    return Action.UNCHANGED if stored_hash == payload_hash else Action.UPDATE


def field_changes(
    name: str, fields: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> tuple[FieldChange, ...]:
    """The name and fields that would be sent differently from `previous` ({"name",
    "fields"}, or None for a record never written: every value is then a change from None).
    The name comes first, then fields in key order."""
    before_fields: Mapping[str, Any] = (previous or {}).get("fields") or {}
    changes = []
    if previous is None or previous.get("name") != name:
        changes.append(FieldChange(NAME, None if previous is None else previous.get("name"), name))
    for key in sorted(fields):
        after, before = fields[key], before_fields.get(key)
        if isinstance(after, Unresolved):
            if before is None and previous is not None:
                continue  # sent empty last time, and empty again unless Zendesk answers
        elif previous is not None and _same(before, after):
            continue  # a field not sent last time counts as empty
        changes.append(FieldChange(key, before, after))
    return tuple(changes)


def _same(before: Any, after: Any) -> bool:
    """Equal as JSON: 1 and 1.0 alike, but never True and 1."""
    if isinstance(before, bool) or isinstance(after, bool):
        return before is after
    return bool(before == after)
