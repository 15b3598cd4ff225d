"""What the Zendesk client takes and hands back: plain frozen dataclasses.

Wire payloads are validated with pydantic at the edge (`client.py`, `jobs.py`); callers see
only these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NewType

ZendeskRecordId = NewType("ZendeskRecordId", str)
RECORD_NOT_FOUND = "RecordNotFound"  # an item's error code for a record Zendesk does not have


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
    # The item's own error code (`RecordInvalid`, `RecordNotFound`, …), if it gave one; left
    # out of equality, as `error` already begins with it.
    code: str = field(default="", compare=False)
    # The bulk job that gave this result (None: no job ran for the item); for the changelog.
    job_id: str | None = field(default=None, compare=False)

    @property
    def already_gone(self) -> bool:
        """The item's own error says Zendesk has no such record: a delete of it is done
        already. A job that failed as a whole says nothing of the sort."""
        return not self.ok and self.code == RECORD_NOT_FOUND

    def refused_fields(self, fields: Iterable[str]) -> set[str]:
        """Those of `fields` (lookup fields the item set) that its own error names: only these
        count as refused (their target is gone from Zendesk). An error that names none, and a
        job failure, refuse nothing."""
        if self.ok or self.unconfirmed:
            return set()
        return {k for k in fields if re.search(rf"\b{re.escape(k)}\b", self.error)}


@dataclass(frozen=True, slots=True)
class ZendeskRecord:
    """A custom object record as Zendesk stores it."""

    id: ZendeskRecordId
    external_id: str | None
    name: str
    fields: dict[str, Any]
    updated_at: datetime | None = None  # when Zendesk last changed it, where the answer says


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
