"""Databases of their own for the local stories (`bridge demo`, `bridge sandbox`, benchmarks).

Each is dropped and created anew on every start, so sample ids from an earlier sandbox never
meet the id map of a later one, and real state in the server's other databases is never
touched.
"""

from __future__ import annotations

import asyncpg

from bridge.store import pool as store_pool

DROP_DATABASE = "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
CREATE_DATABASE = "CREATE DATABASE {name}"


async def fresh_database(server_dsn: str, name: str) -> str:
    """Recreates database `name` (a plain identifier) on the server and returns its DSN."""
    if not name.isidentifier():
        raise ValueError(f"database name {name!r} is not a plain identifier")
    conn = await asyncpg.connect(store_pool.normalise_dsn(server_dsn))
    try:
        await conn.execute(DROP_DATABASE.format(name=name))
        await conn.execute(CREATE_DATABASE.format(name=name))
    finally:
        await conn.close()
    return store_pool.dsn_with_database(server_dsn, name)
