"""Fault injection and request counting, over real HTTP and through the control surface."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from .conftest import World

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
