"""The inbox consumer against the sandbox over loopback and a real Postgres: coalesced
targeted syncs, on_delete for destroyed records, retries, and deliveries never lost."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import schema, wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import sync_order
from bridge.pipeline.services import Services
from bridge.store import inbox
from bridge.store.inbox import Delivery
from bridge.store.leases import LeaseKeeper
from bridge.webhooks.consumer import ConsumerOptions, InboxConsumer, Work
from tests.e2e.worker_proc import PROSPECTS_YAML
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_reconcile import fetch

_serial = itertools.count()


@pytest.fixture
async def setup(world: SandboxWorld, tmp_path: Path) -> AsyncIterator[tuple[dict[str, Mapping], Services]]:
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "prospects.yaml").write_text(PROSPECTS_YAML.replace("EVERY", "1h") + "on_delete: delete\n")
    mappings = load_mappings(folder)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))
        yield mappings, s


def runner(keeper: LeaseKeeper) -> Any:
    async def run(name: str, work: Work) -> bool:
        if not await keeper.try_acquire(name):
            return False
        try:
            await keeper.run_held(name, work(keeper.holder))
        finally:
            await keeper.release(name)
        return True

    return run


async def deliver(services: Services, source_id: int, action: str = "updated") -> None:
    body = f"{source_id}:{action}:{next(_serial)}".encode()
    delivery = Delivery(hashlib.sha256(body).digest(), "prospect", action, str(source_id),
                        f"prospect.{action}", None)  # fmt: skip
    async with services.pool.acquire() as conn:
        await inbox.add(conn, delivery)


def zendesk_prospects(world: SandboxWorld) -> dict[str, dict[str, Any]]:
    return {r["external_id"]: r for r in world.sandbox.zendesk.records("prospect_copy")}


def consumer_for(mappings: dict[str, Mapping], services: Services, **options: Any) -> InboxConsumer:
    keeper = LeaseKeeper(services.pool, "consumer-test", ttl=30)
    return InboxConsumer(mappings, services, runner(keeper), ConsumerOptions(actor="consumer-test", **options))


async def test_a_burst_of_5000_deliveries_for_1000_ids_costs_a_few_outreach_requests(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    out = world.sandbox.outreach
    ids = [out.put("prospect", {"firstName": f"F{i}", "lastName": "L", "title": "t"}) for i in range(980)]
    ids += out.ids("prospect")[:20]
    for _ in range(5):
        for source_id in ids:
            await deliver(services, source_id)
    before = world.sandbox.counters.count("outreach")
    consumer = consumer_for(mappings, services, batch=5000)
    assert await consumer.tick() == 5000
    assert world.sandbox.counters.count("outreach") - before <= 4
    expected = {f"outreach:prospects:{i}" for i in out.ids("prospect")}
    assert set(zendesk_prospects(world)) == expected
    pending = await fetch(world, "SELECT count(*) FROM webhook_inbox WHERE handled_at IS NULL")
    assert pending[0][0] == 0
    [run] = await fetch(world, "SELECT kind, status, written FROM runs WHERE mapping = 'prospects'")
    assert tuple(run) == ("webhook", "succeeded", len(expected))
    checkpoints = await fetch(world, "SELECT 1 FROM checkpoints WHERE mapping = 'prospects'")
    assert checkpoints == []  # a targeted sync moves no checkpoint


async def test_the_record_is_fetched_afresh_not_taken_from_the_delivery(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    pid = world.sandbox.outreach.ids("prospect")[0]
    world.sandbox.outreach.update("prospect", pid, title="Chief of Fleet")
    await deliver(services, pid)
    await consumer_for(mappings, services).tick()
    assert zendesk_prospects(world)[f"outreach:prospects:{pid}"]["custom_object_fields"]["title"] == "Chief of Fleet"


async def test_a_destroyed_event_on_a_delete_mapping_removes_exactly_that_record(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    out = world.sandbox.outreach
    ids = out.ids("prospect")[:3]
    for pid in ids:
        await deliver(services, pid)
    consumer = consumer_for(mappings, services)
    await consumer.tick()
    assert len(zendesk_prospects(world)) == 3
    out.delete("prospect", ids[1])
    await deliver(services, ids[1], "destroyed")
    await deliver(services, ids[2], "destroyed")  # a destroyed event for a record still live
    await consumer.tick()
    assert set(zendesk_prospects(world)) == {f"outreach:prospects:{ids[0]}", f"outreach:prospects:{ids[2]}"}
    mapped = await fetch(world, "SELECT source_id FROM id_map WHERE mapping = 'prospects' ORDER BY 1")
    assert sorted(r[0] for r in mapped) == sorted([str(ids[0]), str(ids[2])])
    audit = await fetch(world, "SELECT status, deleted FROM runs WHERE kind = 'reconcile'")
    assert [tuple(r) for r in audit] == [("succeeded", 1)]


async def test_a_failure_keeps_the_deliveries_with_their_error_and_a_backoff(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    pid = world.sandbox.outreach.ids("prospect")[0]
    await deliver(services, pid)
    world.sandbox.faults.add("outreach", "status", status=400, path_contains="/api/v2/prospects", times=1)
    consumer = consumer_for(mappings, services, backoff=timedelta(seconds=60))
    assert await consumer.tick() == 0
    [row] = await fetch(world, "SELECT attempts, error, next_attempt_at > now() + interval '30 s', handled_at FROM webhook_inbox")
    assert row[0] == 1 and "400" in row[1] and row[2] is True and row[3] is None
    await fetch(world, "UPDATE webhook_inbox SET next_attempt_at = now()")
    assert await consumer.tick() == 1
    assert f"outreach:prospects:{pid}" in zendesk_prospects(world)


async def test_a_mapping_held_elsewhere_hands_the_deliveries_back_untouched(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    other = LeaseKeeper(services.pool, "scheduled-run-elsewhere", ttl=30)
    assert await other.try_acquire("prospects")
    await deliver(services, world.sandbox.outreach.ids("prospect")[0])
    assert await consumer_for(mappings, services).tick() == 0
    [row] = await fetch(world, "SELECT attempts, error, handled_at FROM webhook_inbox")
    assert tuple(row) == (0, None, None)
    assert zendesk_prospects(world) == {}


async def test_deliveries_claimed_by_a_consumer_that_died_are_taken_up_after_its_hold(
    world: SandboxWorld, setup: tuple[dict[str, Mapping], Services]
) -> None:
    mappings, services = setup
    pid = world.sandbox.outreach.ids("prospect")[0]
    await deliver(services, pid)
    async with services.pool.acquire() as conn:  # a consumer claims, then is killed
        assert len(await inbox.claim(conn, ["prospect"], 100, timedelta(seconds=1))) == 1
    consumer = consumer_for(mappings, services)
    assert await consumer.tick() == 0  # still held by the dead claim
    async with asyncio.timeout(10):
        while await consumer.tick() == 0:
            await asyncio.sleep(0.2)
    assert f"outreach:prospects:{pid}" in zendesk_prospects(world)


def test_deliveries_go_to_the_mappings_of_their_resource_and_never_to_custom_objects(tmp_path: Path) -> None:
    from bridge.webhooks.consumer import readers

    for name, (source, custom) in {
        "people": ("prospects", False), "more_people": ("prospects", False),
        "addresses": ("emailAddresses", False), "deals": ("opportunities", False),
        "vehicles": ("vehicles", True),
    }.items():  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(
            f"source: {{type: {source}, custom_object: {str(custom).lower()}}}\n"
            f"target: {{object: {name}, name: x}}\nfields: {{x: x}}\n"
        )
    found = {resource: sorted(m.name for m in ms) for resource, ms in readers(load_mappings(tmp_path)).items()}
    assert found == {"prospect": ["more_people", "people"], "emailAddress": ["addresses"], "opportunity": ["deals"]}


async def test_a_destroyed_event_for_a_record_only_outside_the_filter_deletes_nothing(
    world: SandboxWorld, tmp_path: Path
) -> None:
    folder = tmp_path / "filtered"
    folder.mkdir()
    yaml = PROSPECTS_YAML.replace("EVERY", "1h").replace(
        "source: {type: prospects, custom_object: false}",
        "source: {type: prospects, custom_object: false, filter: {title: Driver}}",
    )
    (folder / "prospects.yaml").write_text(yaml + "on_delete: delete\n")
    mappings = load_mappings(folder)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as services:
        await schema.ensure_objects(services.zendesk, mappings, sync_order(mappings))
        pid = world.sandbox.outreach.ids("prospect")[0]
        await deliver(services, pid)
        consumer = consumer_for(mappings, services)
        await consumer.tick()
        assert f"outreach:prospects:{pid}" in zendesk_prospects(world)
        world.sandbox.outreach.update("prospect", pid, title="Boss")  # alive, but the filter drops it
        await deliver(services, pid, "destroyed")  # a forged or mistaken event
        await consumer.tick()
        assert f"outreach:prospects:{pid}" in zendesk_prospects(world)
        assert await fetch(world, "SELECT 1 FROM runs WHERE kind = 'reconcile'") == []
