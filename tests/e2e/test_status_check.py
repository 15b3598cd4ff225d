"""`bridge status --check` as a scheduler runs it: exit 0 when healthy, 1 and why when not."""

from __future__ import annotations

import asyncpg

from tests.e2e.test_backfill_cli import ready, run_bridge  # noqa: F401  (fixture)
from tests.fixtures_sandbox import SandboxWorld


async def execute(world: SandboxWorld, sql: str) -> None:
    assert world.settings.database_url is not None
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_healthy_mappings_exit_0(ready: SandboxWorld) -> None:  # noqa: F811
    assert (await run_bridge(ready, "backfill"))[0] == 0
    code, out, err = await run_bridge(ready, "status", "--check")
    assert code == 0, out + err
    assert out.startswith("OK 2 mapping(s) healthy"), out


async def test_a_failing_mapping_exits_1_and_says_why(ready: SandboxWorld) -> None:  # noqa: F811
    assert (await run_bridge(ready, "backfill"))[0] == 0
    ready.sandbox.faults.add("outreach", "status", status=403, path_contains="vehicles", times=-1)
    assert (await run_bridge(ready, "backfill", "vehicles"))[0] == 3
    code, out, _ = await run_bridge(ready, "status", "--check")
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines()] == ["UNHEALTHY vehicles"], out
    assert "its last run failed" in out


async def test_a_lagging_mapping_exits_1_and_thresholds_come_from_options_or_env(
    ready: SandboxWorld,  # noqa: F811
) -> None:
    assert (await run_bridge(ready, "backfill"))[0] == 0
    await execute(ready, "UPDATE runs SET finished_at = now() - interval '2 hours' WHERE mapping = 'vehicles'")
    code, out, _ = await run_bridge(ready, "status", "--check")
    assert code == 1
    assert "UNHEALTHY vehicles: lag 72" in out and "over 3600s" in out, out
    assert "vehicle_brands" not in out
    code, out, _ = await run_bridge(ready, "status", "--check", "--max-lag-seconds", "10800")
    assert code == 0, out
    code, out, _ = await run_bridge(ready, "status", "--check", env={"BRIDGE_CHECK_MAX_LAG_SECONDS": "10800"})
    assert code == 0, out


async def test_dead_letters_over_the_threshold_are_unhealthy(ready: SandboxWorld) -> None:  # noqa: F811
    assert (await run_bridge(ready, "backfill"))[0] == 0
    await execute(ready, "INSERT INTO dead_letters (mapping, source_id, error) VALUES ('vehicles', 'v1', 'refused')")
    code, out, _ = await run_bridge(ready, "status", "--check")
    assert code == 1 and "UNHEALTHY vehicles: 1 dead letters, more than 0" in out, out
    code, out, _ = await run_bridge(ready, "status", "--check", "--max-dead-letters", "5")
    assert code == 0, out
