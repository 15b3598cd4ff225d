"""Postgres fixtures for every test that needs a database (a pytest plugin).

- `pg_server_dsn` (session): DATABASE_URL if set, else an embedded Postgres started once
  per session in a fresh dir under /tmp, stopped and deleted at the end.
- `template_db` (session): a database migrated once; its name.
- `db_dsn` (function): a fresh database copied from the template (CREATE DATABASE …
  TEMPLATE, cheap), dropped WITH (FORCE) after the test.
- `empty_db_dsn` (function): a fresh database with no tables, for migration tests.
- `db_pool` / `db_conn` (function): an asyncpg pool / one connection on `db_dsn`.

Session setup runs its coroutines on a private thread with `asyncio.run`, so it never
touches the event loop pytest-asyncio gives each test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge.embedded_pg import start_embedded, stop_embedded
from bridge.store import migrate, pool

POOL_CLOSE_TIMEOUT_S = 10.0
# The test server's data is thrown away, so skip the disk flushes that make
# CREATE DATABASE slow (never do this to a server whose data matters).
_THROWAWAY_SERVER_SETTINGS = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
    "SELECT pg_reload_conf()",
)


def run_sync(make: Any) -> Any:
    """Runs the coroutine made by `make()` to completion on a fresh loop in another thread."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(lambda: asyncio.run(make())).result()


async def admin_execute(server_dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(server_dsn, ssl=pool.ssl_for(server_dsn))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _create_template(server_dsn: str, name: str) -> None:
    await admin_execute(server_dsn, f'CREATE DATABASE "{name}"')
    tpl_pool = await pool.create_pool(pool.dsn_with_database(server_dsn, name), max_size=2)
    try:
        await migrate.migrate(tpl_pool)
    finally:
        await tpl_pool.close()


@contextmanager
def embedded_server() -> Iterator[tuple[Path, str]]:
    """An embedded Postgres in a fresh dir under /tmp, stopped and deleted afterwards.

    Not under pytest's tmp dir: pytest resets that tree to mode 0700 when another session
    starts, and the server (run as the `pgserver` user when we are root) would lose access.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
    try:
        dsn = start_embedded(data_dir)
        try:
            yield data_dir, dsn
        finally:
            stop_embedded(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    env_dsn = os.environ.get("DATABASE_URL")
    if env_dsn:
        yield pool.normalise_dsn(env_dsn)
        return
    with embedded_server() as (_, dsn):
        run_sync(lambda: admin_execute(dsn, *_THROWAWAY_SERVER_SETTINGS))
        yield dsn


@pytest.fixture(scope="session")
def template_db(pg_server_dsn: str) -> Iterator[str]:
    name = f"bridge_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    run_sync(lambda: _create_template(pg_server_dsn, name))
    try:
        yield name
    finally:
        run_sync(lambda: admin_execute(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = f"bridge_t_{uuid.uuid4().hex}"
    await admin_execute(pg_server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield pool.dsn_with_database(pg_server_dsn, name)
    finally:
        await admin_execute(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A database with no tables at all (for migration tests)."""
    name = f"bridge_e_{uuid.uuid4().hex}"
    await admin_execute(pg_server_dsn, f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield pool.dsn_with_database(pg_server_dsn, name)
    finally:
        await admin_execute(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _close_pool(db: asyncpg.Pool[Any]) -> None:
    try:
        await asyncio.wait_for(db.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        db.terminate()


@pytest.fixture
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    db = await pool.create_pool(db_dsn, min_size=1, max_size=5)
    try:
        yield db
    finally:
        await _close_pool(db)


@pytest.fixture
async def db_conn(db_pool: asyncpg.Pool[Any]) -> AsyncIterator[pool.Connection]:
    async with db_pool.acquire() as conn:
        yield conn

