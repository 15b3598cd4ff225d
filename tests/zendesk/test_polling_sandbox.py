"""Job polling seen from the Zendesk sandbox over loopback: a backfill of a few hundred records
polls the jobs it has in flight together, one `show_many` request per tick."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from bridge.sandbox.counters import LogEntry
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_relationships import backfill, prepare

HELD = 4  # the backfill helper runs 4 jobs at once


def polled_ids(entry: LogEntry) -> list[str]:
    return parse_qs(urlsplit(entry.path).query)["ids"][0].split(",")


def polls(world: SandboxWorld) -> list[LogEntry]:
    return [e for e in world.sandbox.counters.entries("zendesk") if e.route == "job_statuses"]


async def release_once_polled_together(world: SandboxWorld) -> set[str]:
    """Waits until HELD vehicle jobs are held queued and one poll asked for all of them, then
    lets them run; the held ids."""
    jobs = world.sandbox.zendesk.jobs
    try:
        async with asyncio.timeout(5):
            while len(jobs.held()) < HELD:
                await asyncio.sleep(0.005)
            held = set(jobs.held())
            while not any(held <= set(polled_ids(e)) for e in polls(world)):
                await asyncio.sleep(0.005)
    finally:
        jobs.release()  # whatever happened, the backfill must end
    return held


async def test_a_backfill_polls_its_jobs_in_flight_with_one_request_per_tick(world: SandboxWorld) -> None:
    await prepare(world)
    world.sandbox.zendesk.jobs.hold(lambda key, action, items: key == "vehicle", times=HELD)
    releaser = asyncio.create_task(release_once_polled_together(world))

    reports = await backfill(world)
    held = await releaser

    assert reports["vehicles"].written == len(world.sandbox.outreach.ids("vehicles")) == 230
    assert world.sandbox.counters.count("zendesk", route="job_status") == 0  # never one by one
    asked = [polled_ids(e) for e in polls(world)]
    assert any(held <= set(ids) for ids in asked)  # the jobs in flight, in one request
    assert all(len(ids) == len(set(ids)) for ids in asked)
    assert len(asked) < sum(len(ids) for ids in asked)  # fewer requests than job polls
