"""Fills never touch the records of a mapping another process is running."""

from __future__ import annotations

import asyncpg

from bridge.store import leases
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_relationships import (
    actual_lookups,
    backfill,
    expected_lookups,
    parked_rows,
    prepare,
)


async def test_a_leased_referrer_keeps_its_links_parked_until_it_is_free(world: SandboxWorld) -> None:
    await prepare(world)
    await backfill(world, ["vehicles"])  # brands do not exist yet: every brand link is parked
    total = len(world.sandbox.outreach.ids("vehicles"))
    assert sum(1 for r in await parked_rows(world) if r["field"] == "brand") == total
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        assert await leases.acquire(conn, "vehicles", "worker:elsewhere:1:x", ttl=300)
        await backfill(world, ["vehicle_brands"])  # the brands land; vehicles is someone else's
        assert sum(1 for r in await parked_rows(world) if r["field"] == "brand") == total
        assert all(v["brand"] is None for v in actual_lookups(world.sandbox).values())
        await leases.release(conn, "vehicles", "worker:elsewhere:1:x")
    finally:
        await conn.close()
    await backfill(world, ["vehicle_brands"])  # nothing leased now: the fill settles them
    assert not [r for r in await parked_rows(world) if r["field"] == "brand"]
    assert actual_lookups(world.sandbox) == expected_lookups(world.sandbox)
