"""What the Outreach client hands inward: plain frozen records and pages.

The JSON:API envelope is parsed at the edge (`wire.py`); everything past the client sees only
these immutable records. Ids are strings inside bridge although Outreach sends integers, so
that id-map keys and external ids never depend on JSON number handling. One `SourceRecord`
and a `RelatedRef` per relationship are made for every record read, so they are named
tuples: as immutable as frozen dataclasses, and three times cheaper to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, NewType

OutreachId = NewType("OutreachId", str)


class RelatedRef(NamedTuple):
    """A to-one relationship target: `relationships.<name>.data`."""

    type: str
    id: OutreachId


class SourceRecord(NamedTuple):
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
