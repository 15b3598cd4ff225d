from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from bridge.errors import ConfigError, MigrationError, StoreError
from bridge.store import migrate, pool

ALL = [m.name for m in migrate.load_migrations()]


async def _tables(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


@pytest.fixture
async def empty_pool(empty_db_dsn: str):
    db = await pool.create_pool(empty_db_dsn, max_size=3)
    yield db
    await db.close()


async def test_migrate_applies_everything_once_then_nothing(empty_pool: asyncpg.Pool) -> None:
    assert await migrate.pending(empty_pool) == ALL
    assert await migrate.migrate(empty_pool) == ALL
    assert await migrate.migrate(empty_pool) == []
    assert await migrate.pending(empty_pool) == []
    assert {"checkpoints", "id_map", "runs", "dead_letters", "oauth_tokens", "parked_links"} <= (
        await _tables(empty_pool)
    )
    rows = await empty_pool.fetch("SELECT version, name, checksum FROM bridge_migrations")
    assert [r["name"] for r in rows] == ALL
    assert all(len(r["checksum"]) == 64 for r in rows)


async def test_concurrent_migrations_apply_each_file_once(empty_db_dsn: str) -> None:
    pools = [await pool.create_pool(empty_db_dsn, max_size=1) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate.migrate(p) for p in pools))
        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(ALL)
        count = await pools[0].fetchval("SELECT count(*) FROM bridge_migrations")
        assert count == len(ALL)
    finally:
        for p in pools:
            await p.close()


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, target)
    return target


async def test_edited_migration_is_refused(empty_pool: asyncpg.Pool, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    await migrate.migrate(empty_pool, directory=directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    (directory / "9999_later.sql").write_text("CREATE TABLE later_table (id int);")
    with pytest.raises(MigrationError, match=f"{first.stem} was edited"):
        await migrate.migrate(empty_pool, directory=directory)
    assert "later_table" not in await _tables(empty_pool)


async def test_failing_migration_is_rolled_back_and_not_recorded(
    empty_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "9998_good.sql").write_text("CREATE TABLE good_table (id int);")
    (directory / "9999_bad.sql").write_text("CREATE TABLE half_done (id int); SELECT 1/0;")
    with pytest.raises(MigrationError, match="9999_bad failed"):
        await migrate.migrate(empty_pool, directory=directory)
    tables = await _tables(empty_pool)
    assert "good_table" in tables and "half_done" not in tables
    assert await migrate.pending(empty_pool, directory=directory) == ["9999_bad"]
    # the lock was released: another pass can run (and fails the same way)
    with pytest.raises(MigrationError):
        await asyncio.wait_for(migrate.migrate(empty_pool, directory=directory), 5)


def test_bad_file_names_and_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="used twice"):
        migrate.load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2-oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_<what>.sql"):
        migrate.load_migrations(tmp_path)


async def test_migrate_on_a_dead_server_is_a_store_error(empty_db_dsn: str) -> None:
    db = await pool.create_pool(empty_db_dsn, max_size=1)
    await db.close()
    with pytest.raises(StoreError, match="could not migrate the database"):
        await migrate.migrate(db)


async def test_require_current_names_what_is_missing_and_changes_nothing(
    empty_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="has no bridge tables yet; run `bridge migrate` first"):
        await migrate.require_current(empty_pool)
    assert await _tables(empty_pool) == set()
    everything, only_first = tmp_path / "all", tmp_path / "first"
    for directory, migrations in ((everything, migrate.load_migrations()), (only_first, migrate.load_migrations()[:1])):
        directory.mkdir()
        for m in migrations:
            (directory / f"{m.name}.sql").write_text(m.sql)
    await migrate.migrate(empty_pool, directory=only_first)
    with pytest.raises(ConfigError, match=rf"has {len(ALL) - 1} pending migration\(s\) \({ALL[1]}, .*run `bridge migrate` first"):
        await migrate.require_current(empty_pool, directory=everything)
    await migrate.migrate(empty_pool, directory=everything)
    await migrate.require_current(empty_pool, directory=everything)
