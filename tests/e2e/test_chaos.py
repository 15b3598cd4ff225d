"""The chaos run (bench/chaos.py) at a small scale: `bridge backfill` in its own process
against the sandbox in its own process, both APIs answering every 5th request with a 429 and
every 9th with a 503. It must exit 0, leave the exact end state and send nothing early."""

from __future__ import annotations

import pytest

from bench.chaos import end_state_problems, run_chaos

pytestmark = pytest.mark.timeout(120)


def test_a_backfill_under_an_error_storm_on_both_apis_ends_exact(pg_server_dsn: str) -> None:
    result = run_chaos(pg_server_dsn, vehicles=200, brands=8, prospects=25, retry_after=0.2, page_size=20, timeout=90)
    assert result.exit_code == 0, result.summary()
    assert result.problems == [], result.summary()
    assert result.early == {"outreach": 0, "zendesk": 0}, result.summary()
    for api in ("outreach", "zendesk"):  # the storm did blow on both
        assert result.rate_limited[api] > 0 and result.server_errors[api] > 0, result.summary()


def _world() -> dict:
    vehicle = {"id": 1, "attributes": {"vehicle_name": "Panda 1", "speed": "90mph", "registeredAt": "2020-01-02T03:04:05Z",
                                       "color": " Red", "electric": False},
               "relationships": {"brand": {"data": {"type": "vehicle_brands", "id": 7}},
                                 "main_driver": {"data": {"type": "prospect", "id": 3}}}}  # fmt: skip
    return {
        "outreach": {
            "vehicles": [vehicle, {**vehicle, "id": 2, "relationships": {**vehicle["relationships"],
                                   "main_driver": {"data": {"type": "prospect", "id": 4}}}}],  # fmt: skip
            "vehicle_brands": [{"id": 7, "attributes": {"name": "Fiat", "country": "Italy", "founded": 1899}}],
            "prospect": [{"id": 3, "attributes": {"emails": ["a@x.com"]}}, {"id": 4, "attributes": {"emails": ["b@x.com"]}}],
        },
        "zendesk": {
            "vehicle_brand": [{"id": "B7", "external_id": "outreach:vehicle_brands:7", "name": "Fiat",
                               "custom_object_fields": {"brand_name": "Fiat", "country": "Italy", "founded": 1899}}],
            "vehicle": [{"id": f"V{i}", "external_id": f"outreach:vehicles:{i}", "name": "Panda 1",
                         "custom_object_fields": {"vehicle_name": "Panda 1", "top_speed_mph": 90, "registered_on": "2020-01-02",
                                                  "color": "red", "electric": False, "brand": "B7",
                                                  "driver": "U3" if i == 1 else None}} for i in (1, 2)],
        },  # fmt: skip
        "users": [{"id": "U3", "email": "a@x.com"}],
    }


def test_the_end_state_check_names_every_difference() -> None:
    parked = [{"mapping": "vehicles", "source_id": "2", "field": "driver"}]
    assert end_state_problems(_world(), parked) == []
    world = _world()
    world["zendesk"]["vehicle"][0]["custom_object_fields"]["color"] = "blue"
    world["zendesk"]["vehicle"][1]["custom_object_fields"]["brand"] = None
    world["zendesk"]["vehicle_brand"].append(dict(world["zendesk"]["vehicle_brand"][0]))
    problems = end_state_problems(world, [])
    assert len(problems) == 4, problems
    assert "outreach:vehicle_brands:7 is in Zendesk 2 times" in problems
    assert any("vehicles:1" in p and "color" in p for p in problems)
    assert any("vehicles:2" in p and "brand" in p for p in problems)
    assert "vehicle 2: link driver should be parked but is not" in problems
    world = _world()
    del world["zendesk"]["vehicle"][1]
    assert end_state_problems(world, parked) == ["vehicle outreach:vehicles:2 is missing from Zendesk"]
