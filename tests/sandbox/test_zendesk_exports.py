"""The simulator's incremental user and organization exports over real HTTP (api/zendesk.md).

Users are exported with cursors; organizations only by time, as Zendesk serves them (its
guide: only tickets and users have a cursor-based export)."""

from __future__ import annotations

from tests import zendesk_oas

from .conftest import World

USERS = "/api/v2/incremental/users/cursor"
ORGS = "/api/v2/incremental/organizations"


async def test_the_organizations_export_is_time_based_and_has_no_cursor_form(world: World) -> None:
    zd = world.sandbox.zendesk
    zd.exports.rate_limit = 1000
    before = set(zd.organizations)
    world.clock.advance(120)
    made = []
    for i in range(5):
        made.append(zd.add_organization(f"Org {i}", f"org-{i}"))
        world.clock.advance(1)
    world.clock.advance(120)
    status, first, _ = await world.z("GET", f"{ORGS}?start_time=0&per_page=2")
    assert status == 200 and "after_cursor" not in first
    zendesk_oas.validate_response("GET", ORGS, status, first)
    assert first["count"] == len(first["organizations"]) and first["end_of_stream"] is False
    assert first["next_page"].endswith(f"start_time={first['end_time']}")
    seen = [o["id"] for o in first["organizations"]]
    body = first
    while not body["end_of_stream"]:
        status, body, _ = await world.z("GET", body["next_page"])
        assert status == 200
        seen += [o["id"] for o in body["organizations"]]
    assert set(seen) == before | set(made)  # a page may repeat rows of its start second
    world.clock.advance(120)
    zd.delete_organization(made[0])
    world.clock.advance(120)
    _, later, _ = await world.z("GET", f"{ORGS}?start_time={body['end_time'] + 1}")
    assert [(o["id"], o["deleted_at"] is not None) for o in later["organizations"]] == [(made[0], True)]
    async with world.http.get(f"{world.sandbox.zendesk_url}{ORGS}/cursor?start_time=0", headers=world.z_auth) as r:
        assert r.status == 404


async def test_pages_follow_the_cursor_to_the_end_of_the_stream_and_resume_later(world: World) -> None:
    world.sandbox.zendesk.exports.rate_limit = 1000
    seeded = len(world.sandbox.zendesk.users)
    status, first, _ = await world.z("GET", f"{USERS}?start_time=0&per_page=5")
    assert status == 200 and len(first["users"]) == 5 and first["end_of_stream"] is False
    assert first["before_cursor"] is None and first["after_url"].endswith(f"cursor={first['after_cursor']}")
    ids = [u["id"] for u in first["users"]]
    body = first
    while not body["end_of_stream"]:
        status, body, _ = await world.z("GET", body["after_url"])  # `.json` after_url is served too
        assert status == 200
        ids += [u["id"] for u in body["users"]]
    assert len(ids) == len(set(ids)) == seeded
    status, idle, _ = await world.z("GET", f"{USERS}?cursor={body['after_cursor']}")
    assert idle["users"] == [] and idle["end_of_stream"] is True
    new = world.sandbox.zendesk.add_user("New Person", "new@example.com")
    status, later, _ = await world.z("GET", f"{USERS}?cursor={body['after_cursor']}")
    assert [u["id"] for u in later["users"]] == [new] and later["end_of_stream"] is True


async def test_deleted_people_stay_listed_as_deleted_and_identities_are_sideloaded(world: World) -> None:
    zd = world.sandbox.zendesk
    zd.exports.rate_limit = 1000
    uid = zd.add_user("Two Mails", "Primary@Example.com", other_emails=("second@example.com",))
    status, all_, _ = await world.z("GET", f"{USERS}?start_time=0&include=identities")
    values = {i["value"] for i in all_["identities"] if i["user_id"] == uid}
    assert values == {"Primary@Example.com", "second@example.com"}
    zd.delete_user(uid)
    oid = zd.add_organization("Gone Org")
    zd.delete_organization(oid)
    _, users, _ = await world.z("GET", f"{USERS}?cursor={all_['after_cursor']}")
    assert [(u["id"], u["active"]) for u in users["users"]] == [(uid, False)]
    world.clock.advance(120)
    _, orgs, _ = await world.z("GET", f"{ORGS}?start_time=0")
    assert [o["deleted_at"] is not None for o in orgs["organizations"] if o["id"] == oid] == [True]


async def test_exports_have_their_own_limit_answered_with_429_and_retry_after(world: World) -> None:
    world.sandbox.zendesk.exports.rate_limit = 2
    statuses = [(await world.z("GET", f"{USERS}?start_time=0"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, body, headers = await world.z("GET", f"{ORGS}?start_time=0")
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60 and body["error"] == "APIRateLimitExceeded"
    other, _, _ = await world.z("GET", "/api/v2/users/show_many?ids=1")
    assert other == 200  # the account's other endpoints are not held by the export limit
    world.clock.advance(60)
    assert (await world.z("GET", f"{USERS}?start_time=0"))[0] == 200


async def test_start_time_too_recent_and_invalid_cursor_are_400(world: World) -> None:
    world.sandbox.zendesk.exports.rate_limit = 1000
    recent = int(world.clock().timestamp()) - 10
    status, body, _ = await world.z("GET", f"{USERS}?start_time={recent}")
    assert status == 400 and body["error"] == "StartTimeTooRecent"
    status, body, _ = await world.z("GET", f"{USERS}?cursor=%%%")
    assert status == 400 and body["error"] == "InvalidCursor"
