"""A record listed twice in one run (edited mid-run) is written once at a time, newest last."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.commands.sync import run_backfill
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.outreach.models import OutreachId, Page, SourceRecord
from bridge.pipeline.page import translate_page
from bridge.pipeline.sync import SyncOptions
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_sync import assert_exact, backfill, prepare_zendesk


@pytest.fixture
async def small(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    """80 vehicles: page 1 holds 50, page 2 the other 30 and whatever is edited meanwhile."""
    seed = seed_demo(sandbox, vehicles=80, brands=3, prospects=10)
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn))
    await prepare_zendesk(world)
    return world


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


async def test_an_older_version_finishing_last_never_overwrites_the_newer(small: SandboxWorld) -> None:
    outreach, zendesk = small.sandbox.outreach, small.sandbox.zendesk
    edited = outreach.order_of("vehicles")[10][1]  # on page 1
    external_id = f"outreach:vehicles:{edited}"
    # Page 1's job (the old version) is held; the record is edited before page 2 is served,
    # so its new version is on page 2, loaded while page 1 is still in flight.
    zendesk.jobs.hold(lambda key, action, items: any(i.get("external_id") == external_id for i in items))
    outreach.edit_mid_listing("vehicles", lambda: outreach.update("vehicles", edited, color="Ultra Violet"))

    def newer_written() -> bool:
        record = zendesk.record_by_external_id("vehicle", external_id)
        return record is not None and record["custom_object_fields"]["color"] == "ultra violet"

    with capture_logs() as logs:
        run = asyncio.create_task(backfill(small, pages_in_flight=2))
        # Page 1's job is held; meanwhile the run either writes the new version (the race)
        # or waits for page 1 to settle first.
        waits = lambda: any(e["event"] == "page_waits_for_overlap" for e in logs)  # noqa: E731
        await until(lambda: bool(zendesk.jobs.held()) and (newer_written() or waits()))
        zendesk.jobs.release()
        reports = await run

    assert reports["vehicles"].status == "succeeded"
    assert newer_written(), "Zendesk kept the older version"
    assert_exact(small.sandbox)
    full = (await backfill(small, full=True))["vehicles"]
    assert (full.written, full.skipped) == (0, len(outreach.ids("vehicles")))  # the id map holds the newest hash
    assert_exact(small.sandbox)


async def test_a_stop_while_a_page_waits_for_an_overlap_drops_that_page(small: SandboxWorld) -> None:
    """Nothing of the waiting page was sent, so it is dropped: the checkpoint stays before it."""
    outreach, zendesk = small.sandbox.outreach, small.sandbox.zendesk
    edited = outreach.order_of("vehicles")[10][1]  # on page 1
    external_id = f"outreach:vehicles:{edited}"
    zendesk.jobs.hold(lambda key, action, items: any(i.get("external_id") == external_id for i in items))
    outreach.edit_mid_listing("vehicles", lambda: outreach.update("vehicles", edited, color="Ultra Violet"))
    mappings = load_mappings(small.settings.bridge_mappings)
    options = SyncOptions(batch_size=100, job_concurrency=4, pages_in_flight=2)
    stop = asyncio.Event()
    with capture_logs() as logs:
        run = asyncio.create_task(run_backfill(small.settings, mappings, sync_order(mappings), options, stop=stop))
        await until(lambda: any(e["event"] == "page_waits_for_overlap" for e in logs))
        stop.set()
        zendesk.jobs.release()
        [vehicles] = [r for r in await run if r.mapping == "vehicles"]

    assert (vehicles.status, vehicles.pages, vehicles.written) == ("interrupted", 1, 50)
    assert len(zendesk.records("vehicle")) == 50  # page 2 (31 records) was never sent
    record = zendesk.record_by_external_id("vehicle", external_id)
    assert record is not None and record["custom_object_fields"]["color"] != "ultra violet"
    reports = await backfill(small)  # resumes after page 1 and writes the rest, newest versions
    assert reports["vehicles"].status == "succeeded"
    assert_exact(small.sandbox)


def test_a_record_twice_on_one_page_is_translated_once_in_its_last_version() -> None:
    mapping = load_mappings(Path(__file__).resolve().parents[2] / "mappings")["vehicles"]

    def version(id: str, color: str) -> SourceRecord:
        return SourceRecord("vehicles", OutreachId(id), {"vehicle_name": "v", "color": color}, {}, None)

    page = Page([version("1", "Red"), version("2", "Blue"), version("1", "Green")], "u", None)
    ready, dead = translate_page(mapping, page)
    assert [(t.source_id, t.fields["color"]) for t in ready] == [("2", "blue"), ("1", "green")]
    assert dead == []
