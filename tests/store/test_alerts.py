"""Alert state and outbox on real Postgres: one swap wins per change, one replica per message."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from bridge.store import alerts


async def test_concurrent_swaps_of_one_change_have_exactly_one_winner(db_pool: asyncpg.Pool[Any]) -> None:
    async def swap(state: str) -> bool:
        async with db_pool.acquire() as conn, conn.transaction():
            changed, _ = await alerts.swap_state(conn, "vehicles", "failing", state)
            if changed:
                await alerts.enqueue(conn, "vehicles", f"to_{state}", {"text": state})
            return changed

    first = await asyncio.gather(*(swap("failing") for _ in range(5)))
    again = await asyncio.gather(*(swap("failing") for _ in range(5)))
    back = await asyncio.gather(*(swap("ok") for _ in range(5)))
    assert (sum(first), sum(again), sum(back)) == (1, 0, 1)
    async with db_pool.acquire() as conn:
        assert await alerts.states(conn) == {("vehicles", "failing"): "ok"}
        rows = await conn.fetch("SELECT event FROM alert_outbox ORDER BY id")
    assert [r["event"] for r in rows] == ["to_failing", "to_ok"]


async def test_a_swap_rolled_back_leaves_the_change_to_the_next_look(db_conn: Any) -> None:
    try:
        async with db_conn.transaction():
            assert (await alerts.swap_state(db_conn, "vehicles", "lag", "lagging"))[0]
            raise RuntimeError("the enqueue failed")
    except RuntimeError:
        pass
    async with db_conn.transaction():
        assert await alerts.swap_state(db_conn, "vehicles", "lag", "lagging") == (True, None)


async def test_replicas_claim_disjoint_messages_and_a_claim_expires(db_pool: asyncpg.Pool[Any]) -> None:
    async with db_pool.acquire() as conn:
        for n in range(6):
            await alerts.enqueue(conn, "vehicles", "dead_letters", {"n": n})

    async def claim() -> list[int]:
        async with db_pool.acquire() as conn:
            return [a.id for a in await alerts.claim(conn, 4, 60)]

    a, b = await asyncio.gather(claim(), claim())
    assert len(a) + len(b) == 6 and not set(a) & set(b)
    assert await claim() == []  # all claimed
    async with db_pool.acquire() as conn:
        await alerts.delivered(conn, a[0])
        await alerts.failed(conn, a[1], "the receiver answered 500", 0.0, give_up=False)
        await alerts.failed(conn, a[2], "the receiver answered 500", 0.0, give_up=True)
        again = await alerts.claim(conn, 10, 60)
        assert [m.id for m in again] == [a[1]] and again[0].attempts == 2
        assert await alerts.claim(conn, 10, 60) == []
        # The replica holding b died: its claims lapse, and the messages go to another.
        await conn.execute("UPDATE alert_outbox SET claimed_until = now() - interval '1 second' "
                           "WHERE id = ANY($1::bigint[])", b)  # fmt: skip
        expired = await alerts.claim(conn, 10, 60)
    assert sorted(m.id for m in expired) == sorted(b)


async def test_dead_letter_marks_name_the_newest_arrival(db_conn: Any) -> None:
    await db_conn.execute(
        "INSERT INTO dead_letters (mapping, source_id, error, first_failed_at) VALUES "
        "('vehicles', 'a', 'x', '2026-01-01T00:00:00Z'), ('vehicles', 'b', 'x', '2026-01-02T00:00:00Z')"
    )
    [(name, mark)] = (await alerts.dead_letter_marks(db_conn)).items()
    assert name == "vehicles" and mark.count == 2 and mark.newest.day == 2
