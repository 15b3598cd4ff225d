"""One malformed source record costs that record (a dead letter), never its page or the run."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bridge.sandbox.outreach_http import RawNumber
from bridge.sandbox.outreach_query import to_micros
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_sync import actual_vehicle, backfill, expected_vehicle, prepare_zendesk

POISONS = {
    "updatedAt_not_a_string": ("updatedAt", 1721913510000),
    "updatedAt_invalid": ("updatedAt", "2024-13-45T25:61:00.000Z"),
    "integer_of_5000_digits": ("speed", "9" * 5000),
    "json_number_of_5000_digits": ("speed", RawNumber("9" * 5000)),
    "wrong_json_type": ("vehicle_name", {"first": "DeLorean"}),
    "text_postgres_refuses": ("electric", "\u0000\ud800"),
}


@pytest.fixture
async def small(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    """Three pages of vehicles (50 a page): enough for good pages on both sides of a poison."""
    seed = seed_demo(sandbox, vehicles=120, brands=3, prospects=10)
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn))
    await prepare_zendesk(world)
    return world


async def stored_state(world: SandboxWorld) -> tuple[list[asyncpg.Record], Any]:
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        letters = await conn.fetch("SELECT source_id, error, attempts FROM dead_letters WHERE mapping = 'vehicles'")
        watermark = await conn.fetchval("SELECT watermark FROM checkpoints WHERE mapping = 'vehicles'")
        return letters, watermark
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", sorted(POISONS))
async def test_a_poison_record_is_dead_lettered_and_the_rest_lands(small: SandboxWorld, kind: str) -> None:
    world = small
    outreach = world.sandbox.outreach
    listed = [rid for _, rid in outreach.order_of("vehicles")]
    poisoned = listed[len(listed) // 2]  # mid-listing: good pages come before and after it
    attribute, value = POISONS[kind]
    outreach.serve_raw("vehicles", poisoned, **{attribute: value})

    reports = await backfill(world)

    vehicles = reports["vehicles"]
    assert (vehicles.status, vehicles.failed, vehicles.fetched) == ("partial", 1, len(listed))
    good = [rid for rid in listed if rid != poisoned]
    expected = {f"outreach:vehicles:{rid}": expected_vehicle(outreach.get("vehicles", rid) or {}) for rid in good}
    assert {r["external_id"]: actual_vehicle(r) for r in world.sandbox.zendesk.records("vehicle")} == expected
    letters, watermark = await stored_state(world)
    assert [r["source_id"] for r in letters] == [str(poisoned)]
    assert attribute in letters[0]["error"] or "top_speed_mph" in letters[0]["error"]
    newest = max(rec.updated for rid, rec in outreach.records_of("vehicles").items() if rid != poisoned)
    assert watermark is not None and to_micros(watermark) == newest  # the checkpoint moved past it

    again = (await backfill(world))["vehicles"]
    assert (again.status, again.written, again.failed) == ("succeeded", 0, 0), again
    outreach.serve_stored("vehicles", poisoned)
    outreach.touch("vehicles", [poisoned])
    healed = (await backfill(world))["vehicles"]
    assert (healed.status, healed.written, healed.failed) == ("succeeded", 1, 0)
    letters, _ = await stored_state(world)
    assert letters == []
