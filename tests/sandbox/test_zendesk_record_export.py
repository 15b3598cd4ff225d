"""The simulator's incremental export of custom object records over real HTTP (api/zendesk.md,
"Incremental exports"), and the control endpoints that change records by hand."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sandbox import ZendeskSandbox
from bridge.sandbox.zendesk_record_export import DELETED

from .conftest import FakeClock, World

EXPORT = "/api/v2/incremental/custom_objects/vehicle/cursor"


def make_vehicles(world: World, n: int) -> list[str]:
    zd = world.sandbox.zendesk
    zd.exports.rate_limit = 1000
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    zd.add_field("vehicle", {"key": "color", "type": "text", "title": "Color"})
    zd.add_field("vehicle", {"key": "seats", "type": "integer", "title": "Seats"})
    ids = []
    for i in range(n):
        payload = {"name": f"Car {i}", "external_id": f"outreach:vehicles:{i}", "custom_object_fields": {"color": "red", "seats": i}}
        ids.append(zd.create_record("vehicle", payload)["id"])
        world.clock.advance(1)
    world.clock.advance(120)
    return ids


async def read_all(world: World, first: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    status, body, _ = await world.z("GET", first)
    assert status == 200, body
    rows = list(body["custom_object_records"])
    while body["meta"]["has_more"]:
        status, body, _ = await world.z("GET", f"{EXPORT}?cursor={body['after_cursor']}&per_page=4")
        assert status == 200, body
        rows += body["custom_object_records"]
    return rows, body


async def test_pages_follow_the_cursor_until_has_more_is_false_and_resume_later(world: World) -> None:
    ids = make_vehicles(world, 10)
    status, first, _ = await world.z("GET", f"{EXPORT}?start_time=0&per_page=4")
    assert status == 200 and len(first["custom_object_records"]) == 4
    assert first["meta"] == {"has_more": True} and first["end_of_stream"] is False
    assert first["filter"] == {"exclude_deleted": False}
    assert first["after_url"].endswith(f"cursor={first['after_cursor']}")
    rows, last = await read_all(world, f"{EXPORT}?start_time=0&per_page=4")
    assert [r["id"] for r in rows] == ids  # oldest change first, each once
    assert rows[3]["custom_object_fields"] == {"color": "red", "seats": 3} and rows[3]["external_id"] == "outreach:vehicles:3"
    assert last["end_of_stream"] is True and last["after_cursor"]
    _, idle, _ = await world.z("GET", f"{EXPORT}?cursor={last['after_cursor']}")
    assert idle["custom_object_records"] == [] and idle["meta"]["has_more"] is False
    world.sandbox.zendesk.update_record("vehicle", ids[2], {"custom_object_fields": {"color": "blue"}})
    _, later, _ = await world.z("GET", f"{EXPORT}?cursor={idle['after_cursor']}")
    assert [(r["id"], r["custom_object_fields"]["color"]) for r in later["custom_object_records"]] == [(ids[2], "blue")]


async def test_start_time_keeps_only_records_changed_since(world: World) -> None:
    ids = make_vehicles(world, 5)
    since = int(world.clock().timestamp()) - 60
    world.sandbox.zendesk.update_record("vehicle", ids[1], {"name": "Renamed"})
    world.clock.advance(61)
    _, body, _ = await world.z("GET", f"{EXPORT}?start_time={since}")
    assert [r["name"] for r in body["custom_object_records"]] == ["Renamed"]


async def test_hand_edits_and_deletes_show_in_the_export_but_not_among_api_writes(world: World) -> None:
    ids = make_vehicles(world, 3)
    _, all_, _ = await world.z("GET", f"{EXPORT}?start_time=0")
    writes = len(world.sandbox.counters.writes)
    requests = world.sandbox.counters.total("zendesk")
    status, edited, _ = await world.z("POST", "/_sandbox/zendesk/records/edit",
                                      {"object": "vehicle", "external_id": "outreach:vehicles:0", "fields": {"color": "green"}})  # fmt: skip
    assert status == 200 and edited["record"]["custom_object_fields"]["color"] == "green"
    world.clock.advance(5)
    status, gone, _ = await world.z("POST", "/_sandbox/zendesk/records/delete", {"object": "vehicle", "id": ids[1]})
    assert status == 200 and gone == {"deleted": ids[1]}
    status, made, _ = await world.z("POST", "/_sandbox/zendesk/records/create",
                                    {"object": "vehicle", "name": "Stray", "external_id": "outreach:vehicles:999"})  # fmt: skip
    assert status == 201 and made["record"]["external_id"] == "outreach:vehicles:999"
    assert len(world.sandbox.counters.writes) == writes and world.sandbox.counters.total("zendesk") == requests
    _, changed, _ = await world.z("GET", f"{EXPORT}?cursor={all_['after_cursor']}")
    rows = changed["custom_object_records"]
    assert [r["id"] for r in rows] == [ids[0], ids[1], made["record"]["id"]]
    assert rows[0]["custom_object_fields"]["color"] == "green" and rows[0]["updated_at"] > all_["custom_object_records"][0]["updated_at"]
    tomb = rows[1]
    assert tomb["name"] == tomb["external_id"] == "[DELETED]"
    assert tomb["custom_object_fields"] == {"color": "[DELETED]", "seats": "[DELETED]"}
    assert tomb["created_at"] == all_["custom_object_records"][1]["created_at"] and tomb["updated_at"] == world.sandbox.zendesk.now()
    _, kept, _ = await world.z("GET", f"{EXPORT}?cursor={all_['after_cursor']}&filter[exclude_deleted]=true")
    assert [r["id"] for r in kept["custom_object_records"]] == [ids[0], made["record"]["id"]]
    assert kept["filter"] == {"exclude_deleted": True}


async def test_deletions_through_the_api_are_tombstones_kept_thirty_days(world: World) -> None:
    ids = make_vehicles(world, 2)
    status, _, _ = await world.z("DELETE", f"/api/v2/custom_objects/vehicle/records/{ids[0]}")
    assert status == 204
    world.clock.advance(120)
    _, body, _ = await world.z("GET", f"{EXPORT}?start_time=0")
    assert [(r["id"], r["name"]) for r in body["custom_object_records"]] == [(ids[1], "Car 1"), (ids[0], "[DELETED]")]
    world.clock.advance(31 * 86400)
    _, body, _ = await world.z("GET", f"{EXPORT}?start_time=0")
    assert [r["id"] for r in body["custom_object_records"]] == [ids[1]]


async def test_start_time_too_recent_and_bad_or_expired_cursors_are_400(world: World) -> None:
    make_vehicles(world, 1)
    status, body, _ = await world.z("GET", f"{EXPORT}?start_time={int(world.clock().timestamp()) - 30}")
    assert status == 400 and body["error"] == "StartTimeTooRecent"
    status, body, _ = await world.z("GET", f"{EXPORT}?cursor=garbage!")
    assert status == 400 and body["error"] == "InvalidCursor"
    _, ok, _ = await world.z("GET", f"{EXPORT}?start_time=0")
    status, _, _ = await world.z("POST", "/_sandbox/zendesk/exports", {"expire_cursors": True})
    assert status == 200
    status, body, _ = await world.z("GET", f"{EXPORT}?cursor={ok['after_cursor']}")
    assert status == 400 and body["error"] == "InvalidCursor"
    status, body, _ = await world.z("GET", EXPORT)
    assert status == 400


async def test_held_back_changes_are_served_later_from_the_same_cursor(world: World) -> None:
    ids = make_vehicles(world, 3)
    _, all_, _ = await world.z("GET", f"{EXPORT}?start_time=0")
    status, body, _ = await world.z("POST", "/_sandbox/zendesk/exports", {"hold_back_seconds": 60})
    assert status == 200 and body["hold_back_seconds"] == 60
    world.sandbox.zendesk.update_record("vehicle", ids[0], {"name": "Old news"})
    world.clock.advance(30)
    world.sandbox.zendesk.update_record("vehicle", ids[1], {"name": "Fresh"})
    world.clock.advance(31)
    _, early, _ = await world.z("GET", f"{EXPORT}?cursor={all_['after_cursor']}")
    assert [r["name"] for r in early["custom_object_records"]] == ["Old news"] and early["meta"]["has_more"] is False
    world.clock.advance(30)
    _, later, _ = await world.z("GET", f"{EXPORT}?cursor={early['after_cursor']}")
    assert [r["name"] for r in later["custom_object_records"]] == ["Fresh"]


async def test_the_export_limit_is_shared_with_the_user_export(world: World) -> None:
    make_vehicles(world, 1)
    status, _, _ = await world.z("POST", "/_sandbox/zendesk/exports", {"rate_limit": 2})
    assert status == 200
    assert (await world.z("GET", "/api/v2/incremental/users/cursor?start_time=0"))[0] == 200
    assert (await world.z("GET", f"{EXPORT}?start_time=0"))[0] == 200
    status, body, headers = await world.z("GET", f"{EXPORT}?start_time=0")
    assert status == 429 and body["error"] == "APIRateLimitExceeded" and 1 <= int(headers["Retry-After"]) <= 60
    world.clock.advance(60)
    assert (await world.z("GET", f"{EXPORT}?start_time=0"))[0] == 200


async def test_an_account_without_the_export_answers_403_or_404(world: World) -> None:
    make_vehicles(world, 1)
    for code, error in ((403, "Forbidden"), (404, "InvalidEndpoint")):
        status, _, _ = await world.z("POST", "/_sandbox/zendesk/exports", {"record_export_unavailable": code})
        assert status == 200
        status, body, _ = await world.z("GET", f"{EXPORT}?start_time=0")
        assert status == code and body["error"] == error
    await world.z("POST", "/_sandbox/zendesk/exports", {"record_export_unavailable": None})
    assert (await world.z("GET", f"{EXPORT}?start_time=0"))[0] == 200
    status, body, _ = await world.z("GET", "/api/v2/incremental/custom_objects/nothing/cursor?start_time=0")
    assert status == 404 and body["errors"][0]["code"] == "NotFound"


async def test_control_requests_for_missing_records_or_bad_values_are_refused(world: World) -> None:
    make_vehicles(world, 1)
    status, _, _ = await world.z("POST", "/_sandbox/zendesk/records/edit", {"object": "vehicle", "id": "nope"})
    assert status == 404
    status, _, _ = await world.z("POST", "/_sandbox/zendesk/records/delete", {"object": "boat", "id": "x"})
    assert status == 404
    status, body, _ = await world.z("POST", "/_sandbox/zendesk/records/edit",
                                    {"object": "vehicle", "external_id": "outreach:vehicles:0", "fields": {"seats": "many"}})  # fmt: skip
    assert status == 422 and body["error"] == "RecordInvalid"
    status, _, _ = await world.z("POST", "/_sandbox/zendesk/exports", {"record_export_unavailable": 500})
    assert status == 400


OPS = st.lists(st.one_of(st.just(("create", 0)), st.tuples(st.sampled_from(["update", "delete", "mark"]), st.integers(0, 30))), max_size=40)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(ops=OPS, per_page=st.integers(1, 5), hold_back=st.sampled_from([0, 3]))
def test_reading_from_any_cursor_to_the_end_gives_each_record_changed_since_once(
    ops: list[tuple[str, int]], per_page: int, hold_back: int
) -> None:
    """Whatever happened, a cursor taken at any moment reads back exactly the records changed
    since, each once, as they are now: live with their values, or deleted; changes held back
    for being too fresh come from the cursor where the read stopped, once they are old enough."""
    clock = FakeClock()
    zd = ZendeskSandbox(clock=clock)
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    zd.add_field("vehicle", {"key": "n", "type": "integer", "title": "N"})
    changes = zd.record_changes
    changes.compact_slack = 0  # prune stale change-log entries as often as possible
    made: list[str] = []
    changed_at: dict[str, int] = {}  # record id → index of its latest change
    marks: list[tuple[int, str]] = [(-1, changes.cursor(0))]
    for step, (op, i) in enumerate(ops):
        clock.advance(1)
        if op == "create":
            made.append(zd.create_record("vehicle", {"name": f"r{step}", "custom_object_fields": {"n": step}})["id"])
            changed_at[made[-1]] = step
        elif op == "mark":
            _, last, _ = changes.page("vehicle", zd.record_table("vehicle"), 0, None, 10_000, False)
            marks.append((step, changes.cursor(last)))
        elif made and zd.record("vehicle", made[i % len(made)]) is not None:
            rid = made[i % len(made)]
            if op == "update":
                zd.update_record("vehicle", rid, {"custom_object_fields": {"n": step}})
            else:
                zd.delete_record("vehicle", rid)
            changed_at[rid] = step
    changes.hold_back = hold_back
    stopped = []
    for _, cursor in marks:
        after = changes.uncursor(cursor)
        assert after is not None
        seen: list[dict[str, Any]] = []
        while True:
            rows, last, more = changes.page("vehicle", zd.record_table("vehicle"), after, None, per_page, False)
            seen += rows
            after = changes.uncursor(changes.cursor(last))
            assert after is not None
            if not more:
                break
        stopped.append((seen, after))
    clock.advance(hold_back + 1)
    for (step, _), (seen, after) in zip(marks, stopped, strict=True):
        while True:
            rows, after, more = changes.page("vehicle", zd.record_table("vehicle"), after, None, per_page, False)
            seen += rows
            if not more:
                break
        assert [r["id"] for r in seen] == sorted((rid for rid, at in changed_at.items() if at > step), key=changed_at.__getitem__)
        for row in seen:
            live = zd.record("vehicle", row["id"])
            assert (DELETED in row) == (live is None)
            assert live is None or row["custom_object_fields"] == live["custom_object_fields"]
