"""`bridge worker` upkeep as a real process: it reconciles deletions on its own schedule and
retries dead letters with backoff until the cause is fixed, stopping at the attempt cap."""

from __future__ import annotations

import signal
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.e2e.test_worker import dsn_of, prepare
from tests.e2e.worker_proc import WorkerProc, query, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld

pytestmark = pytest.mark.timeout(90)

HUGE = "x" * 40_000  # a record over Zendesk's 32 KiB limit: refused item by item, dead-lettered
UPKEEP_ENV = {
    "BRIDGE_UPKEEP_EVERY_SECONDS": "0.3",
    "BRIDGE_RECONCILE_EVERY_SECONDS": "1",
    "BRIDGE_DEAD_LETTER_BACKOFF_SECONDS": "0.1",
    "BRIDGE_DEAD_LETTER_BACKOFF_MAX_SECONDS": "0.2",
    "BRIDGE_DEAD_LETTER_MAX_ATTEMPTS": "4",
}


async def attempts(dsn: str, vid: int) -> int:
    rows = await query(dsn, "SELECT attempts FROM dead_letters WHERE source_id = $1", str(vid))
    return int(rows[0]["attempts"]) if rows else 0


async def test_the_worker_reconciles_deletions_and_retries_dead_letters(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)  # one sync at start
    vehicles_yaml = mappings / "vehicles.yaml"
    vehicles_yaml.write_text(vehicles_yaml.read_text().replace("on_delete: keep", "on_delete: delete"))
    await prepare(world, mappings)
    dsn, outreach, zendesk = dsn_of(world), world.sandbox.outreach, world.sandbox.zendesk
    ids = outreach.ids("vehicles")
    fixed, hopeless, gone = ids[0], ids[1], ids[10:15]
    for vid in (fixed, hopeless):
        outreach.update("vehicles", vid, color=HUGE)
    workers.append(worker := await WorkerProc.start(world, mappings, **UPKEEP_ENV))

    async def synced() -> bool:
        rows = await query(dsn, "SELECT 1 FROM runs WHERE mapping = 'vehicles' AND kind = 'worker' "
                                "AND status = 'partial'")  # fmt: skip
        return bool(rows)

    await wait_for(synced, "the first vehicles sync, with two dead letters")
    assert len(zendesk.records("vehicle")) == len(ids) - 2
    for vid in gone:
        outreach.delete("vehicles", vid)

    async def retried_once() -> bool:
        return await attempts(dsn, hopeless) >= 2

    await wait_for(retried_once, "a retry by the worker")
    outreach.update("vehicles", fixed, color="Blue")  # the cause is fixed (≥ 1 attempt left)
    fixed_ext = f"outreach:vehicles:{fixed}"

    async def settled() -> bool:
        record = zendesk.record_by_external_id("vehicle", fixed_ext)
        return (
            record is not None and record["custom_object_fields"]["color"] == "blue"
            and all(zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{v}") is None for v in gone)
            and await attempts(dsn, hopeless) == 4
        )  # fmt: skip

    await wait_for(settled, "the fixed letter landed, the deletions reconciled, the cap reached")
    [letter] = await query(dsn, "SELECT source_id, attempts, last_failed_at FROM dead_letters")
    assert (letter["source_id"], letter["attempts"]) == (str(hopeless), 4)
    quiet_from = letter["last_failed_at"] + timedelta(seconds=0.5)  # past its longest backoff

    async def two_more_ticks() -> bool:
        rows = await query(dsn, "SELECT 1 FROM runs WHERE kind = 'reconcile' AND started_at > $1", quiet_from)
        return len(rows) >= 2

    await wait_for(two_more_ticks, "two upkeep ticks after the last attempt")
    code, seconds = await worker.stop(signal.SIGTERM)
    assert code == 0 and seconds < 25, worker.log_tail()
    assert await attempts(dsn, hopeless) == 4  # stopped at BRIDGE_DEAD_LETTER_MAX_ATTEMPTS
    live = {f"outreach:vehicles:{v}" for v in outreach.ids("vehicles")}
    assert {r["external_id"] for r in zendesk.records("vehicle")} == live - {f"outreach:vehicles:{hopeless}"}
    runs = await query(dsn, "SELECT kind, actor, status, written, deleted, started_at, finished_at "
                            "FROM runs WHERE mapping = 'vehicles' ORDER BY started_at")  # fmt: skip
    reconciles = [r for r in runs if r["kind"] == "reconcile"]
    retries = [r for r in runs if r["kind"] == "dead_letter_retry"]
    assert reconciles and retries
    assert {r["actor"] for r in reconciles + retries} == {worker.holder}  # the worker, by replica
    assert sum(r["deleted"] for r in reconciles) == len(gone)
    assert sum(r["written"] for r in retries) == 1 and len(retries) == 3  # attempts 2, 3 and 4
    for earlier, later in pairwise(runs):  # sync, reconcile and retries never overlap
        assert earlier["finished_at"] is not None and earlier["finished_at"] <= later["started_at"]
