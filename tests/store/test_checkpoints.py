from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.store import checkpoints
from bridge.store.pool import Connection

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_load_of_unknown_mapping_is_none(db_conn: Connection) -> None:
    assert await checkpoints.load(db_conn, "accounts") is None


async def test_save_then_load(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "accounts", watermark=T0, resume_url="https://x/next", run_id=7)
    cp = await checkpoints.load(db_conn, "accounts")
    assert cp is not None
    assert (cp.mapping, cp.watermark, cp.resume_url, cp.run_id) == (
        "accounts", T0, "https://x/next", 7)
    assert cp.updated_at is not None


async def test_watermark_never_moves_backwards(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "a", watermark=T0, resume_url=None, run_id=1)
    await checkpoints.save(db_conn, "a", watermark=T0 - timedelta(hours=1), resume_url="u", run_id=2)
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark == T0
    # other fields do follow the latest save
    assert (cp.resume_url, cp.run_id) == ("u", 2)
    await checkpoints.save(db_conn, "a", watermark=None, resume_url=None, run_id=3)
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark == T0 and cp.resume_url is None
    later = T0 + timedelta(seconds=1)
    await checkpoints.save(db_conn, "a", watermark=later, resume_url=None, run_id=3)
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark == later


async def test_first_watermark_over_null(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "a", watermark=None, resume_url="u", run_id=None)
    await checkpoints.save(db_conn, "a", watermark=T0, resume_url="u", run_id=None)
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark == T0


async def test_reset_clears_watermark_and_resume_url(db_conn: Connection) -> None:
    await checkpoints.save(db_conn, "a", watermark=T0, resume_url="u", run_id=4)
    await checkpoints.save(db_conn, "b", watermark=T0, resume_url="v", run_id=5)
    await checkpoints.reset(db_conn, "a")
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark is None and cp.resume_url is None
    # after a reset an earlier watermark is accepted again
    await checkpoints.save(db_conn, "a", watermark=T0 - timedelta(days=1), resume_url=None, run_id=6)
    cp = await checkpoints.load(db_conn, "a")
    assert cp is not None and cp.watermark == T0 - timedelta(days=1)
    all_ = await checkpoints.load_all(db_conn)
    assert [c.mapping for c in all_] == ["a", "b"]
    assert all_[1].watermark == T0 and all_[1].resume_url == "v"


async def test_save_rolls_back_with_its_transaction(db_conn: Connection) -> None:
    class Boom(Exception):
        pass

    try:
        async with db_conn.transaction():
            await checkpoints.save(db_conn, "a", watermark=T0, resume_url=None, run_id=1)
            raise Boom
    except Boom:
        pass
    assert await checkpoints.load(db_conn, "a") is None
