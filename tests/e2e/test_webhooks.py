"""Webhooks end to end: a worker process takes a signed delivery on its port, and the change
reaches Zendesk long before the next scheduled run; a delivery survives a kill."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import aiohttp

from bridge.webhooks import intake
from tests.e2e.test_backfill_cli import run_bridge
from tests.e2e.test_worker import dsn_of, prepare
from tests.e2e.worker_proc import PROSPECTS_YAML, WorkerProc, query, wait_for
from tests.fixtures_sandbox import REPO, SandboxWorld

SECRET = "e2e-webhook-secret"


def prospects_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prospects.yaml").write_text(PROSPECTS_YAML.replace("EVERY", "1h"))
    return folder


async def post_delivery(worker: WorkerProc, source_id: int, secret: str = SECRET) -> int:
    body = json.dumps({
        "data": {"type": "prospect", "id": source_id, "attributes": {"title": "ignored"}},
        "meta": {"eventName": "prospect.updated", "deliveredAt": "2026-11-28T10:00:00Z"},
    }).encode()  # fmt: skip
    headers = {"Content-Type": "application/vnd.api+json",
               intake.SIGNATURE_HEADER: intake.signature(secret.encode(), body)}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{worker.port}{intake.PATH}", data=body, headers=headers) as r:
            return r.status


def zendesk_title(world: SandboxWorld, source_id: int) -> str | None:
    for record in world.sandbox.zendesk.records("prospect_copy"):
        if record["external_id"] == f"outreach:prospects:{source_id}":
            return str(record["custom_object_fields"].get("title"))
    return None


async def test_a_signed_delivery_reaches_zendesk_long_before_the_next_scheduled_run(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = prospects_only(tmp_path / "mappings")
    await prepare(world, mappings)
    dsn = dsn_of(world)
    workers.append(worker := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))

    async def first_run_done() -> bool:
        return bool(await query(dsn, "SELECT 1 FROM runs WHERE kind = 'worker' AND status = 'succeeded'"))

    await wait_for(first_run_done, "the first scheduled run")
    pid = world.sandbox.outreach.ids("prospect")[3]
    world.sandbox.outreach.update("prospect", pid, title="Head of Fleet")
    assert await post_delivery(worker, pid, secret="not-the-secret") == 401
    assert await post_delivery(worker, pid) == 202

    async def handled() -> bool:
        return bool(await query(dsn, "SELECT 1 FROM webhook_inbox WHERE handled_at IS NOT NULL"))

    await wait_for(handled, "the delivery to be handled", timeout=20)
    assert zendesk_title(world, pid) == "Head of Fleet"
    [run] = await query(dsn, "SELECT status, written FROM runs WHERE kind = 'webhook'")
    assert (run["status"], run["written"]) == ("succeeded", 1)
    _, metrics = await worker.get("/metrics")
    assert 'bridge_change_to_write_seconds_count{mapping="prospects",trigger="webhook"} 1.0' in metrics
    assert 'bridge_change_to_write_seconds_count{mapping="prospects",trigger="poll"}' in metrics  # first run
    code, out, err = await run_bridge(world, "status", "--json", env={
        "BRIDGE_MAPPINGS": str(mappings), "OUTREACH_WEBHOOK_SECRET": SECRET})  # fmt: skip
    assert code == 0, err
    [row] = json.loads(out)
    assert (row["trigger"], row["change_to_write_by"]) == ("webhook + poll", "webhook")
    assert 0 <= row["change_to_write_seconds"] < 20
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0, worker.log_tail()


async def test_a_stored_delivery_survives_a_kill_before_it_is_handled(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = prospects_only(tmp_path / "mappings")
    await prepare(world, mappings)
    dsn = dsn_of(world)
    await query(dsn, "INSERT INTO leases (mapping, holder, expires_at) "
                     "VALUES ('prospects', 'elsewhere', now() + interval '1 hour')")  # fmt: skip
    workers.append(first := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))
    pid = world.sandbox.outreach.ids("prospect")[0]
    assert await post_delivery(first, pid) == 202
    await first.kill()
    [row] = await query(dsn, "SELECT handled_at FROM webhook_inbox")
    assert row["handled_at"] is None
    await query(dsn, "DELETE FROM leases WHERE holder = 'elsewhere'")
    workers.append(second := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))

    async def handled() -> bool:
        rows = await query(dsn, "SELECT 1 FROM webhook_inbox WHERE handled_at IS NOT NULL")
        return bool(rows)

    await wait_for(handled, "the second worker to handle the stored delivery", timeout=30)
    runs = await query(dsn, "SELECT actor FROM runs WHERE kind = 'webhook' AND status = 'succeeded'")
    assert [r["actor"] for r in runs] == [second.holder]
    assert zendesk_title(world, pid) is not None
    code, _ = await second.stop(signal.SIGTERM)
    assert code == 0, second.log_tail()


async def test_ensure_then_a_change_in_outreach_reaches_zendesk_through_the_sandbox_webhook(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = prospects_only(tmp_path / "mappings")
    (mappings / "vehicles.yaml").write_text((REPO / "mappings" / "vehicles.yaml").read_text())
    (mappings / "vehicle_brands.yaml").write_text((REPO / "mappings" / "vehicle_brands.yaml").read_text())
    await prepare(world, mappings)
    dsn = dsn_of(world)
    workers.append(worker := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))
    env = {"BRIDGE_MAPPINGS": str(mappings), "OUTREACH_WEBHOOK_SECRET": SECRET,
           "BRIDGE_PUBLIC_URL": f"http://127.0.0.1:{worker.port}"}  # fmt: skip
    code, out, err = await run_bridge(world, "webhooks", "ensure", env=env)
    assert code == 0, err
    [hook] = world.sandbox.outreach.webhooks.hooks.values()
    assert (hook.resource, hook.url, hook.secret) == ("prospect", f"http://127.0.0.1:{worker.port}/webhooks/outreach", SECRET)
    assert out.strip() == f"prospect: created webhook {hook.id}"  # vehicles are a custom object: no webhook
    code, out, _ = await run_bridge(world, "webhooks", "ensure", env=env)
    assert (code, out.strip()) == (0, f"prospect: webhook {hook.id} up to date, secret re-sent")
    assert len(world.sandbox.outreach.webhooks.hooks) == 1

    async def first_run_done() -> bool:
        return bool(await query(dsn, "SELECT 1 FROM runs WHERE mapping = 'prospects' AND kind = 'worker' AND status = 'succeeded'"))

    await wait_for(first_run_done, "the first scheduled prospects run")
    pid = world.sandbox.outreach.ids("prospect")[5]
    world.sandbox.outreach.update("prospect", pid, title="VP Fleet")

    async def arrived() -> bool:
        return zendesk_title(world, pid) == "VP Fleet"

    await wait_for(arrived, "the change to reach Zendesk through the webhook", timeout=20)
    assert [s.status for s in world.sandbox.outreach.webhooks.sent] == [202]
    code, out, err = await run_bridge(world, "webhooks", "status", "--json", env=env)
    assert code == 0, err
    [row] = json.loads(out)
    assert row["resource"] == "prospect" and row["active"] and row["lastDelivery"] is not None
    code, out, _ = await run_bridge(world, "webhooks", "remove", env=env)
    assert code == 0 and world.sandbox.outreach.webhooks.hooks == {}


async def test_ensure_says_which_variable_is_missing(world: SandboxWorld) -> None:
    code, _, err = await run_bridge(world, "webhooks", "ensure", env={"OUTREACH_WEBHOOK_SECRET": SECRET})
    assert code == 2 and "BRIDGE_PUBLIC_URL is not set" in err
    code, _, err = await run_bridge(
        world, "webhooks", "ensure", env={"OUTREACH_WEBHOOK_SECRET": SECRET, "BRIDGE_PUBLIC_URL": "http://bridge.example.com"}
    )
    assert code == 2 and "must be an https URL" in err
    code, _, err = await run_bridge(world, "webhooks", "ensure", env={"BRIDGE_PUBLIC_URL": "https://bridge.example.com"})
    assert code == 2 and "OUTREACH_WEBHOOK_SECRET is not set" in err and SECRET not in err


async def test_the_web_process_stores_deliveries_for_the_workers_and_stops_cleanly(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = prospects_only(tmp_path / "mappings")
    await prepare(world, mappings)
    dsn = dsn_of(world)
    workers.append(web := await WorkerProc.start(world, mappings, "web", OUTREACH_WEBHOOK_SECRET=SECRET))
    assert (await web.get("/readyz"))[0] == 200
    pid = world.sandbox.outreach.ids("prospect")[2]
    assert await post_delivery(web, pid) == 202
    assert await post_delivery(web, pid, secret="wrong") == 401
    [row] = await query(dsn, "SELECT source_id, handled_at FROM webhook_inbox")
    assert (row["source_id"], row["handled_at"]) == (str(pid), None)  # the web process syncs nothing
    assert world.sandbox.counters.count("outreach") == 0
    code, _ = await web.stop(signal.SIGTERM)
    assert code == 0, web.log_tail()
    workers.append(worker := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))

    async def handled() -> bool:
        return bool(await query(dsn, "SELECT 1 FROM webhook_inbox WHERE handled_at IS NOT NULL"))

    await wait_for(handled, "a worker to drain what the web process stored")
    await worker.stop(signal.SIGTERM)


async def test_the_web_process_refuses_to_start_without_a_secret(world: SandboxWorld) -> None:
    code, _, err = await run_bridge(world, "web", env={"OUTREACH_WEBHOOK_SECRET": ""})
    assert code == 2 and "OUTREACH_WEBHOOK_SECRET is not set" in err


async def test_a_webhook_never_writes_beside_the_scheduled_run_of_its_mapping(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = prospects_only(tmp_path / "mappings")
    await prepare(world, mappings)
    dsn = dsn_of(world)
    jobs = world.sandbox.zendesk.jobs
    jobs.hold(lambda key, action, items: key == "prospect_copy")  # the scheduled run's first job waits
    workers.append(worker := await WorkerProc.start(world, mappings, OUTREACH_WEBHOOK_SECRET=SECRET))

    async def scheduled_job_held() -> bool:
        return bool(jobs.held())

    await wait_for(scheduled_job_held, "the scheduled run's job to be in flight")
    [held] = jobs.held()
    pid = int(jobs._pending[held][2][0]["external_id"].rsplit(":", 1)[1])
    world.sandbox.outreach.update("prospect", pid, title="Night Shift Lead")
    assert await post_delivery(worker, pid) == 202

    async def handed_back() -> bool:  # the consumer found the mapping busy and gave the row back
        rows = await query(dsn, "SELECT 1 FROM webhook_inbox WHERE next_attempt_at > received_at + interval '1 second'")
        return bool(rows)

    await wait_for(handed_back, "the consumer to find the mapping busy")

    def jobs_carrying(pid: int) -> list[str]:
        ext = f"outreach:prospects:{pid}"
        return [job for job, (key, _, items) in jobs._pending.items()
                if key == "prospect_copy" and any(i.get("external_id") == ext for i in items)]  # fmt: skip

    assert jobs_carrying(pid) == [held]  # nothing else wrote the record while the run's job was in flight
    ext = f"outreach:prospects:{pid}"
    assert world.sandbox.counters.writes_of("prospect_copy", ext) == []
    jobs.release()

    async def handled() -> bool:
        return bool(await query(dsn, "SELECT 1 FROM webhook_inbox WHERE handled_at IS NOT NULL"))

    await wait_for(handled, "the delivery to be handled after the scheduled run")
    assert zendesk_title(world, pid) == "Night Shift Lead"
    writes = world.sandbox.counters.writes_of("prospect_copy", ext)
    assert [w.fields.get("title") for w in writes][-1] == "Night Shift Lead"
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0, worker.log_tail()
