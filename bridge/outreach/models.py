"""What the Outreach client hands inward: plain frozen records and pages.

The JSON:API envelope is parsed at the edge (pydantic, in `client.py`); everything past the
client sees only these dataclasses. Ids are strings inside bridge although Outreach sends
integers, so that id-map keys and external ids never depend on JSON number handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NewType

OutreachId = NewType("OutreachId", str)


@dataclass(frozen=True, slots=True)
class RelatedRef:
    """A to-one relationship target: `relationships.<name>.data`."""

    type: str
    id: OutreachId


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Outreach resource: custom object record or standard resource."""

    type: str
    id: OutreachId
    attributes: dict[str, Any]
    # name -> target, or None when the relationship is explicitly null;
    # to-many relationships and link-only ones are left out.
    relationships: dict[str, RelatedRef | None]
    updated_at: datetime | None  # None when absent or unreadable: such a record moves no watermark
    # Why Outreach's answer for this record could not be read (a wrong JSON type, an invalid
    # timestamp); such a record carries what attributes could be kept and becomes a dead letter.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, with where it came from so a run can resume after it."""

    records: list[SourceRecord]
    url: str  # the URL that produced this page (the resume cursor for it)
    next_url: str | None  # links.next, verbatim; None on the last page
    # (type, id) -> attributes of resources from `included`
    included: dict[tuple[str, OutreachId], dict[str, Any]] = field(default_factory=dict)
