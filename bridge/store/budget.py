"""The shared rate budgets and bulk-job slots in Postgres (migration 0007).

`http/budget.py` declares what it needs (`BudgetStore`, `SlotStore`) and keeps the arithmetic;
this module keeps the rows. Invariants:
- A claim is one statement: the row lock of INSERT … ON CONFLICT serialises concurrent
  claimers, so the account's clock (`tat`) only moves forward and no two claims get the same
  send times. Times are epoch seconds on the database clock, handed back as a delay (`lead`),
  so no process compares its own clock with another's.
- A pause only lengthens (`greatest`), and every later claim starts after it.
- A claim commits without waiting for its WAL flush (`synchronous_commit` off for that one
  statement): it is on the path of requests, and a flush costs milliseconds on a busy disk.
  Other claimers see it at once all the same; only a crash of the database server itself can
  lose the last fraction of a second of claims, letting that many requests go early, which
  the API's own 429 then paces.
- A job slot is taken only when free or expired, again under the row lock, so at most `cap`
  unexpired slots exist per scope; a holder renews all its slots in one statement, and an
  expired slot is never renewed, only taken again.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bridge.http.budget import Grant
from bridge.store.pool import Connection, translated

# The account's clock starts at the latest of: where it was, now, and the end of a pause (plus
# the tolerance, so the first send time is not before the pause ends). $5 replaces the database
# clock in tests. `set_config(…, true)` lasts until this statement's own commit.
CLAIM_SQL = """
INSERT INTO rate_budgets AS b (scope, tat, claimed_at)
SELECT $1, c.now + $2::int * $3::float8, c.now
  FROM (SELECT coalesce($5::float8, extract(epoch FROM clock_timestamp())) AS now,
               set_config('synchronous_commit', 'off', true) AS unflushed) AS c
ON CONFLICT (scope) DO UPDATE
   SET tat = greatest(b.tat, EXCLUDED.claimed_at, b.paused_until + $4::float8) + $2::int * $3::float8,
       claimed_at = EXCLUDED.claimed_at,
       updated_at = now()
RETURNING tat - $2::int * $3::float8 - claimed_at AS lead
"""
PAUSE_SQL = """
INSERT INTO rate_budgets AS b (scope, paused_until)
SELECT $1, coalesce($3::float8, extract(epoch FROM clock_timestamp())) + $2::float8
ON CONFLICT (scope) DO UPDATE
   SET paused_until = greatest(b.paused_until, EXCLUDED.paused_until), updated_at = now()
"""
ACQUIRE_SLOT_SQL = """
INSERT INTO job_slots AS s (scope, slot, holder, expires_at)
SELECT $1, g.slot, $2, clock_timestamp() + make_interval(secs => $4::float8)
  FROM generate_series(1, $3::int) AS g(slot)
 WHERE NOT EXISTS (SELECT 1 FROM job_slots j
                    WHERE j.scope = $1 AND j.slot = g.slot AND j.expires_at > clock_timestamp())
 ORDER BY random()
 LIMIT 1
ON CONFLICT (scope, slot) DO UPDATE
   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE s.expires_at <= clock_timestamp()
RETURNING slot
"""
RENEW_SLOTS_SQL = """
UPDATE job_slots SET expires_at = clock_timestamp() + make_interval(secs => $3::float8)
 WHERE scope = $1 AND holder = $2 AND expires_at > clock_timestamp()
"""
RELEASE_SLOT_SQL = "DELETE FROM job_slots WHERE scope = $1 AND slot = $2 AND holder = $3"
BUSY_SLOTS_SQL = "SELECT count(*) FROM job_slots WHERE scope = $1 AND expires_at > clock_timestamp()"
_RACES = 3  # tries when a concurrent claimer took the free slot this one picked


async def claim(
    conn: Connection, scope: str, count: int, interval: float, tolerance: float,
    *, now: float | None = None,
) -> Grant:
    with translated(f"claim {count} requests from the rate budget {scope!r}"):
        lead = await conn.fetchval(CLAIM_SQL, scope, count, interval, tolerance, now)
    return Grant(count, float(lead))


async def pause(conn: Connection, scope: str, seconds: float, *, now: float | None = None) -> None:
    with translated(f"pause the rate budget {scope!r}"):
        await conn.execute(PAUSE_SQL, scope, seconds, now)


async def acquire_slot(conn: Connection, scope: str, holder: str, cap: int, ttl: float) -> int | None:
    with translated(f"take a job slot of {scope!r}"):
        for _ in range(_RACES):
            slot = await conn.fetchval(ACQUIRE_SLOT_SQL, scope, holder, cap, ttl)
            if slot is not None:
                return int(slot)
            if await conn.fetchval(BUSY_SLOTS_SQL, scope) >= cap:
                return None
    return None


async def busy_slots(conn: Connection, scope: str) -> int:
    with translated(f"count the job slots of {scope!r}"):
        return int(await conn.fetchval(BUSY_SLOTS_SQL, scope))


class PgBudgetStore:
    """`http.budget.BudgetStore` over a pool: one statement per claim or pause."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def claim(self, scope: str, count: int, interval: float, tolerance: float) -> Grant:
        with translated(f"reach the database for the rate budget {scope!r}"):
            async with self._pool.acquire() as conn:
                return await claim(conn, scope, count, interval, tolerance)

    async def pause(self, scope: str, seconds: float) -> None:
        with translated(f"reach the database for the rate budget {scope!r}"):
            async with self._pool.acquire() as conn:
                await pause(conn, scope, seconds)


class PgSlotStore:
    """`http.budget.SlotStore` over a pool."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def acquire(self, scope: str, holder: str, cap: int, ttl: float) -> int | None:
        with translated(f"reach the database for the job slots of {scope!r}"):
            async with self._pool.acquire() as conn:
                return await acquire_slot(conn, scope, holder, cap, ttl)

    async def renew(self, scope: str, holder: str, ttl: float) -> None:
        with translated(f"renew the job slots of {scope!r}"):
            async with self._pool.acquire() as conn:
                await conn.execute(RENEW_SLOTS_SQL, scope, holder, ttl)

    async def release(self, scope: str, holder: str, slot: int) -> None:
        with translated(f"release job slot {slot} of {scope!r}"):
            async with self._pool.acquire() as conn:
                await conn.execute(RELEASE_SLOT_SQL, scope, slot, holder)
