"""`bridge backfill` as a real subprocess: exit codes, SIGKILL at any point, no secrets in logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures_sandbox import REPO, SandboxWorld
from tests.pipeline.test_sync import assert_exact, prepare_zendesk


async def start_bridge(world: SandboxWorld, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    full_env = {**os.environ, **world.env(), **(env or {})}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=REPO, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def run_bridge(world: SandboxWorld, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await start_bridge(world, *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
async def ready(world: SandboxWorld) -> SandboxWorld:
    await prepare_zendesk(world)
    world.sandbox.counters.reset()
    return world


async def kill_points(world: SandboxWorld) -> list[tuple[str, Callable[[], Awaitable[bool]]]]:
    """Each point is reached by the process started after this call, counted from what earlier
    processes left (a late kill of one process must not make the next one's point true at once)."""
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    counters = world.sandbox.counters
    listed, posted = counters.count("outreach"), counters.count("zendesk", method="POST")

    async def settled() -> int:
        return int(await fetchval(dsn, "SELECT count(*) FROM id_map WHERE mapping = 'vehicles'"))  # type: ignore[call-overload]

    at_start = await settled()

    async def outreach_listed() -> bool:
        return counters.count("outreach") > listed

    async def first_job_sent() -> bool:
        return counters.count("zendesk", method="POST") > posted

    async def vehicle_page_settled() -> bool:
        return await settled() > at_start

    async def most_pages_settled() -> bool:
        return await settled() - at_start >= 150

    return [
        ("before any write", outreach_listed),
        ("mid-page, jobs in flight", first_job_sent),
        ("after the first settled vehicle page", vehicle_page_settled),
        ("late in the run", most_pages_settled),
    ]


async def top_up(world: SandboxWorld, unsettled: int = 200) -> None:
    """Adds vehicles to Outreach until `unsettled` of them have no id-map row: a kill can land
    after its run has finished, and the next process must still have a run to be killed in."""
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    out = world.sandbox.outreach
    missing = unsettled - (len(out.ids("vehicles")) - int(await fetchval(dsn, "SELECT count(*) FROM id_map WHERE mapping = 'vehicles'")))  # type: ignore[call-overload]
    brand = out.ids("vehicle_brands")[0]
    for i in range(max(missing, 0)):
        out.put("vehicles", {"vehicle_name": f"Extra {i}", "speed": "90mph", "color": "red"}, {"brand": brand})


async def test_sigkill_at_any_point_then_rerun_ends_exact(ready: SandboxWorld) -> None:
    ready.sandbox.faults.set_latency("zendesk", 0.02)
    ready.sandbox.faults.set_latency("outreach", 0.02)
    killed_at = []
    for point in range(4):
        await top_up(ready)
        name, condition = (await kill_points(ready))[point]
        proc = await start_bridge(ready, "backfill")
        await wait_for(condition, name)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at.append((name, proc.returncode))
    assert [code for _, code in killed_at] == [-signal.SIGKILL] * 4
    ready.sandbox.faults.clear()
    code, _, err = await run_bridge(ready, "backfill")
    assert code == 0, err
    assert_exact(ready.sandbox)
    dsn = ready.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert await fetchval(dsn, "SELECT count(*) FROM id_map WHERE mapping = 'vehicles'") == total
    # Every killed run is ended as interrupted by the next start, none is left running. How many
    # there are depends on where the kills landed (a fast run may finish before a late one); the
    # kill with jobs in flight always leaves one.
    assert await fetchval(dsn, "SELECT count(*) FROM runs WHERE status = 'running'") == 0
    assert await fetchval(dsn, "SELECT count(*) FROM runs WHERE status = 'interrupted'") >= 1  # type: ignore[operator]


async def test_exit_code_1_when_records_are_dead_lettered(ready: SandboxWorld) -> None:
    vid = ready.sandbox.outreach.ids("vehicles")[0]
    ready.sandbox.outreach.update("vehicles", vid, vehicle_name="x" * 40_000)
    code, _, err = await run_bridge(ready, "backfill")
    assert code == 1, err
    assert len(ready.sandbox.zendesk.records("vehicle")) == len(ready.sandbox.outreach.ids("vehicles")) - 1


async def test_bad_mapping_exits_2_and_changes_nothing(ready: SandboxWorld, tmp_path: Path) -> None:
    (tmp_path / "vehicles.yaml").write_text(
        "source: {type: vehicles}\ntarget: {object: vehicle, name: '{vehicle_name}'}\n"
        "fields:\n  top_speed_mph: {from: speed, type: integer, transform: [digitz]}\n"
    )
    code, out, err = await run_bridge(ready, "backfill", env={"BRIDGE_MAPPINGS": str(tmp_path)})
    assert code == 2
    assert "fields.top_speed_mph.transform[0]" in err and "digitz" in err
    assert ready.sandbox.counters.count("zendesk", method="POST") == 0
    code, _, err = await run_bridge(ready, "validate", env={"BRIDGE_MAPPINGS": str(tmp_path)})
    assert code == 2 and "digitz" in err


async def test_oauth_secrets_never_reach_the_output(ready: SandboxWorld) -> None:
    seed = ready.seed
    env = {
        "OUTREACH_ACCESS_TOKEN": "",
        "OUTREACH_CLIENT_ID": seed.outreach_client_id,
        "OUTREACH_CLIENT_SECRET": seed.outreach_client_secret,
        "OUTREACH_REFRESH_TOKEN": seed.outreach_refresh_token,
        "BRIDGE_SECRET_KEY": "test-secret-key-for-tokens",
        "LOG_LEVEL": "DEBUG",
    }
    ready.sandbox.faults.add("zendesk", "status", status=401, path_contains="/api/v2/", times=1)
    ready.sandbox.outreach.expire_tokens()  # the env token is refused: OAuth refresh must take over
    code, out, err = await run_bridge(ready, "backfill", env=env)
    assert code == 0, err
    dsn = ready.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    stored = await fetchval(dsn, "SELECT ciphertext FROM oauth_tokens WHERE name = 'outreach'")
    assert isinstance(stored, bytes) and seed.outreach_refresh_token.encode() not in stored
    for secret in (seed.outreach_client_secret, seed.outreach_refresh_token, seed.zendesk_client_secret):
        assert secret not in out and secret not in err
    assert_exact(ready.sandbox)


# What only the worker, the web intake, the terminal display or the repair and schema commands
# use: a backfill's start-up is most of a short run's CPU, and none of this is its work.
NOT_FOR_A_BACKFILL = (
    "apscheduler", "prometheus_client", "aiohttp.web", "rich", "pygments", "bridge.worker",
    "bridge.scheduler", "bridge.server", "bridge.metrics", "bridge.webhooks", "bridge.upkeep",
    "bridge.alerts", "bridge.status", "bridge.schema", "bridge.pipeline.reconcile",
    "bridge.pipeline.redrive", "bridge.commands.repair", "bridge.commands.schema",
)  # fmt: skip
LOADED = (
    "import json, sys\n"
    "from bridge import cli\n"
    "code = cli.main(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
    "raise SystemExit(code)\n"
)


async def test_a_dry_run_loads_only_what_a_backfill_uses(ready: SandboxWorld, tmp_path: Path) -> None:
    listing = tmp_path / "modules.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOADED, str(listing), "backfill", "--dry-run", cwd=REPO,
        env={**os.environ, **ready.env()}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    loaded = json.loads(listing.read_text())
    assert "bridge.pipeline.sync" in loaded  # it did run
    assert [m for m in loaded if m.startswith(NOT_FOR_A_BACKFILL)] == []
