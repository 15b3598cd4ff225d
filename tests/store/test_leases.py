"""Leases on real Postgres: one holder at a time, expiry, renewal, loss cancels the work."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import pytest

from bridge.errors import LeaseLost
from bridge.store import leases
from bridge.store.leases import LeaseKeeper


async def test_one_holder_at_a_time_and_release_frees_it(db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "a", 30)
    assert not await leases.acquire(db_conn, "vehicles", "b", 30)
    assert await leases.acquire(db_conn, "vehicles", "a", 30)  # the holder may take it again
    assert await leases.acquire(db_conn, "vehicle_brands", "b", 30)
    await leases.release(db_conn, "vehicles", "b")  # not b's: nothing happens
    assert [(lease.mapping, lease.holder) for lease in await leases.current(db_conn)] == [
        ("vehicle_brands", "b"), ("vehicles", "a"),
    ]  # fmt: skip
    await leases.release(db_conn, "vehicles", "a")
    assert await leases.acquire(db_conn, "vehicles", "b", 30)


async def test_an_expired_lease_is_taken_over(db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "dead-replica", 0.05)
    await asyncio.sleep(0.1)
    [lease] = await leases.current(db_conn, "vehicles")
    assert lease.expired
    assert await leases.acquire(db_conn, "vehicles", "live-replica", 30)
    assert await leases.renew(db_conn, "dead-replica", ["vehicles"], 30) == set()


async def test_concurrent_acquires_have_exactly_one_winner(db_pool: asyncpg.Pool[Any]) -> None:
    async def take(holder: str) -> bool:
        async with db_pool.acquire() as conn:
            return await leases.acquire(conn, "vehicles", holder, 30)

    results = await asyncio.gather(*(take(f"h{i}") for i in range(5)))
    assert sorted(results) == [False] * 4 + [True]


async def test_renewal_keeps_a_lease_past_its_ttl(db_pool: asyncpg.Pool[Any]) -> None:
    keeper = LeaseKeeper(db_pool, "worker-a", ttl=1.0)
    assert await keeper.try_acquire("vehicles")
    heartbeat = asyncio.create_task(keeper.heartbeat())
    try:
        await asyncio.sleep(1.5)
        other = LeaseKeeper(db_pool, "worker-b", ttl=1.0)
        assert not await other.try_acquire("vehicles")
        assert keeper.held == ["vehicles"]
    finally:
        heartbeat.cancel()
    await keeper.release("vehicles")
    assert await other.try_acquire("vehicles")


async def test_losing_the_lease_cancels_the_work(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    keeper = LeaseKeeper(db_pool, "worker-a", ttl=30)
    assert await keeper.try_acquire("vehicles")
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    running = asyncio.create_task(keeper.run_held("vehicles", work()))
    await asyncio.sleep(0.05)
    await db_conn.execute("UPDATE leases SET holder = 'worker-b' WHERE mapping = 'vehicles'")
    await keeper.renew_once()
    with pytest.raises(LeaseLost, match="lease on mapping 'vehicles' was lost"):
        await running
    assert cancelled.is_set() and keeper.held == []


async def test_backfill_refuses_a_mapping_held_elsewhere(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "worker:host:1:abc", 30)
    with pytest.raises(LeaseLost, match="being synced by worker:host:1:abc"):
        async with leases.hold_all(db_pool, "backfill:x", ["vehicle_brands", "vehicles"], 30):
            pytest.fail("must not run")
    # Nothing half-taken is left behind.
    assert [lease.mapping for lease in await leases.current(db_conn)] == ["vehicles"]


async def test_backfill_holds_its_mappings_until_done(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    async with leases.hold_all(db_pool, "backfill:x", ["vehicle_brands", "vehicles"], 30) as run_held:
        held = {lease.mapping: lease.holder for lease in await leases.current(db_conn)}
        assert held == {"vehicle_brands": "backfill:x", "vehicles": "backfill:x"}

        async def answer() -> int:
            return 42

        assert await run_held("vehicles", answer()) == 42
    assert await leases.current(db_conn) == []


async def test_a_dead_local_holder_is_taken_over_at_once(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    me = leases.holder_id("backfill")
    kind, host, pid, namespace, rand = me.split(":")
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()  # a pid that existed and is gone
    for holder, taken in [
        (f"backfill:{host}:{dead.pid}:{namespace}:aaa", True),
        (f"backfill:{host}:{os.getppid()}:{namespace}:bbb", False),  # alive
        (f"backfill:other-host:{dead.pid}:{namespace}:ccc", False),  # not ours to judge
        (f"backfill:{host}:{dead.pid}:1:ddd", False),  # another container's PID namespace
    ]:
        await db_conn.execute("DELETE FROM leases")
        assert await leases.acquire(db_conn, "vehicles", holder, 30)
        keeper = LeaseKeeper(db_pool, me, ttl=30)
        assert await keeper.try_acquire("vehicles") is taken, holder


async def test_backfill_waits_for_a_lease_to_come_free(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "worker:elsewhere:1:1:x", 30)

    async def worker_run_ends() -> None:
        await asyncio.sleep(0.3)
        await leases.release(db_conn, "vehicles", "worker:elsewhere:1:1:x")

    ending = asyncio.create_task(worker_run_ends())
    async with leases.hold_all(db_pool, "backfill:x", ["vehicles"], 30, wait=5):
        assert [lease.holder for lease in await leases.current(db_conn)] == ["backfill:x"]
    await ending


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def lock_lease_row(dsn: str, mapping: str) -> asyncpg.Connection[Any]:
    """Another session holding the lease row's lock, so renewals of it hang until it ends."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM leases WHERE mapping = $1 FOR UPDATE", mapping)
    return conn


async def test_renewals_that_hang_extend_nothing_and_the_lease_is_lost_after_its_ttl(
    db_pool: asyncpg.Pool[Any], db_dsn: str
) -> None:
    clock = FakeClock()
    keeper = LeaseKeeper(db_pool, "worker-a", ttl=0.6, clock=clock)  # a renewal times out after 0.2 s
    assert await keeper.try_acquire("vehicles")
    blocker = await lock_lease_row(db_dsn, "vehicles")
    try:
        clock.now = 0.3
        await keeper.renew_once()  # hangs, times out: nothing renewed, still within the TTL
        assert keeper.holds("vehicles") and keeper.held == ["vehicles"]
        clock.now = 0.61
        assert not keeper.holds("vehicles")  # one TTL after the acquire was sent, not after 0.3
        with pytest.raises(LeaseLost):
            keeper.fence("vehicles").check()
        await keeper.renew_once()
        assert keeper.held == []
    finally:
        await blocker.close()


async def test_a_renewal_counts_from_when_it_was_sent(db_pool: asyncpg.Pool[Any], db_dsn: str) -> None:
    clock = FakeClock()
    keeper = LeaseKeeper(db_pool, "worker-a", ttl=3.0, clock=clock)
    assert await keeper.try_acquire("vehicles")
    blocker = await lock_lease_row(db_dsn, "vehicles")
    clock.now = 1.0
    renewing = asyncio.create_task(keeper.renew_once())
    await asyncio.sleep(0.1)
    clock.now = 2.5  # the answer comes late
    await blocker.close()
    await renewing
    clock.now = 3.9
    assert keeper.holds("vehicles")
    clock.now = 4.0  # 1.0 + TTL: counted from the send, not from the late answer
    assert not keeper.holds("vehicles")


async def test_the_work_is_cancelled_when_the_ttl_passes_without_a_renewal(db_pool: asyncpg.Pool[Any]) -> None:
    keeper = LeaseKeeper(db_pool, "worker-a", ttl=0.3)  # no heartbeat runs: nothing renews it
    assert await keeper.try_acquire("vehicles")
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLost, match="not renewed within its TTL"):
        await asyncio.wait_for(keeper.run_held("vehicles", work()), 3)
    assert cancelled.is_set() and keeper.held == []


async def test_an_expired_lease_is_not_renewed(db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "worker-a", 0.05)
    await asyncio.sleep(0.1)
    assert await leases.renew(db_conn, "worker-a", ["vehicles"], 30) == set()


async def test_the_fence_admits_only_the_holder_of_an_unexpired_lease(db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "worker-a", 30)
    assert await leases.acquire(db_conn, "vehicle_brands", "worker-a", 0.05)
    await asyncio.sleep(0.1)
    async with db_conn.transaction():
        await leases.assert_held(db_conn, "vehicles", "worker-a")
    for mapping, holder in [("vehicles", "worker-b"), ("vehicle_brands", "worker-a"), ("prospects", "worker-a")]:
        with pytest.raises(LeaseLost, match="no longer holds the lease"):
            async with db_conn.transaction():
                await leases.assert_held(db_conn, mapping, holder)


async def test_a_takeover_waits_for_a_fenced_commit_to_end(db_pool: asyncpg.Pool[Any], db_conn: Any) -> None:
    assert await leases.acquire(db_conn, "vehicles", "worker-a", 30)
    async with db_pool.acquire() as other:
        async with db_conn.transaction():
            await leases.assert_held(db_conn, "vehicles", "worker-a")
            takeover = asyncio.create_task(leases.take_from(other, "vehicles", "worker-a", "worker-b", 30))
            done, _ = await asyncio.wait({takeover}, timeout=0.2)
            assert not done  # the commit's row lock holds the lease in place
        assert await takeover  # then the takeover goes through
    with pytest.raises(LeaseLost):
        async with db_conn.transaction():
            await leases.assert_held(db_conn, "vehicles", "worker-a")


async def test_a_holder_frozen_inside_a_fenced_commit_blocks_a_takeover_for_one_ttl_at_most(
    db_conn: Any, db_dsn: str
) -> None:
    frozen = await asyncpg.connect(db_dsn)
    try:
        assert await leases.acquire(frozen, "vehicles", "worker-a", 1.0)
        commit = frozen.transaction()
        await commit.start()
        await leases.assert_held(frozen, "vehicles", "worker-a")
        # worker-a now stops sending anything, its transaction open and the lease row locked

        async def take_over() -> bool:
            while not await leases.acquire(db_conn, "vehicles", "worker-b", 30):
                await asyncio.sleep(0.1)
            return True

        assert await asyncio.wait_for(take_over(), timeout=15)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await frozen.execute("SELECT 1")  # its session was ended: nothing it holds commits
    finally:
        frozen.terminate()
    [lease] = await leases.current(db_conn, "vehicles")
    assert lease.holder == "worker-b"


class _Heard:
    def __init__(self) -> None:
        self.taken: list[tuple[str, str]] = []
        self.lost_leases: list[str] = []

    def taken_over(self, mapping: str, previous: str) -> None:
        self.taken.append((mapping, previous))

    def lost(self, mapping: str) -> None:
        self.lost_leases.append(mapping)


async def test_a_takeover_is_heard_once_and_a_free_or_own_lease_is_not(db_pool: asyncpg.Pool[Any]) -> None:
    heard = _Heard()
    keeper = LeaseKeeper(db_pool, "worker:b", 30, observer=heard)
    assert await keeper.try_acquire("vehicle_brands")  # free
    assert await keeper.try_acquire("vehicle_brands")  # already ours
    async with db_pool.acquire() as conn:
        assert await leases.acquire(conn, "vehicles", "worker:a", 0.05)
    await asyncio.sleep(0.1)  # let worker:a's lease expire (its holder "died")
    rivals = [LeaseKeeper(db_pool, f"worker:{n}", 30, observer=heard) for n in "cde"]
    won = await asyncio.gather(*(k.try_acquire("vehicles") for k in [keeper, *rivals]))
    assert sum(won) == 1
    assert heard.taken == [("vehicles", "worker:a")]
    assert heard.lost_leases == []
