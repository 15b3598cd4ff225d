from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.store import submitted_jobs
from bridge.store.pool import Connection
from bridge.store.submitted_jobs import JobItem


async def _age(conn: Connection, job_id: str, hours: float) -> None:
    await conn.execute(
        "UPDATE submitted_jobs SET submitted_at = now() - $2::interval WHERE job_id = $1",
        job_id, timedelta(hours=hours),
    )  # fmt: skip


async def test_a_recorded_job_is_found_by_any_item_it_carries_with_its_position(db_conn: Connection) -> None:
    await submitted_jobs.record(db_conn, "vehicles", "J1", ["a", "b", "c"], ["ha", "hb", "hc"])
    await submitted_jobs.record(db_conn, "vehicles", "J2", ["c", "d"], ["hc2", "hd"])
    found = await submitted_jobs.carrying(db_conn, "vehicles", ["b", "c", "zz"])
    assert sorted(found, key=lambda i: (i.job_id, i.position)) == [
        JobItem("J1", 1, "b", "hb", 3),
        JobItem("J1", 2, "c", "hc", 3),
        JobItem("J2", 0, "c", "hc2", 2),
    ]
    assert await submitted_jobs.carrying(db_conn, "brands", ["b"]) == []
    assert await submitted_jobs.carrying(db_conn, "vehicles", []) == []


async def test_recording_a_job_twice_keeps_its_first_rows(db_conn: Connection) -> None:
    await submitted_jobs.record(db_conn, "m", "J1", ["a"], ["h1"])
    await submitted_jobs.record(db_conn, "m", "J1", ["a"], ["h2"])
    assert await submitted_jobs.carrying(db_conn, "m", ["a"]) == [JobItem("J1", 0, "a", "h1", 1)]


async def test_one_hash_per_item(db_conn: Connection) -> None:
    with pytest.raises(ValueError, match="one payload hash per external id"):
        await submitted_jobs.record(db_conn, "m", "J1", ["a", "b"], ["h"])


async def test_settling_forgets_the_page_jobs_and_every_stored_item_of_its_records(
    db_conn: Connection,
) -> None:
    await submitted_jobs.record(db_conn, "m", "J1", ["a", "b"], ["ha", "hb"])
    await submitted_jobs.record(db_conn, "m", "J0", ["c", "x"], ["hc", "hx"])  # from before a crash
    await submitted_jobs.record(db_conn, "other", "J9", ["c"], ["hc"])
    async with db_conn.transaction():
        await submitted_jobs.settle(db_conn, "m", ["J1"], ["a", "b", "c"])
    left = await submitted_jobs.carrying(db_conn, "m", ["a", "b", "c", "x"])
    assert left == [JobItem("J0", 1, "x", "hx", 2)]  # another page's record waits for its page
    assert await submitted_jobs.carrying(db_conn, "other", ["c"]) == [JobItem("J9", 0, "c", "hc", 1)]
    await submitted_jobs.settle(db_conn, "m", [], [])  # nothing to settle: no statement


async def test_jobs_too_old_to_poll_are_ignored_then_pruned(db_conn: Connection) -> None:
    await submitted_jobs.record(db_conn, "m", "old", ["a"], ["h"])
    await submitted_jobs.record(db_conn, "m", "new", ["a"], ["h"])
    await submitted_jobs.record(db_conn, "n", "other", ["a"], ["h"])
    await _age(db_conn, "old", 23.5)
    await _age(db_conn, "other", 30)
    assert [i.job_id for i in await submitted_jobs.carrying(db_conn, "m", ["a"])] == ["new"]
    assert await submitted_jobs.prune(db_conn, "m") == 1
    assert await submitted_jobs.prune(db_conn, "m") == 0
    rows = await db_conn.fetch("SELECT job_id FROM submitted_jobs ORDER BY job_id")
    assert [r["job_id"] for r in rows] == ["new", "other"]  # another mapping's are its own upkeep's
