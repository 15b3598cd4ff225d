"""Fault injection and request counting, over real HTTP and through the control surface."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest

from bridge.sandbox.counters import Counters

from .conftest import World, wait_for

CO = "/api/v2/custom_objects"
VEHICLES = "/api/v2/customObjects/vehicles"


async def test_status_fault_with_retry_after_is_consumed(world: World) -> None:
    world.sandbox.faults.add("outreach", "status", status=429, retry_after=2, path_contains="vehicles", times=2)
    statuses = []
    for _ in range(3):
        status, _, headers = await world.o_get(VEHICLES)
        statuses.append((status, headers.get("Retry-After")))
    assert statuses == [(429, "2"), (429, "2"), (200, None)]
    assert (await world.o_get("/api/v2/prospects"))[0] == 200


async def test_status_fault_matches_method_and_api(world: World) -> None:
    world.sandbox.faults.add("zendesk", "status", status=503, method="POST", times=-1)
    assert (await world.z("GET", CO))[0] == 200
    assert (await world.z("POST", CO, {"custom_object": {}}))[0] == 503
    assert (await world.z("POST", CO, {"custom_object": {}}))[0] == 503
    assert (await world.o_get(VEHICLES))[0] == 200
    world.sandbox.faults.clear()
    assert (await world.z("POST", CO, {"custom_object": {"key": "k", "title": "K", "title_pluralized": "Ks"}}))[0] == 201


async def test_drop_closes_the_connection(world: World) -> None:
    # POST: aiohttp's client silently resends an idempotent request once after a disconnect
    world.sandbox.faults.add("zendesk", "drop", method="POST")
    body = {"custom_object": {"key": "k", "title": "K", "title_pluralized": "Ks"}}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await world.z("POST", CO, body)
    assert world.sandbox.zendesk.objects == {}
    assert (await world.z("POST", CO, body))[0] == 201
    assert world.sandbox.counters.count("zendesk", method="POST", status=0) == 1


async def test_malformed_body_is_truncated_json(world: World) -> None:
    world.sandbox.faults.add("zendesk", "malformed", path_contains="job_statuses")
    async with world.http.get(world.sandbox.zendesk_url + "/api/v2/job_statuses/x", headers=world.z_auth) as r:
        assert r.status == 200
        with pytest.raises(ValueError):
            await r.json()


async def test_timeout_and_latency_delay_responses(world: World) -> None:
    world.sandbox.faults.add("outreach", "timeout", delay=5.0)
    with pytest.raises(asyncio.TimeoutError):
        await world.o_get(VEHICLES, timeout=aiohttp.ClientTimeout(total=0.2))
    world.sandbox.faults.add("zendesk", "latency", delay=0.15)
    started = time.monotonic()
    assert (await world.z("GET", CO))[0] == 200
    assert time.monotonic() - started >= 0.15
    world.sandbox.faults.set_latency("zendesk", 0.1)
    started = time.monotonic()
    await world.z("GET", CO)
    await world.z("GET", CO)
    assert time.monotonic() - started >= 0.2


async def test_counters_and_request_log(world: World) -> None:
    counters = world.sandbox.counters
    counters.reset()
    world.sandbox.faults.add("outreach", "status", status=429, retry_after=1)
    await world.o_get(VEHICLES)
    await world.o_get(VEHICLES)
    await world.o_get(VEHICLES + "/1")
    await world.z("GET", CO)
    assert counters.total("outreach") == 3 and counters.total("zendesk") == 1
    assert counters.count("outreach", method="GET", route="list_custom") == 2
    assert counters.count("outreach", route="list_custom", status=429) == 1
    assert counters.count("outreach", route="show_custom", status=200) == 1
    first, second = counters.entries("outreach")[:2]
    assert first.retry_after == 1.0 and first.status == 429 and second.at >= first.at and second.retry_after is None
    assert first.path.startswith(VEHICLES)


async def test_control_surface_faults_counters_and_touch(world: World) -> None:
    base = world.sandbox.outreach_url
    async with world.http.post(f"{base}/_sandbox/faults", json={"api": "zendesk", "kind": "status", "status": 502}) as r:
        assert r.status == 201
    assert (await world.z("GET", CO))[0] == 502
    async with world.http.get(f"{world.sandbox.zendesk_url}/_sandbox/counters") as r:
        snap = await r.json()
    assert snap["totals"]["zendesk"] == 1 and snap["by_status"]["zendesk"]["502"] == 1 and snap["log"][0]["status"] == 502
    before = world.sandbox.outreach.get("vehicles", 3)["attributes"]["updatedAt"]
    async with world.http.post(f"{base}/_sandbox/outreach/touch", json={"type": "vehicles", "ids": [3]}) as r:
        assert r.status == 200
    assert world.sandbox.outreach.get("vehicles", 3)["attributes"]["updatedAt"] > before
    async with world.http.post(f"{base}/_sandbox/faults", json={"api": "nope", "kind": "status"}) as r:
        assert r.status == 400


async def test_pattern_rules_fire_on_every_nth_request_each_keeping_its_own_count(world: World) -> None:
    world.sandbox.faults.add("outreach", "status", status=429, retry_after=0.01, every=5)
    world.sandbox.faults.add("outreach", "status", status=503, every=9)
    statuses = [(await world.o_get(VEHICLES))[0] for _ in range(45)]
    expected = [429 if n % 5 == 0 else 503 if n % 9 == 0 else 200 for n in range(1, 46)]
    assert statuses == expected
    assert statuses.count(503) == 4  # the 45th matched both: the rule added first won
    assert (await world.z("GET", CO))[0] == 200  # a rule is for its own API only


async def test_pattern_offset_times_and_path_filter(world: World) -> None:
    world.sandbox.faults.add("zendesk", "status", status=502, every=3, offset=1, times=2, path_contains="custom_objects")
    statuses = [(await world.z("GET", CO))[0] for _ in range(8)]
    assert statuses == [502, 200, 200, 502, 200, 200, 200, 200]
    assert (await world.o_get(VEHICLES))[0] == 200


async def test_control_surface_takes_patterns_and_refuses_bad_values(world: World) -> None:
    url = f"{world.sandbox.zendesk_url}/_sandbox/faults"
    rule = {"api": "outreach", "kind": "status", "status": 429, "retry_after": 0.25, "every": 2}
    async with world.http.post(url, json=rule) as r:
        assert r.status == 201
    statuses, headers = [], []
    for _ in range(4):
        status, _, h = await world.o_get(VEHICLES)
        statuses.append(status)
        headers.append(h.get("Retry-After"))
    assert statuses == [200, 429, 200, 429] and headers[1] == "0.25"
    for bad in ({"every": "often"}, {"every": -1}, {"retry_after": -2}, {"evrey": 3}, {"times": True}):
        async with world.http.post(url, json={"api": "zendesk", "kind": "status", **bad}) as r:
            assert r.status == 400, bad
            assert (await r.json())["error"]
    async with world.http.delete(url) as r:
        assert r.status == 200
    assert [(await world.o_get(VEHICLES))[0] for _ in range(2)] == [200, 200]


def test_early_requests_fall_inside_a_retry_after_window_of_their_api() -> None:
    counters = Counters()
    counters.record("zendesk", "GET", "r", "/a", 429, 1.0, arrived=10.0, connection="c1")
    counters.log[-1] = replace(counters.log[-1], at=10.0)
    cases = [
        ("zendesk", 10.001, "c1", True),  # the 429's own connection: sent after reading the 429
        ("zendesk", 10.01, "c2", False),  # another connection, in flight when the 429 went out
        ("zendesk", 10.5, "c2", True),  # another connection, well inside the window
        ("zendesk", 11.0, "c1", False),  # the window has ended
        ("outreach", 10.5, "c3", False),  # another API's window does not apply
        ("zendesk", 9.9, "c1", False),  # before the 429 was sent
    ]
    for api, arrived, connection, _ in cases:
        counters.record(api, "GET", "r", "/b", 200, None, arrived=arrived, connection=connection)
    early = {(e.request.api, e.request.arrived, e.request.connection) for e in counters.early()}
    assert early == {(api, arrived, conn) for api, arrived, conn, is_early in cases if is_early}
    assert counters.early_requests("zendesk") == 2 and counters.early_requests("outreach") == 0
    assert counters.early_requests(grace=0.0) == 3
    snapshot = counters.snapshot()
    assert snapshot["early_requests"] == {"zendesk": 2, "outreach": 0}
    assert [(e["same_connection"], e["arrived_after_429"]) for e in snapshot["early"]] == [(True, 0.001), (False, 0.5)]


async def test_early_requests_over_http(world: World) -> None:
    counters = world.sandbox.counters
    counters.reset()
    world.sandbox.faults.add("outreach", "status", status=429, retry_after=0.3)
    assert (await world.o_get(VEHICLES))[0] == 429
    assert (await world.o_get(VEHICLES))[0] == 200  # at once: early
    assert counters.early_requests("outreach") == 1
    limited = counters.entries("outreach")[0]
    deadline = limited.at + 0.3
    while time.monotonic() < deadline:
        await asyncio.sleep(deadline - time.monotonic())
    assert (await world.o_get(VEHICLES))[0] == 200  # after the window: fine
    assert counters.early_requests("outreach") == 1
    async with world.http.get(f"{world.sandbox.outreach_url}/_sandbox/counters") as r:
        snapshot = await r.json()
    assert snapshot["early_requests"] == {"outreach": 1}
    assert all(e["arrived"] <= e["at"] and e["connection"] for e in snapshot["log"])


async def test_the_write_log_has_every_stored_record_with_its_fields(world: World) -> None:
    zd = world.sandbox.zendesk
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    zd.add_field("vehicle", {"key": "color", "type": "text", "title": "Color"})
    counters = world.sandbox.counters
    items = [{"external_id": f"car-{i}", "name": f"Car {i}", "custom_object_fields": {"color": "red"}} for i in range(3)]
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    assert status == 201

    async def done() -> bool:
        return len(zd.records("vehicle")) == 3

    await wait_for(done)
    body = {"custom_object_record": {"custom_object_fields": {"color": "blue"}}}
    assert (await world.z("PATCH", f"{CO}/vehicle/records?external_id=car-1", body))[0] == 200
    bad = {"custom_object_record": {"custom_object_fields": {"color": 7}}}
    assert (await world.z("PATCH", f"{CO}/vehicle/records?external_id=car-2", bad))[0] == 422
    assert counters.write_counts("vehicle") == {"car-0": 1, "car-1": 2, "car-2": 1}
    assert counters.write_counts("vehicle", "update") == {"car-1": 1}
    assert [w.fields for w in counters.writes_of("vehicle", "car-1")] == [{"color": "red"}, {"color": "blue"}]
    assert [w.seq for w in counters.writes] == [0, 1, 2, 3]
    async with world.http.get(f"{world.sandbox.zendesk_url}/_sandbox/counters") as r:
        assert (await r.json())["writes"] == {"vehicle": {"create": 3, "update": 1, "records": 3}}
    async with world.http.get(f"{world.sandbox.zendesk_url}/_sandbox/state?outreach=vehicles&zendesk=vehicle") as r:
        state = await r.json()
    assert len(state["outreach"]["vehicles"]) == len(world.sandbox.outreach.ids("vehicles"))
    assert sorted(rec["external_id"] for rec in state["zendesk"]["vehicle"]) == ["car-0", "car-1", "car-2"]
    assert len(state["users"]) == len(zd.users)
    async with world.http.get(f"{world.sandbox.zendesk_url}/_sandbox/state?zendesk=nope") as r:
        assert r.status == 400
