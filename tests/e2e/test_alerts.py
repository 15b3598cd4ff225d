"""Alerts from real `bridge worker` processes to a webhook receiver on loopback.

Two replicas watch the same database; each change of a mapping's state must reach the
receiver exactly once, signed, and a receiver that fails or hangs must not hold up a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.test_worker import dsn_of, prepare, runs_of
from tests.e2e.worker_proc import WorkerProc, query, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld
from tests.loopback import receiving

pytestmark = pytest.mark.timeout(120)

SECRET = "alert-signing-secret"
DEAD_HOLDER = "worker:gone-pod:7:1:dead"  # a replica on another host that died holding a lease
FAST_ALERTS = {
    "BRIDGE_ALERT_SECRET": SECRET,
    "BRIDGE_ALERT_CHECK_SECONDS": "0.2",
    "BRIDGE_ALERT_RETRY_SECONDS": "0.1",
    "BRIDGE_ALERT_LAG_SECONDS": "3600",
    "BRIDGE_ALERT_TIMEOUT_SECONDS": "60",  # the held attempt must outlast the runs the test waits for
}


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST; it can fail or hold requests."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)  # every attempt, in order
    fail_next: int = 0  # answer this many attempts with 500
    hold: asyncio.Event | None = None  # while set to an unset Event, requests wait on it
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append({"headers": dict(request.headers), "raw": raw, "body": json.loads(raw)})
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="receiver down")
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        return web.Response(text="ok")

    def delivered(self) -> list[dict[str, Any]]:
        """One body per alert id (retries of an alert carry the same id)."""
        seen: dict[str, dict[str, Any]] = {}
        for entry in self.received:
            seen.setdefault(entry["headers"]["X-Bridge-Alert-Id"], entry["body"])
        return list(seen.values())

    def events(self, event: str, mapping: str | None = None) -> list[dict[str, Any]]:
        return [b for b in self.delivered() if b["event"] == event and mapping in (None, b["mapping"])]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    async with receiving(found.handle) as found.url:
        yield found
        if found.hold is not None:
            found.hold.set()


def assert_signed(entry: dict[str, Any]) -> None:
    headers = entry["headers"]
    stamp = headers["X-Bridge-Timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + entry["raw"], hashlib.sha256).hexdigest()
    assert headers["X-Bridge-Signature"] == f"sha256={expected}"


async def add_dead_letters(dsn: str, mapping: str, *source_ids: str) -> None:
    """Dead letters arriving together, as one settled page adds them."""
    await query(
        dsn, "INSERT INTO dead_letters (mapping, source_id, error) "
             "SELECT $1, id, 'Zendesk refused it' FROM unnest($2::text[]) AS id",
        mapping, list(source_ids),
    )  # fmt: skip


async def test_two_workers_send_one_alert_per_change(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc], receiver: Receiver
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    env = {**FAST_ALERTS, "BRIDGE_ALERT_WEBHOOK_URL": receiver.url}
    workers += await asyncio.gather(WorkerProc.start(world, mappings, **env), WorkerProc.start(world, mappings, **env))

    async def brands_ran(status: str, times: int) -> bool:
        return (await runs_of(dsn, status))["vehicle_brands"] >= times

    await wait_for(lambda: brands_ran("succeeded", 2), "two good runs of vehicle_brands")
    # Healthy from the start: nothing to say (bar a takeover between the replicas, see below).
    assert [b for b in receiver.delivered() if b["event"] != "lease_taken_over"] == []

    # Outreach refuses the brands listing: every run fails, on both replicas, until it is lifted.
    world.sandbox.faults.add("outreach", "status", status=403, path_contains="vehicle_brands", times=-1)
    failed_before = (await runs_of(dsn, "failed"))["vehicle_brands"]
    await wait_for(lambda: brands_ran("failed", failed_before + 4), "four failed runs of vehicle_brands")
    await wait_for(lambda: _has(receiver, "mapping_failing"), "the failing alert")
    world.sandbox.faults.clear()
    ok_before = (await runs_of(dsn))["vehicle_brands"]
    await wait_for(lambda: brands_ran("succeeded", ok_before + 3), "three good runs after the fault")
    await wait_for(lambda: _has(receiver, "mapping_recovered"), "the recovered alert")

    await add_dead_letters(dsn, "vehicles", "v-poison-1", "v-poison-2")
    await wait_for(lambda: _has(receiver, "dead_letters"), "the dead-letter alert")

    # A replica on another host died holding vehicles: whoever takes the lease says so, once.
    async def plant_dead_lease() -> bool:
        rows = await query(
            dsn, "INSERT INTO leases (mapping, holder, expires_at) VALUES ('vehicles', "
                 "$1, now() + interval '300 milliseconds') ON CONFLICT (mapping) DO NOTHING RETURNING mapping",
            DEAD_HOLDER,
        )  # fmt: skip
        return bool(rows)

    await wait_for(plant_dead_lease, "a moment when nobody holds vehicles")
    await wait_for(lambda: _has(receiver, "lease_taken_over"), "the takeover alert")
    ok_now = (await runs_of(dsn))["vehicles"]
    await wait_for(lambda: _ran(dsn, "vehicles", ok_now + 3), "three more vehicles runs")
    for worker in workers:
        code, _ = await worker.stop(signal.SIGTERM)
        assert code == 0, worker.log_tail()

    # On a loaded machine a live replica may miss its 2 s lease TTL and the other take over
    # from it: a real takeover, alerted once like the planted one, and left out of the count.
    planted = [b for b in receiver.events("lease_taken_over") if b["details"]["previous_holder"] == DEAD_HOLDER]
    between_live = [b for b in receiver.events("lease_taken_over") if b not in planted]
    assert all(b["details"]["previous_holder"] in {w.holder for w in workers} for b in between_live)
    kinds = Counter((b["event"], b["mapping"]) for b in receiver.delivered() if b not in between_live)
    assert kinds == {
        ("mapping_failing", "vehicle_brands"): 1,
        ("mapping_recovered", "vehicle_brands"): 1,
        ("dead_letters", "vehicles"): 1,
        ("lease_taken_over", "vehicles"): 1,
    }, kinds
    [failing] = receiver.events("mapping_failing")
    assert failing["severity"] == "critical" and "vehicle_brands" in failing["text"]
    assert "403" in failing["details"]["error"]
    [dead] = receiver.events("dead_letters")
    assert dead["details"]["dead_letters"] == 2
    [takeover] = planted
    assert takeover["details"]["holder"] in {w.holder for w in workers}
    for entry in receiver.received:
        assert_signed(entry)
        raw = entry["raw"].decode()
        for secret in (world.seed.outreach_token, world.seed.zendesk_client_secret, SECRET, receiver.url):
            assert secret not in raw
    # Each alert went out once: the two replicas never both delivered it.
    ids = [entry["headers"]["X-Bridge-Alert-Id"] for entry in receiver.received]
    assert len(ids) == len(set(ids))


async def test_a_failing_receiver_is_retried_and_never_delays_a_run(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc], receiver: Receiver
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    receiver.fail_next = 2
    receiver.hold = asyncio.Event()
    workers.append(worker := await WorkerProc.start(world, mappings, **FAST_ALERTS,
                                                    BRIDGE_ALERT_WEBHOOK_URL=receiver.url))  # fmt: skip
    await add_dead_letters(dsn, "vehicles", "v-poison-1")
    await wait_for(_holding(receiver), "the third attempt, held")
    # While the receiver holds the alert's third attempt open, runs go on as usual.
    ok_before = sum((await runs_of(dsn)).values())
    await wait_for(lambda: _runs_total_at_least(dsn, ok_before + 4), "four more runs while delivery hangs")
    assert not receiver.hold.is_set()
    receiver.hold.set()
    attempts = [entry for entry in receiver.received if entry["body"]["event"] == "dead_letters"]
    assert len(attempts) == 3
    assert len({entry["headers"]["X-Bridge-Alert-Id"] for entry in attempts}) == 1
    await wait_for(lambda: _delivered_logged(worker), "the delivery to be recorded")
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0, worker.log_tail()
    rows = await query(dsn, "SELECT attempts, delivered_at FROM alert_outbox")
    assert [(r["attempts"], r["delivered_at"] is not None) for r in rows] == [(3, True)]
    retried = worker.events("alert_delivery_failed")
    assert [e["attempt"] for e in retried] == [1, 2]
    assert all(receiver.url not in json.dumps(e) for e in retried)  # the URL may hold a token


async def _has(receiver: Receiver, event: str) -> bool:
    return bool(receiver.events(event))


async def _ran(dsn: str, mapping: str, times: int) -> bool:
    return (await runs_of(dsn))[mapping] >= times


async def _runs_total_at_least(dsn: str, total: int) -> bool:
    return sum((await runs_of(dsn)).values()) >= total


def _holding(receiver: Receiver) -> Any:
    async def check() -> bool:
        return receiver.holding.is_set()

    return check


async def _delivered_logged(worker: WorkerProc) -> bool:
    return bool(worker.events("alert_delivered"))
