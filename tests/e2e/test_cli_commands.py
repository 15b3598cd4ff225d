"""`bridge migrate`, `validate` and `status` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.e2e.test_backfill_cli import ready, run_bridge  # noqa: F401  (fixture)
from tests.fixtures_sandbox import SandboxWorld


async def test_migrate_is_idempotent_from_the_command_line(world: SandboxWorld, empty_db_dsn: str) -> None:
    env = {"DATABASE_URL": empty_db_dsn}
    first = await run_bridge(world, "migrate", env=env)
    second = await run_bridge(world, "migrate", env=env)
    assert first[0] == 0 and "applied" in first[1] and "applied 0 migration(s)" not in first[1]
    assert second[0] == 0 and "applied 0 migration(s)" in second[1]
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM checkpoints") == 0
    finally:
        await conn.close()


async def test_backfill_refuses_an_unmigrated_database(world: SandboxWorld, empty_db_dsn: str) -> None:
    code, _, err = await run_bridge(world, "backfill", env={"DATABASE_URL": empty_db_dsn})
    assert code == 2 and "bridge migrate" in err


async def test_validate_prints_the_sync_order(world: SandboxWorld) -> None:
    code, out, _ = await run_bridge(world, "validate")
    assert code == 0
    assert "vehicle_brands → vehicles" in out
    # every 5 and every 15 minutes: 12 + 4 requests an hour when nothing changes
    assert "Outreach at steady state: about 16 request(s)/hour" in out and "0.2% of 10,000/hour" in out


async def test_validate_warns_when_the_schedules_alone_need_over_half_the_outreach_budget(
    world: SandboxWorld, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"source: {{type: prospects, custom_object: false}}\ntarget: {{object: {name}, name: x}}\n"
            "fields: {x: firstName}\nschedule: {every: 1s}\n"
        )
    code, out, err = await run_bridge(world, "validate", env={"BRIDGE_MAPPINGS": str(tmp_path)})
    assert code == 0
    assert "about 7,200 request(s)/hour" in out
    assert "warning: the schedules alone need 72% of Outreach's 10,000 requests/hour" in err


async def test_status_reports_each_mapping_after_a_backfill(ready: SandboxWorld) -> None:  # noqa: F811
    assert (await run_bridge(ready, "backfill"))[0] == 0
    code, out, err = await run_bridge(ready, "status", "--json")
    assert code == 0, err
    rows = {r["mapping"]: r for r in json.loads(out)}
    vehicles = rows["vehicles"]
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert vehicles["records"] == total and vehicles["dead_letters"] == 0
    assert vehicles["last_run_status"] == "succeeded"
    assert vehicles["last_run_counts"]["written"] == total
    assert vehicles["lag_seconds"] is not None and vehicles["lag_seconds"] >= 0
    code, text, _ = await run_bridge(ready, "status")
    assert code == 0 and f"vehicles: records={total}" in text
