"""Parked links: park, re-park, unpark, what is fillable, refused ids, the status summary."""

from __future__ import annotations

from bridge.store import idmap, links
from bridge.store.idmap import IdMapRow
from bridge.store.links import ParkedLink
from bridge.store.pool import Connection


def brand(source_id: str, target_id: str = "b1", failed: str | None = None) -> ParkedLink:
    return ParkedLink(source_id, "brand", "vehicle_brands", "vehicle_brands", target_id, failed_zendesk_id=failed)


def driver(source_id: str, email: str | None = "ada@example.com") -> ParkedLink:
    return ParkedLink(source_id, "driver", "zen:user", "prospect", "p1", "email", email)


async def test_park_again_keeps_the_age_unless_the_target_changed(db_conn: Connection) -> None:
    await links.park_many(db_conn, "vehicles", [brand("1"), brand("2")])
    before = dict((k.source_id, at) for k, at in await links.list_parked(db_conn, "vehicles"))
    await links.park_many(db_conn, "vehicles", [brand("1"), brand("2", "b2")])
    after = {k.source_id: (k, at) for k, at in await links.list_parked(db_conn, "vehicles")}
    assert after["1"][1] == before["1"]
    assert after["2"][1] > before["2"] and after["2"][0].target_source_id == "b2"
    await links.unpark(db_conn, "vehicles", [("1", "brand"), ("9", "brand")])
    assert [k.source_id for k, _ in await links.list_parked(db_conn, "vehicles")] == ["2"]


async def test_only_targets_with_an_unrefused_zendesk_id_are_ready(db_conn: Connection) -> None:
    await idmap.upsert_many(db_conn, "vehicles", [IdMapRow(s, f"Z{s}", f"v:{s}", "h") for s in "123"])
    await idmap.upsert_many(db_conn, "vehicle_brands", [IdMapRow("b1", "ZB1", "b:1", "h")])
    await links.park_many(db_conn, "vehicles", [brand("1"), brand("2", "b9"), brand("3", failed="ZB1")])
    await links.park_many(db_conn, "vehicles", [driver("1")])

    ready = await links.ready_on_mappings(db_conn, "vehicle_brands")

    assert [(r.source_id, r.referrer_id, r.value) for r in ready] == [("1", "Z1", "ZB1")]
    assert await links.ready_on_mappings(db_conn, "other") == []
    assert await links.refused_ids(db_conn, "vehicle_brands", ["b1", "b9"]) == {("b1", "ZB1")}
    await links.mark_refused(db_conn, ready)
    assert await links.ready_on_mappings(db_conn) == []  # refused ids are not offered again


async def test_waiting_on_zendesk_and_conditional_removal(db_conn: Connection) -> None:
    await idmap.upsert_many(db_conn, "vehicles", [IdMapRow(s, f"Z{s}", f"v:{s}", "h") for s in "12"])
    await links.park_many(db_conn, "vehicles", [driver("1"), driver("2", None)])
    now = await links.database_now(db_conn)
    waiting = await links.waiting_on_zendesk(db_conn, "vehicles", now)
    assert [(w.source_id, w.match, w.match_value) for w in waiting] == [("1", "email", "ada@example.com")]
    # Re-parked meanwhile with another target: the filled row must survive the removal.
    await links.park_many(db_conn, "vehicles", [ParkedLink("1", "driver", "zen:user", "prospect", "p2", "email", "x@y")])
    await links.remove_filled(db_conn, waiting)
    assert [k.target_source_id for k, _ in await links.list_parked(db_conn, "vehicles") if k.source_id == "1"] == ["p2"]
    summary = await links.summary(db_conn)
    assert summary["vehicles"].count == 2 and summary["vehicles"].oldest is not None
