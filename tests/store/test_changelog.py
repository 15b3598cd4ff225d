from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bridge.store import changelog
from bridge.store.changelog import Change
from bridge.store.pool import Connection

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def test_a_page_of_changes_is_one_statement_and_reads_back_newest_first(db_conn: Connection) -> None:
    await changelog.add_many(
        db_conn, "vehicles", 7,
        [
            Change("1", "created", T0, "job-1", "z1"),
            Change("2", "dead_lettered", T0, "job-1", "RecordInvalid: speed"),
            Change("1", "parked_link", T0, detail="driver"),
        ],
    )
    await changelog.add_many(db_conn, "vehicles", 8, [Change("1", "skipped_unchanged", T0 + timedelta(1))])
    await changelog.add_many(db_conn, "other", 9, [Change("1", "deleted")])
    entries = await changelog.for_record(db_conn, "vehicles", "1")
    assert [(e.run_id, e.change.action) for e in entries] == [
        (8, "skipped_unchanged"), (7, "parked_link"), (7, "created"),
    ]
    assert entries[2].change == Change("1", "created", T0, "job-1", "z1")
    assert [e.change.action for e in await changelog.for_record(db_conn, "vehicles", "1", limit=1)] == [
        "skipped_unchanged"
    ]
    last = await changelog.last_read(db_conn, "vehicles", "1")
    assert last is not None and last.change.source_updated_at == T0 + timedelta(1)
    assert await changelog.last_read(db_conn, "other", "1") is None  # a delete reads nothing


async def test_an_unknown_action_is_refused_by_the_database(db_conn: Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await changelog.add_many(db_conn, "m", 1, [Change("1", "exploded")])  # type: ignore[arg-type]


async def test_prune_deletes_by_age_in_batches(db_conn: Connection) -> None:
    await changelog.add_many(db_conn, "m", 1, [Change(str(i), "updated") for i in range(25)])
    await db_conn.execute("UPDATE record_changelog SET at = now() - interval '40 days' WHERE source_id::int < 20")
    cutoff = datetime.now(UTC) - changelog.DEFAULT_RETENTION
    assert await changelog.prune(db_conn, cutoff, batch=7) == 20
    assert await db_conn.fetchval("SELECT count(*) FROM record_changelog") == 5
    assert await changelog.prune(db_conn, cutoff, batch=7) == 0


async def test_prune_never_waits_for_a_page_commit_in_progress(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as old:
        await changelog.add_many(old, "m", 1, [Change("old", "updated")])
        await old.execute("UPDATE record_changelog SET at = now() - interval '40 days'")
    async with db_pool.acquire() as page, page.transaction():
        await changelog.add_many(page, "m", 2, [Change("new", "created")])  # not committed yet
        async with db_pool.acquire() as upkeep:
            cutoff = datetime.now(UTC) - changelog.DEFAULT_RETENTION
            assert await asyncio.wait_for(changelog.prune(upkeep, cutoff), 5) == 1
    async with db_pool.acquire() as conn:
        assert [e.change.source_id for e in await changelog.for_record(conn, "m", "new")] == ["new"]


async def test_prune_of_one_mapping_leaves_the_others(db_conn: Connection) -> None:
    await changelog.add_many(db_conn, "a", 1, [Change("1", "updated")])
    await changelog.add_many(db_conn, "b", 1, [Change("1", "updated")])
    await db_conn.execute("UPDATE record_changelog SET at = now() - interval '40 days'")
    cutoff = datetime.now(UTC) - changelog.DEFAULT_RETENTION
    assert await changelog.prune(db_conn, cutoff, mapping="a") == 1
    assert await db_conn.fetchval("SELECT array_agg(mapping) FROM record_changelog") == ["b"]


async def test_a_page_commit_never_waits_for_a_prune_in_progress(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await changelog.add_many(conn, "m", 1, [Change("1", "updated"), Change("2", "updated")])
        await conn.execute("UPDATE record_changelog SET at = now() - interval '40 days'")
    cutoff = datetime.now(UTC) - changelog.DEFAULT_RETENTION
    async with db_pool.acquire() as upkeep, upkeep.transaction():
        await upkeep.execute(changelog.PRUNE_SQL, cutoff, 10, "m")  # the old rows' locks held
        async with db_pool.acquire() as page:
            await page.execute("SET lock_timeout = '5s'")  # blocked would fail, not hang
            async with page.transaction():  # the same records, as a page commit writes them
                await changelog.add_many(page, "m", 2, [Change("1", "updated"), Change("2", "created")])
            await page.execute("RESET lock_timeout")
    async with db_pool.acquire() as conn:
        assert [e.run_id for e in await changelog.for_record(conn, "m", "1")] == [2]
