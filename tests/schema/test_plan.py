"""Plans, limits and apply order, as pure functions over mappings and Zendesk field lists."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.mapping.model import Mapping
from bridge.outreach.schema import parse_schema
from bridge.schema.apply import dependency_order
from bridge.schema.desired import wanted_object, wanted_objects
from bridge.schema.limits import LOOKUPS_SMALL, Limits, limit_problems
from bridge.schema.plan import Plan, compare, source_drift
from bridge.schema.report import plan_table
from bridge.zendesk.client import Limit


def mapping(name: str, obj: str, fields: dict[str, Any], relationships: dict[str, Any] | None = None,
            source_type: str | None = None) -> Mapping:
    return Mapping.model_validate({
        "name": name, "source": {"type": source_type or name}, "target": {"object": obj, "name": "{id}"},
        "fields": fields, "relationships": relationships or {},
    })


BRANDS = mapping("brands", "brand", {"brand_name": "name"})
CARS = mapping(
    "cars", "car",
    {"speed": {"type": "integer"}, "fuel": {"type": "dropdown", "options": ["petrol", "electric"]}, "notes": "notes"},
    {"driver": {"from": "main_driver", "target": "zen:user", "match": "email"},
     "brand": {"from": "brand", "target": "mapping:brands"}},
)
MAPPINGS = {"brands": BRANDS, "cars": CARS}


def zfield(key: str, type: str, **extra: Any) -> dict[str, Any]:
    return {"id": 1, "key": key, "type": type, "title": key, **extra}


def test_wanted_fields_carry_lookup_targets_options_and_key_paths() -> None:
    car = wanted_object(CARS, MAPPINGS)

    bodies = {f.key: f.body() for f in car.fields}
    assert bodies["brand"] == {"key": "brand", "title": "Brand", "type": "lookup",
                               "relationship_target_type": "zen:custom_object:brand"}
    assert bodies["driver"]["relationship_target_type"] == "zen:user"
    assert bodies["fuel"]["custom_field_options"] == [{"name": "petrol", "value": "petrol"},
                                                      {"name": "electric", "value": "electric"}]
    assert {f.key: f.path for f in car.fields}["brand"] == "relationships.brand"
    assert car.depends_on == ("brand",)
    assert (car.title, car.title_pluralized) == ("Car", "Cars")


def test_a_missing_object_plans_every_field() -> None:
    plan = compare(wanted_object(CARS, MAPPINGS), None)

    assert not plan.exists
    assert [f.action for f in plan.fields] == ["create"] * 5


def test_existing_fields_that_match_are_ok_and_differences_are_left_alone_with_a_reason() -> None:
    fields = [
        zfield("speed", "text"),  # retyped by hand
        zfield("fuel", "dropdown", custom_field_options=[{"name": "petrol", "value": "petrol"}]),
        zfield("notes", "textarea"),  # compatible with text
        zfield("driver", "lookup", relationship_target_type="zen:organization"),
        zfield("legacy", "text"),
    ]

    plan = compare(wanted_object(CARS, MAPPINGS), fields)

    by_key = {f.key: f for f in plan.fields}
    assert by_key["speed"].action == "differs" and not by_key["speed"].compatible
    assert "type text" in by_key["speed"].reason and "integer" in by_key["speed"].reason
    assert by_key["fuel"].action == "differs" and "lack electric" in by_key["fuel"].reason
    assert by_key["notes"].action == "differs" and by_key["notes"].compatible
    assert by_key["driver"].action == "differs" and "zen:organization" in by_key["driver"].reason
    assert by_key["brand"].action == "create"
    assert by_key["legacy"].action == "unused" and "never deletes" in by_key["legacy"].reason
    assert plan.lookups_in_zendesk == 1


def test_a_dropdown_without_options_is_blocked_not_created() -> None:
    m = mapping("x", "x", {"kind": {"type": "dropdown"}})

    (line,) = compare(wanted_object(m, {"x": m}), []).fields

    assert line.action == "blocked" and "fields.kind.options" in line.reason


def test_lookup_targets_come_first() -> None:
    plans = [compare(o, None) for o in wanted_objects(MAPPINGS, ["cars", "brands"])]

    assert [p.wanted.key for p in dependency_order(plans)] == ["brand", "car"]


def limits(objects: tuple[int, int] = (0, 30), records: tuple[int, int] = (0, 100),
           fields: dict[str, Limit] | None = None, lookups: int = 10) -> Limits:
    return Limits(Limit(*objects), Limit(*records), fields or {}, lookups)


def test_limits_name_the_limit_the_count_and_the_mapping() -> None:
    plan = Plan(tuple(compare(o, None) for o in wanted_objects(MAPPINGS, ["brands", "cars"])))

    assert limit_problems(plan, limits()) == []
    (problem,) = limit_problems(plan, limits(objects=(2, 3)))
    assert problem.limit == "object_limit" and (problem.count, problem.allowed, problem.adding) == (2, 3, 2)
    assert "object_limit" in str(problem) and "2 of 3" in str(problem) and "'cars'" in str(problem)
    (full,) = limit_problems(plan, limits(records=(100, 100)))
    assert full.limit == "record_limit" and "100 of 100" in str(full)


def test_field_and_lookup_limits_count_what_zendesk_already_has() -> None:
    existing = [zfield(f"l{i}", "lookup", relationship_target_type="zen:user") for i in range(4)]
    plan = Plan((compare(wanted_object(CARS, MAPPINGS), existing),))

    problems = limit_problems(plan, limits(fields={"car": Limit(97, 100)}, lookups=LOOKUPS_SMALL))

    assert {p.limit for p in problems} == {"field_limit", "lookup_field_limit"}
    lookup = next(p for p in problems if p.limit == "lookup_field_limit")
    assert (lookup.count, lookup.allowed, lookup.adding, lookup.object) == (4, 5, 2, "car")


SCHEMA = {"definitions": {"cars": {
    "definitions": {n: {"type": "string", "filterable": True, "sortable": True}
                    for n in ("id", "updatedAt", "notes", "color", "seatCount")},
    "links": [{"rel": "instances", "href": "/api/v2/customObjects/cars"}],
}}}


def test_new_outreach_attributes_show_as_drift_with_what_to_add() -> None:
    drift = source_drift({"cars": CARS}, ["cars"], parse_schema(SCHEMA))

    assert [(d.attribute, d.key) for d in drift] == [("color", "color"), ("seatCount", "seat_count")]
    assert "fields.seat_count: {from: seatCount, type: text}" in drift[1].note
    missing = source_drift({"cars": CARS}, ["cars"], {})
    assert "only listed for an authenticated caller" in missing[0].note


def test_the_table_shows_every_line_and_what_to_do() -> None:
    plan = Plan((compare(wanted_object(CARS, MAPPINGS), [zfield("speed", "text")]),),
                tuple(source_drift({"cars": CARS}, ["cars"], parse_schema(SCHEMA))))

    text = plan_table(plan)

    assert "MAPPING" in text.splitlines()[0]
    assert "lookup → zen:custom_object:brand" in text
    assert "↳ Zendesk has type text" in text
    assert "unmapped" in text
    assert text.splitlines()[-1].startswith("to create: 0 object(s), 4 field(s)")


@pytest.mark.parametrize(("title", "plural"), [("Car", "Cars"), ("Vehicle brand", "Vehicle brands"),
                                               ("Company", "Companies"), ("Box", "Boxes")])
def test_titles_are_pluralized(title: str, plural: str) -> None:
    from bridge.schema.desired import pluralize

    assert pluralize(title) == plural
