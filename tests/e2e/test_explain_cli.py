"""`bridge explain` as a real process after a real backfill: exit code, text, JSON, no secrets."""

from __future__ import annotations

import json

from tests.commands.test_explain_runs import small  # noqa: F401  (fixture)
from tests.e2e.test_backfill_cli import run_bridge
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import backfill


async def test_explain_live_tells_a_written_record_in_text_and_json(small: SandboxWorld) -> None:  # noqa: F811
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[7]
    code, text, err = await run_bridge(small, "explain", "vehicles", f"outreach:vehicles:{vid}", "--live")
    assert code == 0, err
    record = small.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{vid}")
    assert record is not None and f"in Zendesk as record {record['id']}" in text and "Zendesk now" in text
    code, out, err = await run_bridge(small, "explain", "vehicles", str(vid), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["status"], data["zendesk_id"], data["asked_outreach"]) == ("in_zendesk", record["id"], False)
    secrets = (small.seed.outreach_token, small.seed.zendesk_client_secret)
    assert not any(s in text + out + err for s in secrets)
