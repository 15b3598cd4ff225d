from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bridge.errors import ConfigError
from bridge.outreach.auth import StoredToken
from bridge.store.crypto import TokenCipher
from bridge.store.tokens import PgTokenStore

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = StoredToken(
    access_token="access-AAAA-1234",
    refresh_token="refresh-RRRR-5678",
    expires_at=NOW + timedelta(hours=2),
    minted_at=NOW,
)


@pytest.fixture
def store(db_pool: asyncpg.Pool) -> PgTokenStore:
    return PgTokenStore(db_pool, TokenCipher("test-secret"))


async def test_round_trip_and_overwrite(store: PgTokenStore) -> None:
    assert await store.load("outreach") is None
    await store.save("outreach", TOKEN)
    assert await store.load("outreach") == TOKEN
    newer = StoredToken("a2", "r2", NOW + timedelta(hours=4), NOW + timedelta(hours=2))
    await store.save("outreach", newer)
    assert await store.load("outreach") == newer
    assert await store.load("other") is None


async def test_ciphertext_holds_no_plaintext(store: PgTokenStore, db_pool: asyncpg.Pool) -> None:
    await store.save("outreach", TOKEN)
    raw = bytes(await db_pool.fetchval("SELECT ciphertext FROM oauth_tokens WHERE name = 'outreach'"))
    for secret in (TOKEN.access_token, TOKEN.refresh_token, "refresh_token"):
        assert secret.encode() not in raw


async def test_the_seed_fingerprint_round_trips_inside_the_ciphertext(
    store: PgTokenStore, db_pool: asyncpg.Pool
) -> None:
    seeded = replace(TOKEN, seed=store.fingerprint("env-refresh-SEED"))
    await store.save("outreach", seeded)
    assert await store.load("outreach") == seeded
    raw = bytes(await db_pool.fetchval("SELECT ciphertext FROM oauth_tokens WHERE name = 'outreach'"))
    assert seeded.seed is not None and seeded.seed.encode() not in raw and b"env-refresh-SEED" not in raw


async def test_a_row_stored_before_fingerprints_loads_without_a_seed(
    store: PgTokenStore, db_pool: asyncpg.Pool
) -> None:
    legacy = json.dumps({
        "access_token": "a", "refresh_token": "r",
        "expires_at": NOW.isoformat(), "minted_at": NOW.isoformat(),
    }).encode()
    await db_pool.execute(
        "INSERT INTO oauth_tokens (name, ciphertext, updated_at) VALUES ('outreach', $1, now())",
        TokenCipher("test-secret").encrypt(legacy),
    )
    assert await store.load("outreach") == StoredToken("a", "r", NOW, NOW, seed=None)


def test_fingerprints_are_keyed_one_way_and_stable(db_pool: asyncpg.Pool) -> None:
    one, same, other = (PgTokenStore(db_pool, TokenCipher(k)) for k in ("k1", "k1", "k2"))
    token = "refresh-RRRR-5678"
    assert one.fingerprint(token) == same.fingerprint(token)  # stable across processes
    assert one.fingerprint(token) != one.fingerprint(token + "x")
    assert one.fingerprint(token) != other.fingerprint(token)  # keyed by BRIDGE_SECRET_KEY
    assert token not in one.fingerprint(token) and len(one.fingerprint(token)) >= 32


async def test_wrong_key_is_a_config_error(store: PgTokenStore, db_pool: asyncpg.Pool) -> None:
    await store.save("outreach", TOKEN)
    other = PgTokenStore(db_pool, TokenCipher("another-secret"))
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        await other.load("outreach")


async def _wait_for_lock_waiter(db: asyncpg.Pool, deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second lock() never started waiting on the advisory lock")


async def test_lock_excludes_a_second_holder(db_dsn: str, db_pool: asyncpg.Pool) -> None:
    # Two stores on two pools: as two processes would be.
    from bridge.store import pool as pool_module

    other_pool = await pool_module.create_pool(db_dsn, max_size=2)
    try:
        first = PgTokenStore(db_pool, TokenCipher("k"))
        second = PgTokenStore(other_pool, TokenCipher("k"))
        events: list[str] = []
        first_in, release_first = asyncio.Event(), asyncio.Event()

        async def hold_first() -> None:
            async with first.lock("outreach"):
                events.append("first in")
                first_in.set()
                await release_first.wait()
                events.append("first out")

        async def take_second() -> None:
            await first_in.wait()
            async with second.lock("outreach"):
                events.append("second in")

        async with asyncio.timeout(10):
            tasks = [asyncio.create_task(hold_first()), asyncio.create_task(take_second())]
            await first_in.wait()
            await _wait_for_lock_waiter(db_pool)
            assert events == ["first in"]
            release_first.set()
            await asyncio.gather(*tasks)
        assert events == ["first in", "first out", "second in"]
        # released for good: a third holder gets it at once
        async with asyncio.timeout(5):
            async with first.lock("outreach"):
                pass
    finally:
        await other_pool.close()


async def test_locks_on_different_names_do_not_block(store: PgTokenStore) -> None:
    async with asyncio.timeout(5):
        async with store.lock("a"):
            async with store.lock("b"):
                pass
