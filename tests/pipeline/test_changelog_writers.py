"""Every writer besides the page logs what it did to each record: a dead-letter retry (and so a
webhook's targeted sync: the same path), reconcile's deletes and marks, the fill pass."""

from __future__ import annotations

from collections import Counter

from bridge.pipeline.reconcile import ReconcileOptions, reconcile_mapping
from bridge.pipeline.redrive import RedriveOptions, retry_dead_letters
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_changelog import VEHICLES, changelog, fetch, ready
from tests.pipeline.test_reconcile import services, vehicles
from tests.pipeline.test_relationships import backfill

__all__ = ["ready"]  # the fixture


def actions(rows: list[object], run_id: int | None) -> Counter[str]:
    return Counter(r["action"] for r in rows if r["run_id"] == run_id)  # type: ignore[index]


async def test_a_dead_letter_retry_logs_the_record_it_wrote(ready: SandboxWorld) -> None:
    bad = ready.sandbox.outreach.ids(VEHICLES)[:2]
    for vid in bad:
        ready.sandbox.outreach.update(VEHICLES, vid, vehicle_name="x" * 5000 * 8)
    await backfill(ready)
    ready.sandbox.outreach.update(VEHICLES, bad[0], vehicle_name="Fixed")
    async with services(ready.settings) as s:
        report = await retry_dead_letters(vehicles(ready, "keep"), s, RedriveOptions(actor="tester"))
    rows = [r for r in await changelog(ready) if r["run_id"] == report.run_id]
    assert {(r["source_id"], r["action"]) for r in rows if r["action"] != "parked_link"} == {
        (str(bad[0]), "created"), (str(bad[1]), "dead_lettered"),
    }  # fmt: skip
    created = next(r for r in rows if r["action"] == "created")
    record = ready.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{bad[0]}")
    assert record is not None and created["item_result"] == str(record["id"]) and created["zendesk_job_id"]
    kept = await fetch(ready, "SELECT written_payload, source_record FROM id_map WHERE source_id = $1", str(bad[0]))
    assert kept[0]["written_payload"] is not None and kept[0]["source_record"] is not None


async def test_reconcile_logs_each_record_marked_gone_once(ready: SandboxWorld) -> None:
    await backfill(ready)
    gone = ready.sandbox.outreach.ids(VEHICLES)[3:6]
    for vid in gone:
        ready.sandbox.outreach.delete(VEHICLES, vid)
    options = ReconcileOptions(actor="tester", page_size=100)
    async with services(ready.settings) as s:
        first = await reconcile_mapping(vehicles(ready, "keep"), s, options)
        second = await reconcile_mapping(vehicles(ready, "keep"), s, options)
    rows = await changelog(ready)
    assert {r["source_id"] for r in rows if r["run_id"] == first.run_id and r["action"] == "marked_gone"} == {
        str(v) for v in gone
    }
    assert actions(rows, first.run_id) == {"marked_gone": len(gone)}
    assert actions(rows, second.run_id) == {}  # already marked: not logged again


async def test_reconcile_logs_each_record_it_deletes_with_its_job(ready: SandboxWorld) -> None:
    await backfill(ready)
    gone = ready.sandbox.outreach.ids(VEHICLES)[3:6]
    zendesk_ids = {}
    for vid in gone:
        record = ready.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{vid}")
        assert record is not None
        zendesk_ids[str(vid)] = str(record["id"])
        ready.sandbox.outreach.delete(VEHICLES, vid)
    async with services(ready.settings) as s:
        report = await reconcile_mapping(vehicles(ready, "delete"), s, ReconcileOptions(actor="tester", page_size=100))
    rows = [r for r in await changelog(ready) if r["run_id"] == report.run_id]
    assert {r["source_id"]: r["action"] for r in rows} == dict.fromkeys(zendesk_ids, "deleted")
    assert all(r["zendesk_job_id"] in ready.sandbox.zendesk.jobs.statuses for r in rows)


async def test_the_fill_pass_logs_each_link_it_fills_under_its_run(ready: SandboxWorld) -> None:
    await backfill(ready)
    parked = await fetch(ready, "SELECT * FROM parked_links WHERE mapping = $1 AND field = 'driver'", VEHICLES)
    email = parked[0]["match_value"]
    waiting = {r["source_id"] for r in parked if r["match_value"] == email}
    ready.sandbox.zendesk.add_user("Late Comer", email)
    second = await backfill(ready)
    rows = [r for r in await changelog(ready) if r["run_id"] == second[VEHICLES].run_id]
    filled = [r for r in rows if r["action"] == "filled_link"]
    assert {(r["source_id"], r["detail"]) for r in filled} == {(sid, "driver") for sid in waiting}
    assert all(r["zendesk_job_id"] in ready.sandbox.zendesk.jobs.statuses for r in filled)
    referrers = await fetch(ready, "SELECT source_id, zendesk_id FROM id_map WHERE source_id = ANY($1::text[])",
                            sorted(waiting))  # fmt: skip
    assert {r["source_id"]: r["item_result"] for r in filled} == {r["source_id"]: r["zendesk_id"] for r in referrers}
