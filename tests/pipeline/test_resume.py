"""A stored resume cursor that the API refuses: list again from the watermark, lose nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import asyncpg
from structlog.testing import capture_logs

from bridge.outreach.client import format_since
from bridge.pipeline.sync import SyncOptions
from bridge.store import checkpoints
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import assert_exact, backfill, prepare_zendesk


async def test_refused_resume_url_falls_back_to_the_watermark(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    bogus = f"{world.sandbox.outreach_url}/api/v2/customObjects/vehicles?page%5Bafter%5D=bm90LWEtY3Vyc29y&page%5Bsize%5D=50"
    conn = await asyncpg.connect(dsn)
    try:
        await checkpoints.save(
            conn, "vehicles", watermark=datetime(2000, 1, 1, tzinfo=UTC), resume_url=bogus, run_id=None
        )
    finally:
        await conn.close()
    with capture_logs() as logs:
        reports = await backfill(world)
    assert "resume_url_refused" in [e["event"] for e in logs]
    assert reports["vehicles"].status == "succeeded"
    assert reports["vehicles"].start_reason == "resume"
    assert_exact(world.sandbox)


async def test_refused_resume_url_lists_from_the_watermark_minus_overlap(world: SandboxWorld) -> None:
    await prepare_zendesk(world)
    await backfill(world)
    changed = world.sandbox.outreach.ids("vehicles")[5:8]
    for vid in changed:
        world.sandbox.outreach.update("vehicles", vid, color="Teal")
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    bogus = f"{world.sandbox.outreach_url}/api/v2/customObjects/vehicles?page%5Bafter%5D=bm90LWEtY3Vyc29y&page%5Bsize%5D=50"
    conn = await asyncpg.connect(dsn)
    try:
        stored = await checkpoints.load(conn, "vehicles")
        assert stored is not None and stored.watermark is not None
        await checkpoints.save(conn, "vehicles", watermark=stored.watermark, resume_url=bogus, run_id=None)
    finally:
        await conn.close()
    world.sandbox.counters.reset()
    reports = await backfill(world)
    since = stored.watermark - SyncOptions().overlap  # the overlap `backfill` runs with
    listings = [parse_qs(urlsplit(e.path).query) for e in world.sandbox.counters.entries("outreach")
                if e.path.startswith("/api/v2/customObjects/vehicles") and e.status == 200]
    assert listings and listings[0].get("filter[updatedAt]") == [f"{format_since(since)}..inf"]
    vehicles = reports["vehicles"]
    assert (vehicles.status, vehicles.written) == ("succeeded", len(changed))
    assert vehicles.fetched < len(world.sandbox.outreach.ids("vehicles"))
    assert_exact(world.sandbox)
