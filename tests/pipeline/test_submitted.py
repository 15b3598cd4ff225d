"""Jobs stored before a crash, met again by the next run: in process, sandbox over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.mapping.load import load_mappings
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.sandbox.server import Sandbox
from bridge.store import submitted_jobs
from tests.e2e.worker_proc import wait_for
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_reconcile import fetch, services
from tests.pipeline.test_sync import prepare_zendesk

BRANDS = "vehicle_brands"
UPSERT = "create_or_update_by_external_id"


def _posted(sandbox: Sandbox) -> list[str]:
    return [e.path for e in sandbox.counters.entries("zendesk") if e.method == "POST" and e.path.endswith("/jobs")]


def _polled(sandbox: Sandbox, job_id: str) -> int:
    return sum(1 for e in sandbox.counters.entries("zendesk") if "job_statuses" in e.path and job_id in e.path)


async def _crash_before_commit(world: SandboxWorld) -> list[tuple[str, str, dict[str, Any]]]:
    """Brands synced, then the commit undone: (external id, hash, item) of what was sent."""
    every = load_mappings(world.settings.bridge_mappings)
    async with services(world.settings) as s:
        await sync_mapping(every[BRANDS], s, SyncOptions())
    rows = await fetch(world, "SELECT external_id, payload_hash FROM id_map WHERE mapping = $1 "
                              "ORDER BY external_id", BRANDS)  # fmt: skip
    await fetch(world, "DELETE FROM id_map WHERE mapping = $1", BRANDS)
    await fetch(world, "DELETE FROM checkpoints WHERE mapping = $1", BRANDS)
    records = {r["external_id"]: r for r in world.sandbox.zendesk.records("vehicle_brand")}
    return [(r["external_id"], r["payload_hash"], records[r["external_id"]]) for r in rows]


async def _store(world: SandboxWorld, job_id: str, items: list[tuple[str, str]]) -> None:
    async with services(world.settings) as s, s.pool.acquire() as conn:
        await submitted_jobs.record(conn, BRANDS, job_id, [e for e, _ in items], [h for _, h in items])


@pytest.mark.parametrize("fate", ["completed", "failed", "forgotten"])
async def test_a_stored_job_is_used_only_when_zendesk_still_has_its_results(
    world: SandboxWorld, fate: str
) -> None:
    await prepare_zendesk(world)
    sent = await _crash_before_commit(world)
    jobs = world.sandbox.zendesk.jobs
    if fate == "failed":
        jobs.fail_jobs(1)
    items = [{"external_id": e, "name": r["name"], "custom_object_fields": r["custom_object_fields"]}
             for e, _, r in sent]  # fmt: skip
    job = jobs.submit("vehicle_brand", UPSERT, items)
    await _store(world, job["id"], [(e, h) for e, h, _ in sent])
    if fate == "forgotten":
        jobs.forget([job["id"]])
    world.sandbox.counters.reset()

    every = load_mappings(world.settings.bridge_mappings)
    async with services(world.settings) as s:
        report = await sync_mapping(every[BRANDS], s, SyncOptions())

    assert _polled(world.sandbox, job["id"]) >= 1
    assert (report.written, report.failed) == (len(sent), 0)
    assert len(_posted(world.sandbox)) == (0 if fate == "completed" else 1)
    ids = await fetch(world, "SELECT external_id, zendesk_id FROM id_map WHERE mapping = $1", BRANDS)
    assert {r["external_id"]: r["zendesk_id"] for r in ids} == {e: r["id"] for e, _, r in sent}
    assert await fetch(world, "SELECT * FROM submitted_jobs") == []


async def test_an_older_job_still_queued_lands_before_the_newer_write_of_its_record(
    world: SandboxWorld,
) -> None:
    await prepare_zendesk(world)
    sent = await _crash_before_commit(world)
    ext, _, record = sent[0]
    jobs = world.sandbox.zendesk.jobs
    jobs.hold(lambda key, action, items: key == "vehicle_brand", times=1)
    stale = {"external_id": ext, "name": "stale", "custom_object_fields": {"brand_name": "stale"}}
    job = jobs.submit("vehicle_brand", UPSERT, [stale])
    await _store(world, job["id"], [(ext, "an older payload")])
    world.sandbox.counters.reset()

    every = load_mappings(world.settings.bridge_mappings)
    async with services(world.settings) as s:
        run = asyncio.create_task(sync_mapping(every[BRANDS], s, SyncOptions()))

        async def polled_twice() -> bool:
            return _polled(world.sandbox, job["id"]) >= 2

        await wait_for(polled_twice, "the run to poll the job from before the crash")
        assert _posted(world.sandbox) == [], "the page wrote before the older job had landed"
        jobs.release()
        report = await run

    assert (report.written, report.failed) == (len(sent), 0)
    assert len(_posted(world.sandbox)) == 1
    [now] = [r for r in world.sandbox.zendesk.records("vehicle_brand") if r["external_id"] == ext]
    assert (now["name"], now["custom_object_fields"]) == (record["name"], record["custom_object_fields"])
