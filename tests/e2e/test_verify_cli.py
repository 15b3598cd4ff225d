"""`bridge verify` as a real subprocess: what a person reads, what a script parses, exit codes."""

from __future__ import annotations

import json

from bridge.sandbox.server import Sandbox
from tests.e2e.test_backfill_cli import run_bridge as run_bridge_with
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_reconcile import zendesk_writes
from tests.pipeline.test_verify import synced_world


async def run_bridge(world: SandboxWorld, *args: str) -> tuple[int, str, str]:
    return await run_bridge_with(world, *args, env={"BRIDGE_VERIFY_SETTLE_SECONDS": "0"})


async def test_verify_cli_exit_codes_text_json_repair_and_status(sandbox: Sandbox, db_dsn: str) -> None:
    world = await synced_world(sandbox, db_dsn)
    zd = sandbox.zendesk
    code, out, err = await run_bridge(world, "verify", "vehicles")
    assert (code, out.strip()) == (0, "vehicles: Zendesk matches what bridge wrote "
                                      "(read 40 record(s) in 1 page(s) of the incremental export)"), err

    records = zd.records("vehicle")
    zd.update_record("vehicle", records[0]["id"], {"custom_object_fields": {"top_speed_mph": 1}}, by_hand=True)
    zd.delete_record("vehicle", records[1]["id"])
    code, out, _ = await run_bridge(world, "verify", "vehicles")
    assert code == 1
    assert "2 difference(s) in Zendesk" in out and "edited by hand: 1" in out and "deleted by hand: 1" in out
    assert f"{records[0]['external_id']} (Zendesk {records[0]['id']}" in out and "top_speed_mph: wrote" in out
    assert "run with --repair" in out

    code, out, err = await run_bridge(world, "verify", "vehicles", "--repair")
    assert code == 0, err  # every difference rewritten
    assert "repaired: rewrote 2 record(s)" in out
    assert zd.record_by_external_id("vehicle", records[1]["external_id"]) is not None

    zd.create_record("vehicle", {"name": "stray", "external_id": "outreach:vehicles:424242"}, by_hand=True)
    sandbox.counters.reset()
    code, out, _ = await run_bridge(world, "verify", "vehicles", "--json", "--repair")
    report = json.loads(out)
    assert code == 1  # an unknown record is reported, never deleted: a person decides
    assert (report["status"], report["edited"], report["deleted"], report["unknown"]) == ("differences", 0, 0, 1)
    assert report["unknown_records"] == [{"zendesk_id": report["unknown_records"][0]["zendesk_id"],
                                          "external_id": "outreach:vehicles:424242"}]  # fmt: skip
    assert report["repaired_records"] == [] and zendesk_writes(sandbox) == 0
    assert zd.record_by_external_id("vehicle", "outreach:vehicles:424242") is not None

    code, out, _ = await run_bridge(world, "status")
    assert "last verify:" in out and "1 difference(s): 0 edited, 0 deleted, 1 unknown, 0 stale" in out

    code, _, err = await run_bridge(world, "verify", "vehicels")
    assert code == 2 and "unknown mapping(s): vehicels" in err
