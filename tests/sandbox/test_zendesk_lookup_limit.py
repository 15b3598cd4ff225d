"""The Zendesk simulator's lookup-field limit: 5 per object on small plans, 10 otherwise."""

from __future__ import annotations

from bridge.sandbox.zendesk import ZendeskSandbox

from .conftest import World

CO = "/api/v2/custom_objects"


def lookup(n: int) -> dict[str, object]:
    return {"custom_object_field": {"key": f"l{n}", "type": "lookup", "title": f"L{n}",
                                    "relationship_target_type": "zen:user"}}


async def test_lookup_fields_beyond_the_limit_are_refused(world: World) -> None:
    world.sandbox.zendesk.lookup_limit = 2
    await world.z("POST", CO, {"custom_object": {"key": "car", "title": "Car", "title_pluralized": "Cars"}})
    assert [(await world.z("POST", f"{CO}/car/fields", lookup(n)))[0] for n in range(2)] == [201, 201]

    status, body, _ = await world.z("POST", f"{CO}/car/fields", lookup(2))

    assert status == 422 and body["errors"][0]["code"] == "LimitExceeded"
    plain = {"custom_object_field": {"key": "t", "type": "text", "title": "T"}}
    assert (await world.z("POST", f"{CO}/car/fields", plain))[0] == 201


def test_the_default_lookup_limit_follows_the_plan() -> None:
    assert ZendeskSandbox(object_limit=3).lookup_limit == 5
    assert ZendeskSandbox(object_limit=5).lookup_limit == 5
    assert ZendeskSandbox(object_limit=30).lookup_limit == 10
