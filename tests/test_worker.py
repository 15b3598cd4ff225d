"""The worker in process: signal handlers come and go cleanly, and a dead side task stops the
worker instead of leaving it holding leases (stopping mid-run: tests/e2e/test_stop.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bridge import wiring, worker
from bridge.errors import StoreError
from bridge.mapping.load import load_mappings
from bridge.metrics import Metrics
from bridge.pipeline.services import Services
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from bridge.scheduler import ScheduleConfig
from bridge.settings import Settings
from bridge.store import leases, pool
from tests.e2e.pg_proxy import pg_proxy
from tests.e2e.test_worker import prepare
from tests.e2e.worker_proc import query, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_relationships import CYCLE_PLAYERS, CYCLE_TEAMS, zendesk_id
from tests.pipeline.test_relationships import prepare as prepare_relationships


async def test_a_dead_side_task_stops_the_worker_and_releases_its_leases(
    world: SandboxWorld, tmp_path: Path
) -> None:
    mappings_dir = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings_dir)
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    mappings = load_mappings(mappings_dir)
    holder = leases.holder_id("worker")
    config = replace(wiring.worker_config(world.settings, holder), port=0, lease_ttl=5.0,
                     schedule=ScheduleConfig(jitter_seconds=0, startup_stagger_seconds=0.1))  # fmt: skip
    async with wiring.open_pool(world.settings) as pool:
        metrics = Metrics()
        async with wiring.open_services(world.settings, pool, metrics=metrics) as services:
            w = worker.Worker(mappings, services, metrics, config, holder)
            running = asyncio.create_task(w.run())

            async def both_ran() -> bool:
                rows = await query(dsn, "SELECT count(*) AS n FROM runs WHERE status = 'succeeded'")
                return rows[0]["n"] == 2

            await wait_for(both_ran, "a run of each mapping")
            port = w.health.port
            await query(dsn, "INSERT INTO leases (mapping, holder, expires_at) VALUES ('x', $1, now() + interval '1 minute')", holder)

            async def broken_renewal() -> None:
                raise RuntimeError("heartbeat bug")

            w.keeper.renew_once = broken_renewal  # type: ignore[method-assign]
            with pytest.raises(StoreError, match="lease_heartbeat task ended unexpectedly"):
                await asyncio.wait_for(running, 10)
    assert await query(dsn, "SELECT * FROM leases") == []
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz"):
            pass


def cycle_world(sandbox: Sandbox, db_dsn: str, directory: Path) -> tuple[SandboxWorld, list[int], list[int]]:
    """teams.captain → players and players.team → teams (test_relationships' cycle)."""
    (directory / "teams.yaml").write_text(CYCLE_TEAMS + "schedule: {every: 1h}\n")
    (directory / "players.yaml").write_text(CYCLE_PLAYERS + "schedule: {every: 1h}\n")
    out = sandbox.outreach
    out.add_type("teams", custom_object=True, display_field="name", attributes={"name": "string"},
                 relationships={"captain": "players"})  # fmt: skip
    out.add_type("players", custom_object=True, display_field="name", attributes={"name": "string"},
                 relationships={"team": "teams"})  # fmt: skip
    teams = [out.put("teams", {"name": f"Team {i}"}) for i in range(5)]
    players = [out.put("players", {"name": f"Player {i}"}, {"team": teams[i % 5]}) for i in range(20)]
    for i, tid in enumerate(teams):
        out.set_relationship("teams", tid, "captain", players[i])
    seed = seed_demo(sandbox, vehicles=0, brands=0, prospects=0)
    return SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_mappings=directory)), teams, players


async def test_the_worker_settles_a_cycle_with_the_fill_after_each_run(
    sandbox: Sandbox, db_dsn: str, tmp_path: Path
) -> None:
    """Upkeep is off here: only the fill after the second side's run can fill the first side."""
    world, teams, players = cycle_world(sandbox, db_dsn, tmp_path)
    await prepare_relationships(world)
    mappings = load_mappings(tmp_path)
    holder = leases.holder_id("worker")
    config = replace(wiring.worker_config(world.settings, holder), port=0,
                     schedule=ScheduleConfig(jitter_seconds=0, startup_stagger_seconds=0.1))  # fmt: skip
    assert config.schedule.upkeep_seconds is None
    dsn = db_dsn
    async with wiring.open_pool(world.settings) as pool:
        metrics = Metrics()
        async with wiring.open_services(world.settings, pool, metrics=metrics) as services:
            w = worker.Worker(mappings, services, metrics, config, holder)
            running = asyncio.create_task(w.run())

            async def both_ran() -> bool:
                rows = await query(dsn, "SELECT count(*) AS n FROM runs WHERE status = 'succeeded'")
                return rows[0]["n"] == 2

            await wait_for(both_ran, "a run of each side of the cycle")
            w.stop()
            await asyncio.wait_for(running, 20)
    zd = sandbox.zendesk
    for i, tid in enumerate(teams):
        team = zd.record_by_external_id("team", f"outreach:teams:{tid}")
        assert team and team["custom_object_fields"]["captain"] == zendesk_id(sandbox, "player", f"outreach:players:{players[i]}")
    for i, pid in enumerate(players):
        player = zd.record_by_external_id("player", f"outreach:players:{pid}")
        assert player and player["custom_object_fields"]["team"] == zendesk_id(sandbox, "team", f"outreach:teams:{teams[i % 5]}")
    assert await query(dsn, "SELECT * FROM parked_links") == []


async def test_readiness_answers_in_time_while_the_database_hangs_and_recovers(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen database (no answer, nothing closed) must not hold /readyz: the probe has its
    own short deadline, and the reason served never carries the error's text."""
    monkeypatch.setattr(worker, "READY_TIMEOUT_S", 0.3)
    async with pg_proxy(db_dsn) as proxy:
        db = await pool.create_pool(proxy.dsn, max_size=2)
        try:
            config = wiring.worker_config(Settings(), "holder")
            w = worker.Worker({}, Services(outreach=None, zendesk=None, pool=db),  # type: ignore[arg-type]
                              Metrics(), config, "holder")  # fmt: skip
            assert (await w._readiness()).ready
            proxy.hang()
            began = time.monotonic()
            result = await w._readiness()
            assert time.monotonic() - began < 1.5
            assert (result.ready, result.reason) == (False, "the database did not answer in time")
            proxy.restore()
            await wait_for(lambda: _ready(w), "readiness to recover", timeout=10)
            proxy.cut()
            result = await w._readiness()
            assert (result.ready, result.reason) == (False, "the database is unavailable")
            assert "127.0.0.1" in result.detail or "closed" in result.detail  # for the log only
        finally:
            db.terminate()


async def _ready(w: worker.Worker) -> bool:
    return (await w._readiness()).ready
