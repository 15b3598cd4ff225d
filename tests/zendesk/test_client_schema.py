"""ZendeskClient on the wire for schema work: listing objects and reading the three limits."""

from __future__ import annotations

import pytest

from bridge.errors import RejectedError
from bridge.zendesk.client import Limit

from .conftest import BASE, sent

CO = f"{BASE}/api/v2/custom_objects"


async def test_list_objects(client, mock) -> None:
    mock.get(CO, payload={"custom_objects": [{"key": "car", "title": "Car"}, {"key": "brand"}]})

    assert [o["key"] for o in await client.list_objects()] == ["car", "brand"]


async def test_the_three_limits_are_read_from_their_endpoints(client, mock) -> None:
    mock.get(f"{CO}/limits/object_limit", payload={"count": 2, "limit": 5})
    mock.get(f"{CO}/limits/record_limit", payload={"count": 10, "limit": 50_000_000})
    mock.get(f"{CO}/car/limits/field_limit", payload={"count": 98, "limit": 100})

    assert await client.object_limit() == Limit(2, 5)
    assert await client.record_limit() == Limit(10, 50_000_000)
    field_limit = await client.field_limit("car")
    assert field_limit == Limit(98, 100) and field_limit.left == 2
    (call,) = sent(mock, "GET", f"{CO}/car/limits/field_limit")
    assert call["headers"]["Content-Type"] == "application/json"


async def test_a_limit_answer_of_the_wrong_shape_is_rejected_naming_the_call(client, mock) -> None:
    mock.get(f"{CO}/limits/object_limit", payload={"count": "many"})

    with pytest.raises(RejectedError, match="object_limit.*LimitAnswer"):
        await client.object_limit()
