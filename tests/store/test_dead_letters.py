from __future__ import annotations

from bridge.store import dead_letters as dl
from bridge.store import runs
from bridge.store.pool import Connection


def _letter(source_id: str, error: str = "bad", payload: dict | None = None) -> dl.DeadLetter:
    return dl.DeadLetter(source_id, f"ext-{source_id}", error, payload)


async def test_add_again_increments_attempts_and_updates_error(db_conn: Connection) -> None:
    run_1 = await runs.start(db_conn, "m", "worker")
    await dl.add_many(db_conn, "m", run_1, [_letter("1", payload={"name": "x"}), _letter("2")])
    [first] = [r for r in await dl.list_letters(db_conn, "m") if r.source_id == "1"]
    run_2 = await runs.start(db_conn, "m", "worker")
    await dl.add_many(db_conn, "m", run_2, [_letter("1", error="worse")])
    rows = {r.source_id: r for r in await dl.list_letters(db_conn, "m")}
    assert rows["1"].attempts == 2 and rows["1"].error == "worse"
    assert rows["1"].payload == {"name": "x"}  # kept when the new failure carries none
    assert rows["1"].run_id == run_2
    assert rows["1"].first_failed_at == first.first_failed_at
    assert rows["1"].last_failed_at >= first.last_failed_at
    assert rows["2"].attempts == 1 and rows["2"].payload is None


async def test_counts_resolve_and_list(db_conn: Connection) -> None:
    await dl.add_many(db_conn, "a", None, [_letter(str(i)) for i in range(5)])
    await dl.add_many(db_conn, "b", None, [_letter("x")])
    assert await dl.count(db_conn) == {"a": 5, "b": 1}
    assert await dl.count(db_conn, "b") == {"b": 1}
    assert await dl.resolve(db_conn, "a", ["0", "1", "nope"]) == 2
    assert await dl.count(db_conn, "a") == {"a": 3}
    assert await dl.resolve(db_conn, "b", ["x"]) == 1
    assert await dl.count(db_conn) == {"a": 3}
    assert len(await dl.list_letters(db_conn, limit=2)) == 2
    assert {r.mapping for r in await dl.list_letters(db_conn)} == {"a"}


async def test_errors_are_stored_redacted(db_conn: Connection) -> None:
    await dl.add_many(db_conn, "a", None, [_letter("1", error="401 Bearer abc.def.ghi")])
    [row] = await dl.list_letters(db_conn, "a")
    assert "abc.def.ghi" not in row.error and "401" in row.error


async def test_duplicate_in_one_batch_counts_once(db_conn: Connection) -> None:
    await dl.add_many(db_conn, "a", None, [_letter("1", "e1"), _letter("1", "e2")])
    [row] = await dl.list_letters(db_conn, "a")
    assert (row.attempts, row.error) == (1, "e2")
