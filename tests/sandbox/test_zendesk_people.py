"""The Zendesk sandbox's look-ups that relationships rely on: exact searches, organizations by
name, and lookup fields refusing ids that do not exist, item by item."""

from __future__ import annotations

import asyncio

from tests.sandbox.conftest import World

CO = "/api/v2/custom_objects"


async def test_exact_searches_for_users_and_organizations(world: World) -> None:
    zd = world.sandbox.zendesk
    uid = zd.add_user("Zed Quux", "zed@example.com")
    org = zd.add_organization("Acme Corp", external_id="acme")
    _, body, _ = await world.z("GET", "/api/v2/users/search", params={"query": 'name:"Zed Quux"'})
    assert [u["id"] for u in body["users"]] == [uid]
    _, body, _ = await world.z("GET", "/api/v2/users/search", params={"query": 'email:"ZED@example.com"'})
    assert [u["id"] for u in body["users"]] == [uid]
    _, body, _ = await world.z("GET", "/api/v2/organizations/search", params={"name": "acme corp"})
    assert [o["id"] for o in body["organizations"]] == [org]
    _, body, _ = await world.z("GET", "/api/v2/organizations/search", params={"external_id": "ACME"})
    assert [o["id"] for o in body["organizations"]] == [org]
    status, _, _ = await world.z("GET", "/api/v2/organizations/search", params={"name": "x", "external_id": "y"})
    assert status == 400


async def test_a_lookup_to_a_missing_target_fails_only_its_item(world: World) -> None:
    await world.z("POST", CO, {"custom_object": {"key": "car", "title": "Car", "title_pluralized": "Cars"}})
    await world.z("POST", f"{CO}/car/fields", {"custom_object_field": {
        "key": "driver", "title": "Driver", "type": "lookup", "relationship_target_type": "zen:user"}})
    uid = next(iter(world.sandbox.zendesk.users))
    items = [{"external_id": "a", "name": "A", "custom_object_fields": {"driver": str(uid)}},
             {"external_id": "b", "name": "B", "custom_object_fields": {"driver": "999"}}]
    _, body, _ = await world.z("POST", f"{CO}/car/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    job_id = body["job_status"]["id"]
    for _ in range(200):
        _, status, _ = await world.z("GET", f"/api/v2/job_statuses/{job_id}")
        if status["job_status"]["status"] == "completed":
            break
        await asyncio.sleep(0.01)
    results = status["job_status"]["results"]
    assert [r["success"] for r in results] == [True, False]
    assert "driver" in results[1]["details"]
