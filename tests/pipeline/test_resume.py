"""A stored resume cursor that the API refuses: list again from the watermark, lose nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from structlog.testing import capture_logs

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
