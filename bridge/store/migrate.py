"""Applies the plain-SQL migrations in `migrations/NNNN_<what>.sql`, in order, exactly once.

Invariants:
- Each file runs in its own transaction together with its row in `bridge_migrations`, so a
  migration is either applied and recorded, or neither.
- The whole pass runs under one session-level advisory lock, so several processes starting
  at once (a Heroku release phase next to workers) apply each file once; the others wait,
  then find nothing to do.
- A file is never edited once applied: its sha256 is recorded, and a changed checksum stops
  the pass with `MigrationError` before anything else is applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bridge.errors import ConfigError, MigrationError
from bridge.store.pool import Connection, current_database, translated

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant: "bridge migrate" as a bigint advisory-lock key.
MIGRATION_LOCK_KEY = 0x6272_6964_6765_6D67

CREATE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bridge_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
TABLE_EXISTS_SQL = "SELECT to_regclass('bridge_migrations') IS NOT NULL"
APPLIED_SQL = "SELECT version, name, checksum FROM bridge_migrations ORDER BY version"
RECORD_SQL = "INSERT INTO bridge_migrations (version, name, checksum) VALUES ($1, $2, $3)"
LOCK_SQL = "SELECT pg_advisory_lock($1)"
UNLOCK_SQL = "SELECT pg_advisory_unlock($1)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # e.g. "0001_initial"
    sql: str
    checksum: str  # sha256 hex of the file with normalised line endings


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Reads the migration files in version order; rejects duplicate versions."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: not a migration file name; expected NNNN_<what>.sql")
        sql = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path}: version {version:04d} is used twice; renumber one of the files"
            )
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        found[version] = Migration(version, path.stem, sql, checksum)
    return [found[v] for v in sorted(found)]


async def migrate(pool: asyncpg.Pool[Any], *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies what is pending; returns the names applied now (empty: already up to date)."""
    migrations = load_migrations(directory)
    with translated("migrate the database (run `bridge migrate` again once it is fixed)"):
        async with pool.acquire() as conn:
            await conn.execute(LOCK_SQL, MIGRATION_LOCK_KEY)
            try:
                return await _apply_pending(conn, migrations)
            finally:
                await conn.execute(UNLOCK_SQL, MIGRATION_LOCK_KEY)


async def pending(
    pool: asyncpg.Pool[Any], *, directory: Path = MIGRATIONS_DIR, timeout: float | None = None
) -> list[str]:
    """Names of the migrations not applied yet; never changes anything.

    With `timeout`, waiting for a connection and each query are bounded by it (the worker's
    readiness probe must not hang on a database that stopped answering).
    """
    migrations = load_migrations(directory)
    with translated("read the applied migrations"):
        async with pool.acquire(timeout=timeout) as conn:
            if not await conn.fetchval(TABLE_EXISTS_SQL, timeout=timeout):
                return [m.name for m in migrations]
            applied = {row["version"] for row in await conn.fetch(APPLIED_SQL, timeout=timeout)}
    return [m.name for m in migrations if m.version not in applied]


async def require_current(pool: asyncpg.Pool[Any], *, directory: Path = MIGRATIONS_DIR) -> None:
    """Raises ConfigError unless every migration is applied.

    The one rule for every command that needs the schema: only `bridge migrate` (Heroku's
    release phase, the Kubernetes migrate Job) changes it, never a command on the side, so a
    deploy decides when the schema moves. A database with none applied yet says so.
    """
    names = await pending(pool, directory=directory)
    if not names:
        return
    where = current_database()
    if len(names) == len(load_migrations(directory)):
        raise ConfigError(f"{where} has no bridge tables yet; run `bridge migrate` first")
    raise ConfigError(
        f"{where} has {len(names)} pending migration(s) ({', '.join(names)}); "
        "run `bridge migrate` first"
    )


async def _apply_pending(conn: Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(CREATE_TABLE_SQL)
    applied = {row["version"]: row for row in await conn.fetch(APPLIED_SQL)}
    _check_unchanged(migrations, applied)
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        await _apply_one(conn, migration)
        done.append(migration.name)
    return done


def _check_unchanged(migrations: list[Migration], applied: dict[int, Any]) -> None:
    for migration in migrations:
        row = applied.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was edited after it was applied (checksum "
                f"{row['checksum'][:12]}… in the database, {migration.checksum[:12]}… on disk); "
                "restore the original file and put the change in a new migration"
            )


async def _apply_one(conn: Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(RECORD_SQL, migration.version, migration.name, migration.checksum)
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"migration {migration.name} failed and was rolled back: {exc}; "
            "fix the migration or the database, then run `bridge migrate` again"
        ) from exc
