"""The JSON:API envelope as Outreach sends it, parsed tolerantly into `models` dataclasses.

This is the pydantic boundary of the Outreach client (api/outreach.md, "Envelope"): unknown
keys are ignored, ids may be integers or strings and become strings, `updatedAt` is read with
millisecond or microsecond precision, and relationships keep only what bridge can use — a
to-one `data` object becomes a `RelatedRef`, an explicit `null` becomes None, link-only and
to-many relationships are left out. Anything else wrong with the shape raises `ValueError`
(via pydantic), which the client turns into an `ApiError`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from bridge.outreach.models import OutreachId, Page, RelatedRef, SourceRecord


def _id_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("an id must be an integer or a string")
    if isinstance(value, int):
        return str(value)
    return value


WireId = Annotated[str, BeforeValidator(_id_to_str)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireRef(_Tolerant):
    type: str
    id: WireId


class WireRelationship(_Tolerant):
    data: WireRef | list[WireRef] | None = None


class WireResource(_Tolerant):
    type: str
    id: WireId
    attributes: dict[str, Any] = {}
    relationships: dict[str, WireRelationship] = {}


class WireLinks(_Tolerant):
    next: str | None = None


class WireList(_Tolerant):
    data: list[WireResource]
    included: list[WireResource] = []
    links: WireLinks | None = None


class WireOne(_Tolerant):
    data: WireResource
    included: list[WireResource] = []


def parse_timestamp(value: Any) -> datetime | None:
    """`2024-07-25T13:18:30.000Z` or `...30.736332Z` → aware UTC datetime; None if absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"updatedAt must be a timestamp string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_record(resource: WireResource) -> SourceRecord:
    relationships: dict[str, RelatedRef | None] = {}
    for name, rel in resource.relationships.items():
        if "data" not in rel.model_fields_set or isinstance(rel.data, list):
            continue  # link-only or to-many: not a single target
        relationships[name] = (
            None if rel.data is None else RelatedRef(rel.data.type, OutreachId(rel.data.id))
        )
    return SourceRecord(
        type=resource.type,
        id=OutreachId(resource.id),
        attributes=dict(resource.attributes),
        relationships=relationships,
        updated_at=parse_timestamp(resource.attributes.get("updatedAt")),
    )


def to_page(body: Any, url: str, next_url: str | None) -> Page:
    """A list body → `Page`; raises ValueError (pydantic's) when the shape is not JSON:API."""
    wire = WireList.model_validate(body)
    return Page(
        records=[to_record(r) for r in wire.data],
        url=url,
        next_url=next_url,
        included={(r.type, OutreachId(r.id)): dict(r.attributes) for r in wire.included},
    )


def to_single(body: Any) -> SourceRecord:
    return to_record(WireOne.model_validate(body).data)
