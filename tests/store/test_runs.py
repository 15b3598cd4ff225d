from __future__ import annotations

import pytest

from bridge.errors import StoreError
from bridge.store import runs
from bridge.store.pool import Connection


async def test_run_lifecycle_and_counts(db_conn: Connection) -> None:
    run_id = await runs.start(db_conn, "accounts", "backfill", actor="alice", replica="web.1")
    await runs.add_counts(db_conn, run_id, runs.RunCounts(fetched=10, written=7, skipped=3))
    await runs.add_counts(db_conn, run_id, runs.RunCounts(fetched=5, written=2, failed=1, parked=2))
    [row] = await runs.latest(db_conn, "accounts")
    assert row.id == run_id and row.status == "running" and row.finished_at is None
    assert row.counts == runs.RunCounts(fetched=15, written=9, skipped=3, failed=1, parked=2)
    assert (row.kind, row.actor, row.replica) == ("backfill", "alice", "web.1")
    await runs.finish(db_conn, run_id, "failed", error="boom with access_token=abc123secret")
    [row] = await runs.latest(db_conn, "accounts")
    assert row.status == "failed" and row.finished_at is not None
    assert row.error is not None and "boom" in row.error and "abc123secret" not in row.error


async def test_latest_is_per_mapping(db_conn: Connection) -> None:
    first = await runs.start(db_conn, "a", "worker")
    await runs.finish(db_conn, first, "succeeded")
    second = await runs.start(db_conn, "a", "worker")
    other = await runs.start(db_conn, "b", "dry_run")
    latest = await runs.latest(db_conn)
    assert [(r.mapping, r.id) for r in latest] == [("a", second), ("b", other)]
    assert [r.id for r in await runs.latest(db_conn, "b")] == [other]
    assert await runs.latest(db_conn, "nope") == []


async def test_mark_interrupted_only_touches_running_runs_of_that_mapping(db_conn: Connection) -> None:
    done = await runs.start(db_conn, "a", "worker")
    await runs.finish(db_conn, done, "succeeded")
    stale = await runs.start(db_conn, "a", "worker")
    elsewhere = await runs.start(db_conn, "b", "worker")
    assert await runs.mark_interrupted(db_conn, "a") == 1
    assert await runs.mark_interrupted(db_conn, "a") == 0
    status = dict(await db_conn.fetch("SELECT id, status FROM runs"))
    assert status == {done: "succeeded", stale: "interrupted", elsewhere: "running"}


async def test_finish_refuses_unknown_status(db_conn: Connection) -> None:
    run_id = await runs.start(db_conn, "a", "worker")
    with pytest.raises(StoreError, match="cannot finish as 'running'"):
        await runs.finish(db_conn, run_id, "running")
