"""PgTokenStore: the Outreach auth's `TokenStore`, kept encrypted in Postgres.

Outreach rotates the refresh token on every refresh (api/outreach.md, Auth), so the newest
token must survive the process and be shared by every replica. Invariants:
- the whole StoredToken is stored as encrypted JSON, never as plaintext, including the
  fingerprint of the configured refresh token that seeded it (a keyed hash, `fingerprint`);
  rows written before fingerprints existed load with `seed=None`;
- `lock(name)` holds a session-level advisory lock on a dedicated connection for as long as
  the caller refreshes, so one process in the whole deployment mints at a time; the lock
  goes with the connection if the process dies.
Database failures become StoreError here (`pool.translated`), because the caller
(outreach/auth.py) knows nothing of asyncpg.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from bridge.outreach.auth import StoredToken, TokenStore
from bridge.store.crypto import TokenCipher
from bridge.store.pool import DRIVER_ERRORS, Connection, translated

LOAD_SQL = "SELECT ciphertext FROM oauth_tokens WHERE name = $1"
SAVE_SQL = """
INSERT INTO oauth_tokens (name, ciphertext, updated_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = now()
"""
# Two-int advisory keys: a namespace for token locks, and the hash of the token name.
LOCK_NAMESPACE = 0x746F6B  # "tok"
LOCK_SQL = "SELECT pg_advisory_lock($1::int, hashtext($2))"
UNLOCK_SQL = "SELECT pg_advisory_unlock($1::int, hashtext($2))"


def _encode(token: StoredToken) -> bytes:
    return json.dumps(
        {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_at": token.expires_at.isoformat(),
            "minted_at": token.minted_at.isoformat(),
            "seed": token.seed,
        }
    ).encode("utf-8")


def _decode(plaintext: bytes) -> StoredToken:
    data = json.loads(plaintext)
    return StoredToken(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        expires_at=datetime.fromisoformat(data["expires_at"]),
        minted_at=datetime.fromisoformat(data["minted_at"]),
        seed=data.get("seed"),
    )


class PgTokenStore:
    """Implements bridge.outreach.auth.TokenStore on the oauth_tokens table."""

    def __init__(self, pool: asyncpg.Pool[Any], cipher: TokenCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    async def load(self, name: str) -> StoredToken | None:
        with translated(f"read the stored token {name!r}"):
            ciphertext = await self._pool.fetchval(LOAD_SQL, name)
        if ciphertext is None:
            return None
        return _decode(self._cipher.decrypt(bytes(ciphertext)))

    async def save(self, name: str, token: StoredToken) -> None:
        ciphertext = self._cipher.encrypt(_encode(token))
        with translated(f"save the rotated token {name!r} (it is lost if this process stops)"):
            await self._pool.execute(SAVE_SQL, name, ciphertext)

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._locked(name)

    def fingerprint(self, refresh_token: str) -> str:
        return self._cipher.fingerprint(refresh_token.encode("utf-8"))

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        with translated(f"take the refresh lock for {name!r}"):
            conn = await self._pool.acquire()
        try:
            with translated(f"take the refresh lock for {name!r}"):
                await conn.execute(LOCK_SQL, LOCK_NAMESPACE, name)
            try:
                yield
            finally:
                await _unlock(conn, name)
        finally:
            # Release resets the session (pg_advisory_unlock_all), so even a lock whose
            # unlock failed, or whose acquire was cancelled mid-way, does not outlive this.
            await self._pool.release(conn)


def as_token_store(store: PgTokenStore) -> TokenStore:
    """Typed view of the store as the protocol (mypy checks that PgTokenStore conforms)."""
    return store


async def _unlock(conn: Connection, name: str) -> None:
    try:
        await conn.execute(UNLOCK_SQL, LOCK_NAMESPACE, name)
    except DRIVER_ERRORS:
        pass  # a broken connection holds no lock; the pool discards it on release
