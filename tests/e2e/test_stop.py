"""Stopping mid-run, as real processes: SIGTERM/SIGINT settle the bulk jobs already submitted,
and a worker frozen past its lease TTL writes nothing once it wakes up.

Every scenario ends with the same proof: each record Zendesk received is settled in the id
map, and no record is written twice (the sandbox counts writes per external id)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox.server import Sandbox
from tests.e2e.test_backfill_cli import ready, run_bridge, start_bridge  # noqa: F401 - fixture
from tests.e2e.test_worker import dsn_of, prepare
from tests.e2e.worker_proc import WorkerProc, query, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import assert_exact

pytestmark = pytest.mark.timeout(90)

JOB_DELAY = 0.25  # the sandbox runs each bulk job this long after it was queued
SMALL_PAGES = {"BRIDGE_PAGE_SIZE": "20"}


def count_writes(sandbox: Sandbox, object_key: str = "vehicle") -> Counter[str]:
    """Counts, per external id, the records of `object_key` that Zendesk's jobs wrote."""
    writes: Counter[str] = Counter()
    upsert = sandbox.zendesk.upsert_by_external_id

    def recording(key: str, external_id: str, payload: dict[str, Any]) -> Any:
        if key == object_key:
            writes[external_id] += 1
        return upsert(key, external_id, payload)

    sandbox.zendesk.upsert_by_external_id = recording  # type: ignore[method-assign]
    return writes


async def settled_ids(dsn: str) -> dict[str, str]:
    rows = await query(dsn, "SELECT external_id, zendesk_id FROM id_map WHERE mapping = 'vehicles'")
    return {r["external_id"]: str(r["zendesk_id"]) for r in rows}


async def assert_all_received_is_settled(world: SandboxWorld) -> dict[str, str]:
    """Waits for the sandbox to run every queued job, then compares Zendesk with the id map."""

    async def no_jobs_left() -> bool:
        return world.sandbox.zendesk.jobs.active() == 0

    await wait_for(no_jobs_left, "the sandbox to run the jobs it was sent")
    received = {r["external_id"]: str(r["id"]) for r in world.sandbox.zendesk.records("vehicle")}
    settled = await settled_ids(dsn_of(world))
    assert received == settled, "Zendesk holds records that the id map does not know"
    return settled


def jobs_in_flight(world: SandboxWorld) -> Any:
    async def condition() -> bool:
        settled = await settled_ids(dsn_of(world))
        return bool(settled) and world.sandbox.zendesk.jobs.active() > 0

    return condition


async def test_sigterm_lets_a_worker_settle_the_jobs_in_flight_and_nothing_is_written_twice(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    writes = count_writes(world.sandbox)
    world.sandbox.zendesk.jobs.delay = JOB_DELAY
    workers.append(worker := await WorkerProc.start(world, mappings, **SMALL_PAGES))
    total = len(world.sandbox.outreach.ids("vehicles"))

    await wait_for(jobs_in_flight(world), "a settled vehicles page and a bulk job in flight")
    code, seconds = await worker.stop(signal.SIGTERM)
    assert code == 0, worker.log_tail()
    assert seconds < 25
    settled = await assert_all_received_is_settled(world)
    assert 0 < len(settled) < total
    [run] = await query(dsn, "SELECT status, written FROM runs WHERE mapping = 'vehicles'")
    assert (run["status"], run["written"]) == ("interrupted", len(settled))
    [cp] = await query(dsn, "SELECT resume_url FROM checkpoints WHERE mapping = 'vehicles'")
    assert cp["resume_url"] is not None
    assert await query(dsn, "SELECT * FROM leases") == []

    world.sandbox.zendesk.jobs.delay = 0
    code, _, err = await run_bridge(world, "backfill", env={"BRIDGE_MAPPINGS": str(mappings)})
    assert code == 0, err
    assert {k: n for k, n in writes.items() if n > 1} == {}, "records were written twice"
    assert_exact(world.sandbox)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stopped_backfill_settles_what_is_in_flight_then_exits_3(
    ready: SandboxWorld, sig: signal.Signals  # noqa: F811
) -> None:
    dsn = dsn_of(ready)
    writes = count_writes(ready.sandbox)
    ready.sandbox.zendesk.jobs.delay = JOB_DELAY
    proc = await start_bridge(ready, "backfill", env=SMALL_PAGES)
    await wait_for(jobs_in_flight(ready), "a settled vehicles page and a bulk job in flight")
    began = time.monotonic()
    proc.send_signal(sig)
    _, err_bytes = await proc.communicate()
    seconds = time.monotonic() - began
    err = err_bytes.decode()
    assert proc.returncode == 3, err
    assert seconds < 25
    assert "rerun" in err and "stopped" in err, err
    settled = await assert_all_received_is_settled(ready)
    assert 0 < len(settled) < len(ready.sandbox.outreach.ids("vehicles"))
    [run] = await query(dsn, "SELECT status FROM runs WHERE mapping = 'vehicles'")
    assert run["status"] == "interrupted"
    assert await query(dsn, "SELECT * FROM leases") == []

    ready.sandbox.zendesk.jobs.delay = 0
    code, _, err = await run_bridge(ready, "backfill")
    assert code == 0, err
    assert {k: n for k, n in writes.items() if n > 1} == {}, "records were written twice"
    assert_exact(ready.sandbox)


async def test_a_worker_frozen_past_its_lease_writes_nothing_after_it_wakes(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    world.sandbox.zendesk.jobs.delay = JOB_DELAY
    env = {**SMALL_PAGES, "BRIDGE_LEASE_TTL_SECONDS": "3", "BRIDGE_JOB_CONCURRENCY": "1"}
    workers.append(frozen := await WorkerProc.start(world, mappings, **env))
    await wait_for(jobs_in_flight(world), "a settled vehicles page and a bulk job in flight")
    frozen.proc.send_signal(signal.SIGSTOP)

    async def lease_expired() -> bool:
        rows = await query(dsn, "SELECT 1 FROM leases WHERE mapping = 'vehicles' AND expires_at > now()")
        return not rows

    await wait_for(lease_expired, "the frozen worker's lease to expire", timeout=10)
    workers.append(other := await WorkerProc.start(world, mappings, **env))

    async def other_finished() -> bool:
        rows = await query(
            dsn, "SELECT 1 FROM runs WHERE mapping = 'vehicles' AND actor = $1 AND status = 'succeeded'",
            other.holder,
        )  # fmt: skip
        return bool(rows)

    await wait_for(other_finished, "the other worker to finish vehicles", timeout=60)
    code, _ = await other.stop(signal.SIGTERM)
    assert code == 0, other.log_tail()
    before = await _state(dsn)

    woke = time.monotonic()
    frozen.proc.send_signal(signal.SIGCONT)

    async def noticed() -> bool:
        return any(e.get("lease_mapping") == "vehicles" for e in frozen.events("lease_lost"))

    await wait_for(noticed, "the woken worker to notice it lost the lease", timeout=15)
    code, _ = await frozen.stop(signal.SIGTERM)
    assert code == 0, frozen.log_tail()
    posts = [e for e in world.sandbox.counters.entries("zendesk") if e.method == "POST" and e.at >= woke]
    assert posts == [], "the woken worker wrote to Zendesk without its lease"
    assert await _state(dsn) == before, "the woken worker committed without its lease"
    assert_exact(world.sandbox)
    await assert_all_received_is_settled(world)


async def _state(dsn: str) -> tuple[Any, ...]:
    checkpoint = await query(dsn, "SELECT watermark, resume_url, run_id FROM checkpoints ORDER BY mapping")
    idmap = await query(dsn, "SELECT * FROM id_map ORDER BY mapping, source_id")
    counts = await query(dsn, "SELECT id, fetched, written, skipped, failed FROM runs ORDER BY id")
    return [tuple(r) for r in checkpoint], [tuple(r) for r in idmap], [tuple(r) for r in counts]
