"""What the Zendesk client takes and hands back: plain frozen dataclasses.

Wire payloads are validated with pydantic at the edge (`client.py`, `jobs.py`); callers see
only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NewType

ZendeskRecordId = NewType("ZendeskRecordId", str)


@dataclass(frozen=True, slots=True)
class UpsertItem:
    """One record for a `create_or_update_by_external_id` bulk job."""

    external_id: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)  # custom_object_fields


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one item of a bulk job, matched back to the item by external id."""

    external_id: str
    ok: bool
    record_id: ZendeskRecordId | None = None
    error: str = ""  # the API's own error text, for the dead letter
    # No result of its own: the job failed as a whole, or never reported on this item. Says
    # nothing against the item (nor its lookups); worth sending again.
    unconfirmed: bool = False


@dataclass(frozen=True, slots=True)
class ZendeskRecord:
    """A custom object record as Zendesk stores it."""

    id: ZendeskRecordId
    external_id: str | None
    name: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordUpdate:
    """One item of an `update` bulk job: only the fields sent change (used to fill lookups)."""

    id: ZendeskRecordId
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ZendeskPerson:
    """A Zendesk user or organization, as a lookup target."""

    id: str
    external_id: str | None
    email: str | None
    name: str
