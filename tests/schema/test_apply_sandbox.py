"""Plan and apply against the sandbox Zendesk over loopback: creation, idempotence, drift, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bridge import schema, wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.pipeline.services import Services
from bridge.schema.desired import wanted_objects
from bridge.schema.limits import LimitExceeded
from bridge.schema.plan import make_plan, source_drift
from bridge.schema.remote import remote_problems
from tests.fixtures_sandbox import SandboxWorld


@asynccontextmanager
async def services(world: SandboxWorld) -> AsyncIterator[Services]:
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        yield s


def repo_mappings(world: SandboxWorld):
    mappings = load_mappings(world.settings.bridge_mappings)
    return mappings, sync_order(mappings)


def writes(world: SandboxWorld) -> int:
    counters = world.sandbox.counters
    return sum(counters.count("zendesk", method=m) for m in ("POST", "PATCH", "PUT", "DELETE")) - counters.count(
        "zendesk", route="oauth_tokens")


async def test_apply_creates_objects_and_fields_then_a_second_run_writes_nothing(world: SandboxWorld) -> None:
    zd = world.sandbox.zendesk
    mappings, order = repo_mappings(world)
    assert zd.objects == {}

    async with services(world) as s:
        first = await schema.ensure_objects(s.zendesk, mappings, order)
        world.sandbox.counters.reset()
        second = await schema.ensure_objects(s.zendesk, mappings, order)

    assert set(zd.objects) == {"vehicle", "vehicle_brand"}
    assert zd.objects["vehicle"]["title_pluralized"] == "Vehicles"
    assert {f["key"]: f["type"] for f in zd.fields["vehicle"]} == {
        "vehicle_name": "text", "top_speed_mph": "integer", "registered_on": "date", "color": "text",
        "electric": "checkbox", "driver": "lookup", "brand": "lookup"}
    assert zd.field("vehicle", "brand")["relationship_target_type"] == "zen:custom_object:vehicle_brand"
    assert zd.field("vehicle", "driver")["relationship_target_type"] == "zen:user"
    assert sum(c.action == "created" for c in first) == 2 + 3 + 7
    assert {c.action for c in second} == {"exists"}
    assert writes(world) == 0, "the second apply sent a write"
    assert world.sandbox.counters.count("zendesk", method="POST") == 0


async def test_objects_are_created_before_the_lookups_that_point_at_them(world: SandboxWorld) -> None:
    mappings, order = repo_mappings(world)
    async with services(world) as s:
        await schema.ensure_objects(s.zendesk, mappings, list(reversed(order)))

    creates = [e.route for e in world.sandbox.counters.entries("zendesk") if e.method == "POST"
               and e.route in ("create_object", "create_field")]
    assert creates[:2] == ["create_object", "create_object"]
    assert world.sandbox.zendesk.field("vehicle", "brand") is not None


async def test_plan_shows_a_field_retyped_by_hand_and_a_new_outreach_attribute(world: SandboxWorld) -> None:
    mappings, order = repo_mappings(world)
    async with services(world) as s:
        await schema.ensure_objects(s.zendesk, mappings, order)
        world.sandbox.zendesk.field("vehicle", "top_speed_mph")["type"] = "text"  # recreated by hand as text
        world.sandbox.outreach.types["vehicles"].attributes["mileage"] = "integer"
        world.sandbox.counters.reset()
        drift = source_drift(mappings, order, await s.outreach.source_types())
        plan = await make_plan(s.zendesk, wanted_objects(mappings, order), drift)
        changes = await schema.apply_plan(s.zendesk, plan)

    line = next(f for o in plan.objects for f in o.fields if f.key == "top_speed_mph")
    assert line.action == "differs" and line.actual_type == "text" and "never retypes" in line.reason
    assert [(d.mapping, d.attribute, d.type) for d in plan.source if d.attribute == "mileage"] == [
        ("vehicles", "mileage", "integer")]
    assert not plan.has_changes
    left = [c for c in changes if c.action == "left_alone"]
    assert [(c.field, "never retypes" in c.reason) for c in left] == [("top_speed_mph", True)]
    assert writes(world) == 0
    assert world.sandbox.zendesk.field("vehicle", "top_speed_mph")["type"] == "text"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [({"object_limit": 1}, "object_limit: Zendesk has 0 of 1"),
     ({"record_limit": 0}, "record_limit: Zendesk already holds 0 of 0 custom object records")],
    ids=["objects", "records"],
)
async def test_a_limit_exceeded_stops_before_any_change(world: SandboxWorld, limits, expected) -> None:
    zd = world.sandbox.zendesk
    for name, value in limits.items():
        setattr(zd, name, value)
    mappings, order = repo_mappings(world)

    async with services(world) as s:
        with pytest.raises(LimitExceeded) as info:
            await schema.ensure_objects(s.zendesk, mappings, order)

    assert expected in str(info.value) and "'vehicles'" in str(info.value)
    assert zd.objects == {}
    assert writes(world) == 0


async def test_the_field_limit_of_an_existing_object(world: SandboxWorld) -> None:
    zd = world.sandbox.zendesk
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    zd.add_field("vehicle", {"key": "vehicle_name", "type": "text", "title": "Vehicle name"})
    zd.field_limit = 3
    mappings, order = repo_mappings(world)

    async with services(world) as s:
        with pytest.raises(LimitExceeded) as info:
            await schema.ensure_objects(s.zendesk, mappings, order)

    (problem,) = info.value.problems
    assert (problem.limit, problem.count, problem.allowed, problem.adding) == ("field_limit", 1, 3, 6)
    assert set(zd.objects) == {"vehicle"} and len(zd.fields["vehicle"]) == 1


async def test_validate_remote_lists_every_mismatch_with_file_and_key_path(world: SandboxWorld, tmp_path) -> None:
    mappings, order = repo_mappings(world)
    bad = mappings["vehicles"].model_copy(deep=True)
    bad.fields["color"] = bad.fields["color"].model_copy(update={"from_": "colour"})
    bad.relationships["driver"] = bad.relationships["driver"].model_copy(update={"from_": "chauffeur"})
    mappings = {**mappings, "vehicles": bad}
    world.sandbox.outreach.types["vehicles"].attributes  # noqa: B018 - the seeded type has updatedAt
    async with services(world) as s:
        await schema.ensure_objects(s.zendesk, {"vehicle_brands": mappings["vehicle_brands"]}, ["vehicle_brands"])
        world.sandbox.zendesk.field("vehicle_brand", "founded")["type"] = "text"
        problems = await remote_problems(s.outreach, s.zendesk, mappings,
                                         {"vehicles": "mappings/vehicles.yaml"}, order)

    found = {(p.file, p.path) for p in problems}
    assert ("mappings/vehicles.yaml", "fields.color.from") in found
    assert ("mappings/vehicles.yaml", "relationships.driver.from") in found
    assert ("mappings/vehicles.yaml", "target.object") in found
    assert ("vehicle_brands.yaml", "fields.founded") in found
    color = next(p for p in problems if p.path == "fields.color.from")
    assert "no attribute 'colour'" in color.message and "color" in color.message


async def test_the_lookup_limit_of_a_small_plan(world: SandboxWorld) -> None:
    zd = world.sandbox.zendesk
    zd.object_limit, zd.lookup_limit = 5, 5  # Suite Growth: 5 objects, 5 lookups per object
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    for n in range(4):
        zd.add_field("vehicle", {"key": f"other_{n}", "type": "lookup", "title": f"Other {n}",
                                 "relationship_target_type": "zen:user"})
    mappings, order = repo_mappings(world)

    async with services(world) as s:
        with pytest.raises(LimitExceeded) as info:
            await schema.ensure_objects(s.zendesk, mappings, order)

    (problem,) = info.value.problems
    assert str(problem).startswith("lookup_field_limit: Zendesk has 4 of 5 on object 'vehicle'; mapping(s) "
                                   "'vehicles' would add 2")
    assert set(zd.objects) == {"vehicle"} and len(zd.fields["vehicle"]) == 4


async def test_an_unknown_type_is_named_with_the_custom_objects_the_schema_lists(world: SandboxWorld) -> None:
    from bridge.schema.remote import MissingType, locate_type

    async with services(world) as s:
        types = await s.outreach.source_types()
        assert (await locate_type(s.outreach, types, "prospects", custom_object=False)).name == "prospect"
        with pytest.raises(MissingType) as info:
            await locate_type(s.outreach, types, "ghosts", custom_object=True)

    assert "Outreach has no custom object 'ghosts' (HTTP 404)" in str(info.value)
    assert "vehicle_brands, vehicles" in str(info.value)
