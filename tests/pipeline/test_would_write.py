"""What the current mapping would write: lookups resolved read-only, as a run resolves them."""

from __future__ import annotations

from bridge.mapping.model import Mapping
from bridge.outreach.models import OutreachId, RelatedRef, SourceRecord
from bridge.pipeline.would_write import would_write
from bridge.store import directory
from bridge.store.pool import Connection

MAPPING = Mapping.model_validate({
    "name": "vehicles", "source": {"type": "vehicles"}, "target": {"object": "vehicle", "name": "{vehicle_name}"},
    "fields": {"vehicle_name": "vehicle_name"},
    "relationships": {"driver": {"from": "main_driver", "target": "zen:user", "match": "email"}},
})  # fmt: skip
DRIVER = RelatedRef("prospect", OutreachId("5"))
INCLUDED = {("prospect", OutreachId("5")): {"emails": ["Ada@Example.com"]}}


def record(driver: RelatedRef | None) -> SourceRecord:
    return SourceRecord("vehicles", OutreachId("1"), {"vehicle_name": "Herbie"}, {"main_driver": driver}, None)


async def test_an_email_lookup_is_answered_by_the_loaded_people_directory(db_conn: Connection) -> None:
    people = [directory.Person("901", None, ("ada@example.com",), "Ada", False)]
    await directory.save_page(db_conn, "users", people, "c1", end=True)
    preview = await would_write(db_conn, MAPPING, record(DRIVER), INCLUDED)
    assert preview.payload == {"name": "Herbie", "fields": {"vehicle_name": "Herbie", "driver": "901"}}
    assert not preview.unknown


async def test_without_the_directory_an_email_lookup_is_unknown_not_searched(db_conn: Connection) -> None:
    preview = await would_write(db_conn, MAPPING, record(DRIVER), INCLUDED)
    assert preview.payload is not None and preview.payload["fields"]["driver"] is None
    assert preview.unknown == {"driver"} and "would look up email 'Ada@Example.com'" in preview.notes["driver"]


async def test_a_null_relationship_clears_the_lookup(db_conn: Connection) -> None:
    preview = await would_write(db_conn, MAPPING, record(None), {})
    assert preview.payload is not None and preview.payload["fields"]["driver"] is None
    assert "cleared" in preview.notes["driver"] and not preview.unknown
