from __future__ import annotations

import time

from bridge.store import idmap
from bridge.store.pool import Connection


def _rows(n: int, prefix: str = "h", zendesk: bool = True) -> list[idmap.IdMapRow]:
    return [
        idmap.IdMapRow(str(i), f"z{i}" if zendesk else None, f"ext-{i}", f"{prefix}{i}")
        for i in range(n)
    ]


async def test_upsert_1000_rows_then_hashes(db_conn: Connection) -> None:
    rows = _rows(1000)
    started = time.perf_counter()
    async with db_conn.transaction():
        await idmap.upsert_many(db_conn, "accounts", rows)
    elapsed = time.perf_counter() - started
    print(f"upsert_many of 1000 rows: {elapsed * 1000:.1f} ms")
    assert elapsed < 2.0  # generous: a few ms here; a per-row round trip would be far slower
    assert await idmap.count(db_conn, "accounts") == 1000
    ids = [str(i) for i in range(0, 1500, 3)]  # some unknown
    got = await idmap.hashes(db_conn, "accounts", ids)
    assert got == {i: f"h{i}" for i in ids if int(i) < 1000}
    assert await idmap.count(db_conn, "other") == 0
    assert await idmap.hashes(db_conn, "other", ids) == {}


async def test_upsert_updates_hash_and_keeps_zendesk_id_when_none(db_conn: Connection) -> None:
    await idmap.upsert_many(db_conn, "m", _rows(3))
    await idmap.upsert_many(db_conn, "m", _rows(3, prefix="new", zendesk=False))
    got = await idmap.lookup(db_conn, "m", ["0", "1", "2", "9"])
    assert set(got) == {"0", "1", "2"}
    assert got["1"] == idmap.IdMapRow("1", "z1", "ext-1", "new1")
    await idmap.upsert_many(db_conn, "m", [idmap.IdMapRow("1", "z-other", "ext-1", "n")])
    assert (await idmap.lookup(db_conn, "m", ["1"]))["1"].zendesk_id == "z-other"


async def test_duplicate_source_ids_in_one_batch_last_wins(db_conn: Connection) -> None:
    rows = [idmap.IdMapRow("1", None, "e", "first"), idmap.IdMapRow("1", "z", "e", "second")]
    await idmap.upsert_many(db_conn, "m", rows)
    assert await idmap.hashes(db_conn, "m", ["1"]) == {"1": "second"}
    await idmap.upsert_many(db_conn, "m", [])
    assert await idmap.count(db_conn, "m") == 1


async def test_gone_rows_hide_their_hash_until_rewritten(db_conn: Connection) -> None:
    await idmap.upsert_many(db_conn, "m", _rows(2))
    await db_conn.execute("UPDATE id_map SET gone_at = now() WHERE source_id = '0'")
    assert await idmap.hashes(db_conn, "m", ["0", "1"]) == {"1": "h1"}
    await idmap.upsert_many(db_conn, "m", _rows(1))
    assert await idmap.hashes(db_conn, "m", ["0", "1"]) == {"0": "h0", "1": "h1"}
    assert await db_conn.fetchval("SELECT count(*) FROM id_map WHERE gone_at IS NOT NULL") == 0


async def test_lookup_by_external_id(db_conn: Connection) -> None:
    await idmap.upsert_many(db_conn, "m", _rows(3))
    got = await idmap.lookup_external(db_conn, "m", ["ext-2", "ext-9"])
    assert got == {"ext-2": idmap.IdMapRow("2", "z2", "ext-2", "h2")}


async def test_the_payload_written_is_kept_compressed_and_read_back(db_conn: Connection) -> None:
    from datetime import UTC, datetime

    fields = {"speed": 120, "driver": "z-user-9", "notes": "é" * 600, "tags": ["a", "b"]}
    packed = idmap.pack_payload("Car 1", fields)
    assert len(packed) < len(str(fields))  # compressed (its JSON is past PACK_COMPRESS_FROM)
    small = idmap.pack({"attributes": {"speed": "120"}})
    assert small == b'{"attributes":{"speed":"120"}}'  # too small to be worth compressing
    updated = datetime(2026, 11, 2, tzinfo=UTC)
    await idmap.upsert_many(
        db_conn,
        "m",
        [
            idmap.IdMapRow("1", "z1", "ext-1", "h1", packed, idmap.pack({"attributes": {"speed": "120"}}), updated),
            idmap.IdMapRow("2", None, "ext-2", "h2"),
        ],
    )
    got = await idmap.written(db_conn, "m", ["1", "2", "3"])
    assert set(got) == {"1", "2"}
    assert got["1"].payload == {"name": "Car 1", "fields": fields}
    assert got["1"].source == {"attributes": {"speed": "120"}}
    assert (got["1"].zendesk_id, got["1"].external_id, got["1"].source_updated_at) == ("z1", "ext-1", updated)
    assert got["2"].payload is None and got["2"].source is None and got["2"].gone_at is None
    assert set(await idmap.written_by_zendesk_id(db_conn, "m", ["z1", "zx"])) == {"z1"}
    # a later write replaces the payload; the Zendesk id is kept as before
    await idmap.upsert_many(db_conn, "m", [idmap.IdMapRow("1", None, "ext-1", "h9", idmap.pack_payload("Car 1", {}))])
    again = (await idmap.written(db_conn, "m", ["1"]))["1"]
    assert again.payload == {"name": "Car 1", "fields": {}} and again.zendesk_id == "z1"
