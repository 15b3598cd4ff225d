"""`bridge backfill --dry-run --diff` as a user runs it, after a real backfill."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.test_backfill_cli import run_bridge
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_preview import small, snapshot, synced  # noqa: F401  (fixtures)


async def test_the_diff_prints_the_changed_records_and_a_table_and_writes_nothing(synced: SandboxWorld) -> None:  # noqa: F811
    world = synced
    ids = world.sandbox.outreach.ids("vehicles")
    for vid in ids[:3]:
        world.sandbox.outreach.update("vehicles", vid, color="Purple")
    state = await snapshot(world)

    code, out, err = await run_bridge(world, "backfill", "--dry-run", "--diff", "--limit", "2")

    assert code == 0, err
    shown = [line for line in out.splitlines() if line.startswith("vehicles update ")]
    assert [line.split()[2] for line in shown] == [str(v) for v in ids[:2]]
    assert out.count("color: ") == 2 and '→ "purple"' in out
    assert "vehicles: … and 1 more updates" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("vehicle")}
    read, create, update, unchanged, dead = map(int, rows["vehicles"][-5:])
    assert (create, update, dead) == (0, 3, 0) and read == update + unchanged  # the overlap is read too
    assert world.sandbox.counters.count("zendesk") == 0
    assert await snapshot(world) == state


async def test_the_json_diff_parses_line_by_line_for_one_mapping_with_full_and_the_dry_run_still_counts(
    synced: SandboxWorld,  # noqa: F811
) -> None:
    world = synced
    brand = world.sandbox.outreach.ids("vehicle_brands")[1]
    world.sandbox.outreach.update("vehicle_brands", brand, founded=1800)

    code, out, err = await run_bridge(world, "backfill", "vehicle_brands", "--full", "--dry-run", "--diff", "--json")

    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    records = [line for line in lines if line["type"] == "record"]
    assert {r["mapping"] for r in records} == {"vehicle_brands"}
    assert len(records) == len(world.sandbox.outreach.ids("vehicle_brands"))
    [update] = [r for r in records if r["action"] == "update"]
    assert update["source_id"] == str(brand)
    assert [(c["field"], c["to"]) for c in update["changes"]] == [("founded", 1800)]
    assert lines[-1]["type"] == "summary" and lines[-1]["update"] == 1
    assert world.sandbox.counters.count("zendesk") == 0

    code, out, err = await run_bridge(world, "backfill", "vehicle_brands", "--dry-run")
    assert code == 0, err
    assert "vehicle_brands: succeeded; fetched " in out and ", would write 1, " in out


async def test_a_reader_that_stops_early_ends_the_preview_without_a_traceback(synced: SandboxWorld) -> None:  # noqa: F811
    """`bridge backfill --dry-run --diff --json | head -1`: the reader goes away after one line."""
    from tests.e2e.test_backfill_cli import start_bridge

    proc = await start_bridge(synced, "backfill", "--full", "--dry-run", "--diff", "--json")
    assert proc.stdout is not None and proc.stderr is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert json.loads(first)["type"] == "record"
    proc.stdout.feed_eof()
    transport = proc._transport  # type: ignore[attr-defined]
    transport.get_pipe_transport(1).close()  # as `head` does once it has its line
    err = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    code = await proc.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert code == 3 and "standard output was closed" in err
