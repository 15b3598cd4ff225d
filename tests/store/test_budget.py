"""The shared rate budget and job slots on real Postgres: no window over the limit, whoever
claims in whatever order; pauses bind every claimer; a dead holder's slots come back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.http.budget import BudgetPolicy, SharedBudget, SharedSlots, send_offsets
from bridge.sandbox.counters import busiest_window
from bridge.store import budget
from bridge.store.budget import PgBudgetStore, PgSlotStore

policies = st.builds(
    lambda limit, window, share, validity: BudgetPolicy(
        "p", limit, window, burst=int((limit - 2) * share), validity=validity, batch=10
    ),
    limit=st.integers(3, 80),
    window=st.sampled_from([1.0, 2.0, 10.0, 60.0]),
    share=st.floats(0.0, 0.5),
    validity=st.sampled_from([0.1, 0.5, 1.0]),
)
# one claim: (gap since the previous claim as a share of the window, how many, a pause first?)
claims = st.lists(
    st.tuples(st.one_of(st.just(0.0), st.floats(0.0, 0.5)), st.integers(1, 10), st.one_of(st.none(), st.floats(0.0, 2.0))),
    min_size=1, max_size=60,
)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(policy=policies, steps=claims, data=st.data())
def test_claimers_in_any_interleaving_never_exceed_the_budget_in_any_window(
    db_dsn: str, policy: BudgetPolicy, steps: list[tuple[float, int, float | None]], data: st.DataObject
) -> None:
    """Each claim may come from any process; each send time is used at any moment of its
    validity. Every window holds at most `limit` sends, and none precedes a stored pause."""

    async def scenario() -> None:
        conn = await asyncpg.connect(db_dsn)
        scope, now, paused_until, sends = str(uuid.uuid4()), 1_700_000_000.0, 0.0, []
        try:
            for gap, count, pause in steps:
                now += gap * policy.window
                if pause is not None:
                    await budget.pause(conn, scope, pause * policy.window, now=now)
                    paused_until = max(paused_until, now + pause * policy.window)
                grant = await budget.claim(conn, scope, count, policy.interval, policy.tolerance, now=now)
                for offset in send_offsets(grant, policy.interval, policy.tolerance):
                    assert now + offset >= paused_until - 1e-6
                    late = data.draw(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))) * policy.validity
                    sends.append(now + offset + late)
        finally:
            await conn.close()
        assert busiest_window(sends, policy.window) <= policy.limit

    asyncio.run(scenario())


def test_the_window_check_can_fail() -> None:
    """Spacing by window / limit alone (10 a window of 10 s: one a second), with the first
    send late by half its validity, puts 11 in one window: the checker sees it."""
    naive = [0.5] + [float(i) for i in range(1, 11)]
    assert busiest_window(naive, 10.0) == 11


async def test_two_processes_claiming_at_once_share_one_clock(db_pool: asyncpg.Pool[Any]) -> None:
    policy = BudgetPolicy("zendesk:acme", limit=600, window=60.0, burst=0)
    store = PgBudgetStore(db_pool)
    first, second = SharedBudget(store, policy), SharedBudget(store, policy)
    sent: list[float] = []

    async def send(budget: SharedBudget) -> None:
        await budget.acquire()
        sent.append(time.monotonic())

    await asyncio.gather(*(send(b) for b in (first, second) for _ in range(10)))
    await first.aclose()
    await second.aclose()
    assert first.claims + second.claims <= 8  # batches (and one claimed ahead each), not one per request
    assert max(sent) - min(sent) > 19 * policy.interval - 0.5  # 20 send times, one interval apart


async def test_a_claim_commits_without_waiting_for_the_flush_and_leaves_the_connection_as_it_was(
    db_conn: Any,
) -> None:
    await db_conn.execute("SET synchronous_commit = on")  # the test server's default may be off
    async with db_conn.transaction():
        await budget.claim(db_conn, "z", 1, 0.1, 0.0)
        assert await db_conn.fetchval("SHOW synchronous_commit") == "off"  # for its own commit
    assert await db_conn.fetchval("SHOW synchronous_commit") == "on"
    await budget.claim(db_conn, "z", 1, 0.1, 0.0)
    assert await db_conn.fetchval("SHOW synchronous_commit") == "on"


async def test_a_pause_only_lengthens(db_conn: Any) -> None:
    await budget.pause(db_conn, "z", 10.0, now=100.0)
    await budget.pause(db_conn, "z", 1.0, now=101.0)
    assert await db_conn.fetchval("SELECT paused_until FROM rate_budgets WHERE scope = 'z'") == 110.0
    grant = await budget.claim(db_conn, "z", 1, 0.1, 0.0, now=102.0)
    assert grant.lead == 8.0


async def test_job_slots_are_capped_across_holders_and_freed_on_release(db_conn: Any) -> None:
    a1 = await budget.acquire_slot(db_conn, "z", "a", 3, 30)
    b1 = await budget.acquire_slot(db_conn, "z", "b", 3, 30)
    a2 = await budget.acquire_slot(db_conn, "z", "a", 3, 30)
    assert sorted([a1, b1, a2]) == [1, 2, 3]  # type: ignore[type-var]
    assert await budget.acquire_slot(db_conn, "z", "c", 3, 30) is None
    assert await budget.acquire_slot(db_conn, "other", "c", 3, 30) is not None  # per account
    await db_conn.execute(budget.RELEASE_SLOT_SQL, "z", a1, "b")  # not b's: nothing happens
    assert await budget.acquire_slot(db_conn, "z", "c", 3, 30) is None
    await db_conn.execute(budget.RELEASE_SLOT_SQL, "z", b1, "b")
    assert await budget.acquire_slot(db_conn, "z", "c", 3, 30) == b1
    assert await budget.busy_slots(db_conn, "z") == 3


async def test_concurrent_takers_never_share_a_slot(db_pool: asyncpg.Pool[Any]) -> None:
    store = PgSlotStore(db_pool)
    got = await asyncio.gather(*(store.acquire("z", f"h{i}", 5, 30) for i in range(9)))
    slots = [slot for slot in got if slot is not None]
    assert sorted(slots) == [1, 2, 3, 4, 5]


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_a_process_that_dies_holding_slots_frees_them_at_expiry(db_pool: asyncpg.Pool[Any]) -> None:
    store = PgSlotStore(db_pool)
    dead = SharedSlots(store, "zendesk:acme", "dead", cap=2, ttl=1.5)
    await dead.__aenter__()
    await dead.__aenter__()
    await dead.aclose()  # it dies: no renewal, no release
    assert await store.acquire("zendesk:acme", "alive", 2, 30) is None  # not before the expiry
    alive = SharedSlots(store, "zendesk:acme", "alive", cap=2, ttl=30.0)
    await asyncio.wait_for(alive.__aenter__(), timeout=10)  # after it, the slots are free again
    assert alive.held == 1
    await alive.__aexit__(None, None, None)
    await alive.aclose()
    async with db_pool.acquire() as conn:
        assert await budget.busy_slots(conn, "zendesk:acme") == 0


async def test_renewal_keeps_a_running_jobs_slot(db_pool: asyncpg.Pool[Any]) -> None:
    store = PgSlotStore(db_pool)
    holder = SharedSlots(store, "zendesk:acme", "live", cap=1, ttl=0.6)
    expiry = "SELECT expires_at FROM job_slots WHERE holder = 'live'"
    async with holder:
        first = await db_pool.fetchval(expiry)

        async def renewed_twice() -> bool:
            return bool((await db_pool.fetchval(expiry) - first).total_seconds() > 0.3)

        await wait_until(renewed_twice)  # the slot outlived its first TTL through renewals
        assert await store.acquire("zendesk:acme", "other", 1, 30) is None
    await holder.aclose()
    assert await store.acquire("zendesk:acme", "other", 1, 30) == 1


async def test_a_retry_after_seen_by_one_process_holds_the_other(db_pool: asyncpg.Pool[Any]) -> None:
    policy = BudgetPolicy("zendesk:acme", limit=700, window=60.0, burst=14)
    store = PgBudgetStore(db_pool)
    seen = SharedBudget(store, policy)
    seen.pause_for(5.0)
    await seen.aclose()  # the pause is in the shared row
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    other = SharedBudget(store, policy, sleep=sleep, clock=lambda: 0.0)
    await other.acquire()
    assert sum(slept) > 4.5  # its first send time comes after the pause
