"""`bridge worker` as real processes on real Postgres against the sandbox over loopback."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import schema, wiring
from bridge.embedded_pg import start_embedded, stop_embedded
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.store import migrate, pool
from tests.e2e.test_backfill_cli import run_bridge
from tests.e2e.worker_proc import WorkerProc, query, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import assert_exact

pytestmark = pytest.mark.timeout(90)


def dsn_of(world: SandboxWorld) -> str:
    assert world.settings.database_url is not None
    return world.settings.database_url.get_secret_value()


async def prepare(world: SandboxWorld, mappings_dir: Path) -> None:
    """Creates the Zendesk objects the mappings in `mappings_dir` need."""
    mappings = load_mappings(mappings_dir)
    async with wiring.open_pool(world.settings) as db, wiring.open_services(world.settings, db) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))
    world.sandbox.counters.reset()


async def runs_of(dsn: str, status: str = "succeeded") -> Counter[str]:
    rows = await query(dsn, "SELECT mapping FROM runs WHERE kind = 'worker' AND status = $1", status)
    return Counter(row["mapping"] for row in rows)


def assert_prospects_exact(world: SandboxWorld) -> None:
    written = sorted(r["external_id"] for r in world.sandbox.zendesk.records("prospect_copy"))
    assert written == sorted(f"outreach:prospects:{p}" for p in world.sandbox.outreach.ids("prospect"))


async def test_two_workers_share_three_mappings_without_overlap(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s")
    await prepare(world, mappings)
    dsn = dsn_of(world)
    # Both start at once, so their schedules fire in step, and runs last about a period:
    # only the leases keep two replicas off one mapping.
    world.sandbox.faults.set_latency("zendesk", 0.05)
    workers += await asyncio.gather(WorkerProc.start(world, mappings), WorkerProc.start(world, mappings))

    async def each_ran_three_times() -> bool:
        done = await runs_of(dsn)
        return all(done[name] >= 3 for name in ("vehicle_brands", "vehicles", "prospects"))

    await wait_for(each_ran_three_times, "three successful runs of every mapping", timeout=40)
    held = await query(dsn, "SELECT mapping, holder FROM leases")
    for worker in workers:
        code, seconds = await worker.stop(signal.SIGTERM)
        assert code == 0, worker.log_tail()
    rows = await query(dsn, "SELECT mapping, actor, started_at, finished_at FROM runs ORDER BY started_at")
    for name in ("vehicle_brands", "vehicles", "prospects"):
        mine = [r for r in rows if r["mapping"] == name]
        for earlier, later in zip(mine, mine[1:]):
            assert earlier["finished_at"] is not None and earlier["finished_at"] <= later["started_at"], name
    assert {r["actor"] for r in rows} <= {w.holder for w in workers}
    assert {h["holder"] for h in held} <= {w.holder for w in workers}
    assert await query(dsn, "SELECT * FROM leases") == []  # released on the way out
    assert_exact(world.sandbox)
    assert_prospects_exact(world)


async def test_sigkill_one_worker_and_the_other_takes_over(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    # Slow enough that the first vehicles run is still going however long the workers take
    # to start: a run that finished first leaves no half-done moment to kill it in.
    world.sandbox.faults.set_latency("zendesk", 0.3)
    workers += await asyncio.gather(WorkerProc.start(world, mappings), WorkerProc.start(world, mappings))
    total = len(world.sandbox.outreach.ids("vehicles"))

    async def vehicles_mid_run() -> bool:
        rows = await query(dsn, "SELECT count(*) AS n FROM id_map WHERE mapping = 'vehicles'")
        held = await query(dsn, "SELECT holder FROM leases WHERE mapping = 'vehicles'")
        return 0 < rows[0]["n"] < total and bool(held)

    await wait_for(vehicles_mid_run, "a vehicles run half done")
    [row] = await query(dsn, "SELECT holder FROM leases WHERE mapping = 'vehicles'")
    victim = next(w for w in workers if w.holder == row["holder"])
    survivor = next(w for w in workers if w is not victim)
    await victim.kill()
    killed_at = time.monotonic()
    world.sandbox.faults.clear()

    async def survivor_finished_vehicles() -> bool:
        rows = await query(
            dsn, "SELECT 1 FROM runs WHERE mapping = 'vehicles' AND actor = $1 AND status = 'succeeded' "
                 "AND started_at > (SELECT max(started_at) FROM runs WHERE actor = $2)",
            survivor.holder, victim.holder,
        )  # fmt: skip
        return bool(rows)

    await wait_for(survivor_finished_vehicles, "the survivor to finish vehicles", timeout=20)
    assert time.monotonic() - killed_at < 2 + 1 + 5  # lease TTL + one period + the run itself
    code, _ = await survivor.stop(signal.SIGTERM)
    assert code == 0, survivor.log_tail()
    assert_exact(world.sandbox)
    [victim_run] = await query(
        dsn, "SELECT status FROM runs WHERE actor = $1 AND mapping = 'vehicles' ORDER BY id DESC LIMIT 1",
        victim.holder,
    )  # fmt: skip
    assert victim_run["status"] == "interrupted"


async def test_readyz_follows_the_database_and_the_worker_survives_a_restart(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s", prospects=False)
    await prepare(world, mappings)
    data_dir = Path(tempfile.mkdtemp(prefix="bridge-pg-restart-"))
    try:
        dsn = start_embedded(data_dir)
        db = await pool.create_pool(dsn, max_size=2)
        await migrate.migrate(db)
        await db.close()
        await _restart_scenario(world, mappings, dsn, data_dir, workers)
    finally:
        for worker in workers:
            await worker.kill()
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _restart_scenario(
    world: SandboxWorld, mappings: Path, dsn: str, data_dir: Path, workers: list[WorkerProc]
) -> None:
    worker = await WorkerProc.start(world, mappings, DATABASE_URL=dsn)
    workers.append(worker)
    total = len(world.sandbox.outreach.ids("vehicles"))

    async def synced() -> bool:
        return len(world.sandbox.zendesk.records("vehicle")) == total

    async def ready(expected: int) -> bool:
        return (await worker.get("/readyz"))[0] == expected

    await wait_for(synced, "the first sync")
    await wait_for(lambda: ready(200), "/readyz 200")
    stop_embedded(data_dir)
    await wait_for(lambda: ready(503), "/readyz 503 while Postgres is down")
    changed = world.sandbox.outreach.ids("vehicles")[:7]
    for vid in changed:
        world.sandbox.outreach.update("vehicles", vid, color="Ultra Violet")

    async def a_run_failed() -> bool:
        return bool(worker.events("run_failed"))

    await wait_for(a_run_failed, "a run to fail while Postgres is down")
    assert (await worker.get("/readyz"))[0] == 503 and (await worker.get("/healthz"))[0] == 200
    assert start_embedded(data_dir) == dsn
    await wait_for(lambda: ready(200), "/readyz 200 after the restart")

    async def changes_arrived() -> bool:
        colors = [r["custom_object_fields"]["color"] for r in world.sandbox.zendesk.records("vehicle")]
        return colors.count("ultra violet") >= len(changed)

    await wait_for(changes_arrived, "the changes made while Postgres was down")
    assert worker.proc.returncode is None
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0, worker.log_tail()
    assert_exact(world.sandbox)
    rows = await query(dsn, "SELECT count(*) AS n, count(DISTINCT external_id) AS d FROM id_map WHERE mapping = 'vehicles'")
    assert rows[0]["n"] == rows[0]["d"] == total


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_metrics_match_what_the_sandbox_counted(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    world.sandbox.faults.add("outreach", "status", status=429, retry_after=0.5, times=1)
    workers.append(worker := await WorkerProc.start(world, mappings))

    async def both_ran() -> bool:
        return sum((await runs_of(dsn)).values()) == 2

    await wait_for(both_ran, "one run of each mapping")
    status, text = await worker.get("/metrics")
    assert status == 200
    counters = world.sandbox.counters
    requests = samples(text, "bridge_api_requests_total")
    for api in ("outreach", "zendesk"):
        by_status: Counter[str] = Counter()
        for entry in counters.entries(api):
            if entry.route != "oauth_tokens":  # token requests go around the request loop
                by_status[str(entry.status)] += 1
        mine = {dict(k)["status"]: v for k, v in requests.items() if dict(k)["api"] == api}
        assert mine == dict(by_status), api
    assert requests[(("api", "outreach"), ("status", "429"))] == 1
    # The 429's Retry-After is slept by the retry policy, not the limiter (see tests/test_metrics.py).
    waited = samples(text, "bridge_rate_limit_wait_seconds_total")
    assert set(waited) == {(("api", "outreach"),), (("api", "zendesk"),)}
    records = samples(text, "bridge_records_total")
    vehicles = len(world.sandbox.outreach.ids("vehicles"))
    assert records[(("mapping", "vehicles"), ("outcome", "fetched"))] == vehicles
    assert records[(("mapping", "vehicles"), ("outcome", "written"))] == len(world.sandbox.zendesk.records("vehicle"))
    assert records[(("mapping", "vehicle_brands"), ("outcome", "written"))] == len(
        world.sandbox.zendesk.records("vehicle_brand")
    )
    lag = samples(text, "bridge_lag_seconds")
    assert set(lag) == {(("mapping", "vehicle_brands"),), (("mapping", "vehicles"),)}
    assert all(0 <= v < 30 for v in lag.values())
    assert samples(text, "bridge_dead_letters") == {(("mapping", "vehicle_brands"),): 0, (("mapping", "vehicles"),): 0}
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0


async def test_backfill_respects_a_workers_lease_and_status_shows_the_holder(world: SandboxWorld) -> None:
    await prepare(world, world.settings.bridge_mappings)
    dsn = dsn_of(world)
    await query(
        dsn, "INSERT INTO leases (mapping, holder, expires_at) VALUES ('vehicles', 'worker:pod-7:1:abc', "
             "now() + interval '1 minute')",
    )  # fmt: skip
    code, out, err = await run_bridge(world, "status")
    assert code == 0 and "held_by=worker:pod-7:1:abc" in out, out
    code, _, err = await run_bridge(world, "backfill", env={"BRIDGE_LEASE_WAIT_SECONDS": "1"})
    assert code == 3, err
    assert "waiting_for_lease" in err
    assert "mapping 'vehicles' is being synced by worker:pod-7:1:abc" in err
    assert world.sandbox.counters.count("zendesk", method="POST") == 0  # nothing was written
    assert [r["mapping"] for r in await query(dsn, "SELECT mapping FROM leases")] == ["vehicles"]
    await query(dsn, "UPDATE leases SET expires_at = now() - interval '1 second'")  # the pod died
    code, _, err = await run_bridge(world, "backfill")
    assert code == 0, err
    assert_exact(world.sandbox)
    assert await query(dsn, "SELECT * FROM leases") == []
