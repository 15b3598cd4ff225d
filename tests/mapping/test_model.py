"""The mapping file models: shorthand, defaults and single-key validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bridge.mapping.model import (
    FieldSpec,
    Mapping,
    RelationshipSpec,
    Schedule,
    SourceSpec,
    TargetSpec,
    TransformSpec,
)


def mapping(**overrides: Any) -> Mapping:
    data: dict[str, Any] = {
        "name": "vehicles",
        "source": {"type": "vehicles"},
        "target": {"object": "vehicle", "name": "{vehicle_name}"},
        "fields": {"vehicle_name": "vehicle_name"},
    }
    data.update(overrides)
    return Mapping.model_validate(data)


def test_defaults() -> None:
    m = mapping()
    assert m.schedule.seconds() == 300
    assert m.on_delete == "keep"
    assert m.relationships == {}
    assert m.source.custom_object is True
    assert m.target.external_id == "outreach:{type}:{id}"


def test_field_shorthand_and_from_defaults_to_key() -> None:
    m = mapping(fields={"a": "attr_a", "color": {"type": "text"}, "empty": None})
    assert m.fields["a"].from_ == "attr_a"
    assert m.fields["a"].type == "text"
    assert m.fields["color"].from_ == "color"
    assert m.fields["empty"].from_ == "empty"


def test_field_dotted_path() -> None:
    assert FieldSpec.model_validate({"from": "address.city"}).path == ("address", "city")
    with pytest.raises(ValidationError):
        FieldSpec.model_validate({"from": "address..city"})


def test_transform_forms() -> None:
    spec = FieldSpec.model_validate({"transform": ["digits", {"truncate": 3}, {"map": {"a": "b"}, "default": "z"}]})
    assert [(t.name, t.arg, t.options) for t in spec.transform] == [
        ("digits", None, {}), ("truncate", 3, {}), ("map", {"a": "b"}, {"default": "z"}),
    ]
    assert FieldSpec.model_validate({"transform": "strip"}).transform[0].name == "strip"
    assert TransformSpec(name="lower").build().name == "lower"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"type": "integr"}, "Input should be"),
        ({"typo": 1}, "Extra inputs"),
        ({"type": "text", "options": ["a"]}, "only applies to dropdown"),
        ({"type": "dropdown", "options": ["a", "a"]}, "distinct"),
        ({"type": "dropdown", "options": []}, "distinct"),
        ({"type": "regexp"}, "needs 'pattern'"),
        ({"type": "regexp", "pattern": "("}, "not a valid regular expression"),
        ({"type": "text", "pattern": "x"}, "only applies to regexp"),
        ({"transform": ["digitz"]}, "unknown transform 'digitz'"),
        ({"transform": [{"map": {"a": 1}, "join": ","}]}, "one-key table"),
    ],
)
def test_field_problems(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FieldSpec.model_validate(data)
    assert fragment in str(caught.value)


def test_dropdown_options_may_be_numbers_in_yaml() -> None:
    assert FieldSpec.model_validate({"type": "dropdown", "options": [1, "b"]}).options == ["1", "b"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"from": "x", "target": "zen:user"}, "'match' is required"),
        ({"from": "x", "target": "mapping:b", "match": "email"}, "mapping targets use the id map"),
        ({"from": "x", "target": "zen:organization", "match": "email"}, "organizations have no email"),
        ({"from": "x", "target": "zen:ticket", "match": "name"}, "unknown target"),
        ({"from": "x", "target": "zen:user", "match": "phone"}, "Input should be"),
        ({"target": "zen:user", "match": "email"}, "Field required"),
    ],
)
def test_relationship_problems(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RelationshipSpec.model_validate(data)
    assert fragment in str(caught.value)


def test_relationship_targets() -> None:
    assert RelationshipSpec.model_validate({"from": "b", "target": "mapping:brands"}).mapping_target == "brands"
    assert RelationshipSpec.model_validate({"from": "d", "target": "zen:user", "match": "email"}).mapping_target is None


def test_depends_on() -> None:
    m = mapping(relationships={
        "brand": {"from": "brand", "target": "mapping:vehicle_brands"},
        "maker": {"from": "maker", "target": "mapping:makers"},
        "driver": {"from": "main_driver", "target": "zen:user", "match": "email"},
    })
    assert m.depends_on() == {"vehicle_brands", "makers"}


def test_filter_keys_are_normalised() -> None:
    source = SourceSpec.model_validate({"type": "vehicles", "filter": {
        "main_driver.id": 123, "[brand][name]": "DMC", "filter[age]": "0..10", "color": ["red", "blue"], "on": True,
    }})
    assert source.query_filters() == {
        "filter[main_driver][id]": "123", "filter[brand][name]": "DMC", "filter[age]": "0..10",
        "filter[color]": "red,blue", "filter[on]": "true",
    }


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ({"a b": 1}, "not valid"),
        ({"filter[x": 1}, "not valid"),
        ({"updatedAt": "2024-01-01..inf"}, "updatedAt"),
        ({"x": 1, "filter[x]": 2}, "given twice"),
        ({"x": {"nested": 1}}, "valid"),
    ],
)
def test_filter_problems(filters: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SourceSpec.model_validate({"type": "vehicles", "filter": filters})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"object": "my-object", "name": "{a}"}, "not a valid Zendesk key"),
        ({"object": "123", "name": "{a}"}, "not only digits"),
        ({"object": "o", "name": "{a!r}"}, "bad placeholder"),
        ({"object": "o", "name": "{a", }, "unmatched"),
        ({"object": "o", "name": "{a}", "external_id": "x:{vehicle_name}:{id}"}, "only {type} and {id}"),
        ({"object": "o", "name": "{a}", "external_id": "outreach:{type}"}, "must contain {id}"),
    ],
)
def test_target_problems(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TargetSpec.model_validate(data)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("every", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (" 2m ", 120)])
def test_every(every: str, seconds: int) -> None:
    assert Schedule(every=every).seconds() == seconds


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 9-17 * * mon-fri", "0,30 * 1 jan,jul 0", "15 3 * * 7", "1-59/2 * * * *"])
def test_cron_accepted(cron: str) -> None:
    schedule = Schedule(cron=cron)
    assert schedule.cron == cron
    assert schedule.seconds() is None


@pytest.mark.parametrize(
    "data",
    [
        {"every": "5x"}, {"every": "0m"}, {"every": "m"}, {},
        {"every": "5m", "cron": "* * * * *"},
        {"cron": "* * * *"}, {"cron": "60 * * * *"}, {"cron": "* 24 * * *"}, {"cron": "* * 0 * *"},
        {"cron": "* * * 13 *"}, {"cron": "* * * * 8"}, {"cron": "*/0 * * * *"}, {"cron": "5-1 * * * *"},
        {"cron": "* * * * funday"}, {"cron": "1,,2 * * * *"},
    ],
)
def test_schedule_problems(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Schedule.model_validate(data)


def test_consistency_problems() -> None:
    m = mapping(
        fields={"vehicle_name": "vehicle_name", "owner": {"type": "lookup"}, "brand": "brand", "12": "x",
                "bad-key": "y"},
        relationships={"brand": {"from": "brand", "target": "mapping:b"}},
    )
    found = dict(m.consistency_problems())
    assert set(found) == {"fields.owner.type", "relationships.brand", "fields.12", "fields.bad-key"}
    assert "needs a relationships.owner entry" in found["fields.owner.type"]


def test_lookup_field_with_relationship_is_consistent() -> None:
    m = mapping(fields={"vehicle_name": "vehicle_name", "brand": {"type": "lookup"}},
                relationships={"brand": {"from": "brand", "target": "mapping:b"}})
    assert m.consistency_problems() == []


def test_too_many_lookups() -> None:
    rels = {f"r{i}": {"from": f"r{i}", "target": "zen:user", "match": "email"} for i in range(11)}
    assert [p for p, _ in mapping(relationships=rels).consistency_problems()] == ["relationships"]
