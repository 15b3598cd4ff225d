"""Reading Outreach's JSON:API bodies: one malformed resource costs only itself."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bridge.outreach import wire
from bridge.outreach.models import OutreachId, RelatedRef


def resource(id: Any, **attributes: Any) -> dict[str, Any]:
    return {"type": "vehicles", "id": id, "attributes": {"updatedAt": "2024-07-25T13:18:30.000Z", **attributes},
            "relationships": {"brand": {"data": {"type": "vehicle_brands", "id": 3}}}}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (resource(2, updatedAt=1721913510000), "updatedAt must be a timestamp string, got int"),
        (resource(2, updatedAt="2024-13-45T25:61:00.000Z"), "is not an ISO 8601 timestamp"),
        ({"type": "vehicles", "id": 2, "attributes": ["not", "an", "object"]}, "attributes"),
        ({**resource(2), "relationships": {"brand": {"data": "3"}}}, "relationships.brand"),
    ],
)
def test_a_malformed_resource_becomes_a_record_with_its_problem(bad: dict[str, Any], problem: str) -> None:
    page = wire.to_page({"data": [resource(1), bad, resource(3)], "links": {}}, "u", None)
    assert [r.id for r in page.records] == ["1", "2", "3"]
    good, poisoned = page.records[0], page.records[1]
    assert good.problem is None and good.updated_at is not None
    assert poisoned.problem is not None and problem in poisoned.problem
    assert poisoned.updated_at is None  # it moves no watermark
    assert poisoned.attributes == (bad["attributes"] if isinstance(bad["attributes"], dict) else {})


def test_a_resource_without_type_or_id_is_left_out_and_logged() -> None:
    with capture_logs() as logs:
        page = wire.to_page({"data": [resource(1), {"type": "vehicles", "id": True}, "junk", resource(4)]}, "u", None)
    assert [r.id for r in page.records] == ["1", "4"]
    assert [e["event"] for e in logs] == ["record_unreadable", "record_unreadable"]


def test_a_malformed_included_resource_is_left_out() -> None:
    body = {"data": [resource(1)], "included": [
        {"type": "prospect", "id": 5, "attributes": {"emails": ["a@example.com"], "updatedAt": 7}},
        {"type": "prospect", "id": 6, "attributes": "junk"},
        {"id": 7, "attributes": {}},
    ]}
    page = wire.to_page(body, "u", None)
    assert page.included == {("prospect", "5"): {"emails": ["a@example.com"], "updatedAt": 7}}


def test_a_single_malformed_resource_carries_its_problem() -> None:
    record = wire.to_single({"data": resource(9, updatedAt=False)})
    assert record.id == "9" and record.problem is not None and "updatedAt" in record.problem


@pytest.mark.parametrize("body", [{"data": "x"}, {"data": {"type": "vehicles"}}, {"nodata": []}, {"data": [1], "links": 3}])
def test_a_body_that_is_not_json_api_still_raises(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        wire.to_single(body) if isinstance(body.get("data"), str | dict) else wire.to_page(body, "u", None)


# ---- the fast path reads every resource as pydantic does --------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
junk = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=2) | st.lists(st.integers(), max_size=1)
ids = st.integers() | st.text(max_size=3) | junk
kinds = st.sampled_from(["vehicles", "prospect", ""]) | junk
timestamps = st.sampled_from(
    ["2024-07-25T13:18:30.000Z", "2024-07-25T13:18:30.736332Z", "2024-07-25T15:18:30+02:00",
     "2024-07-25T13:18:30", "2024-13-45T25:61:00.000Z", "", "yesterday"]
) | junk  # fmt: skip
attributes = st.fixed_dictionaries({}, optional={"updatedAt": timestamps, "speed": json_values, "name": json_values})
refs = st.fixed_dictionaries({}, optional={"type": kinds, "id": ids, "links": json_values})
relationship = st.fixed_dictionaries(
    {}, optional={"data": st.none() | refs | st.lists(refs | junk, max_size=2) | junk, "links": json_values}
) | junk
resources = st.fixed_dictionaries(
    {},
    optional={
        "type": kinds, "id": ids, "attributes": attributes | junk,
        "relationships": st.dictionaries(st.sampled_from(["brand", "main_driver", "tags"]), relationship, max_size=3) | junk,
        "links": json_values,
    },
) | junk  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(resources, max_size=4))
def test_the_fast_path_reads_every_resource_as_pydantic_does(raw: list[Any]) -> None:
    """Malformed or not, each resource becomes the same record (or the same problem, or is
    left out) whether or not the fast path reads it first."""
    fast = wire.to_page({"data": raw}, "u", None).records
    with patch.object(wire, "_fast_record", lambda resource: None):
        slow = wire.to_page({"data": raw}, "u", None).records
    assert fast == slow


def test_a_well_formed_resource_is_read_by_the_fast_path() -> None:
    """The shape Outreach sends never reaches pydantic (that is where the time went)."""
    raw = {**resource(1, speed="88mph"), "relationships": {
        "brand": {"data": {"type": "vehicle_brands", "id": 3}}, "owner": {"data": None},
        "tags": {"data": [{"type": "tag", "id": "x"}]}, "account": {"links": {"related": "u"}},
    }}  # fmt: skip
    with patch.object(wire.WireResource, "model_validate", side_effect=AssertionError("slow path")):
        (record,) = wire.to_page({"data": [raw]}, "u", None).records
    assert record.relationships == {"brand": RelatedRef("vehicle_brands", OutreachId("3")), "owner": None}
    assert record.attributes is raw["attributes"] and record.problem is None
