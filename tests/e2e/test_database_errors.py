"""Database trouble as a user meets it on the command line: exit 2 (run `bridge migrate`
first) or 3 (the database failed) with a message, never a traceback or exit 1.

`cli.main` runs in a thread here (its own event loop, as from a shell), which keeps these
many cases fast; the worker's and backfill's subprocess runs live in test_worker.py and
test_backfill_cli.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog

from bridge import cli
from bridge.store import pool
from tests.fixtures_db import admin_execute
from tests.fixtures_sandbox import REPO

NEEDS_THE_SCHEMA = [
    ["status"],
    ["status", "--json"],
    ["dead-letters", "list"],
    ["dead-letters", "retry"],
    ["dead-letters", "purge"],
    ["reset", "vehicles", "--yes"],
    ["reconcile"],
    ["reconcile", "--dry-run"],
    ["backfill"],
    ["backfill", "--dry-run"],
    ["worker"],
    ["schema", "plan"],
    ["schema", "apply"],
    ["validate", "--remote"],
    ["mappings", "scaffold", "vehicles"],
]


@pytest.fixture
def bridge_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a user sets besides DATABASE_URL; the APIs are never reached in these tests."""
    for name, value in {
        "BRIDGE_MAPPINGS": str(REPO / "mappings"),
        "OUTREACH_API_URL": "http://127.0.0.1:9",
        "OUTREACH_ACCESS_TOKEN": "token-never-used",
        "ZENDESK_URL": "http://127.0.0.1:9",
        "ZENDESK_OAUTH_TOKEN": "token-never-used",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "ERROR",
    }.items():
        monkeypatch.setenv(name, value)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)  # cli.main configures logging for the whole process


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv", NEEDS_THE_SCHEMA, ids=" ".join)
async def test_every_command_on_an_unmigrated_database_says_run_migrate_and_exits_2(
    argv: list[str], empty_db_dsn: str, bridge_env: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", empty_db_dsn)
    code, err = await run_cli(capsys, *argv)
    assert code == 2, err
    assert "run `bridge migrate` first" in err and "Traceback" not in err
    conn = await asyncpg.connect(empty_db_dsn)
    try:  # nothing was changed: not even the migrations table
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await conn.close()


async def test_a_table_dropped_by_hand_is_caught_at_the_boundary(
    db_dsn: str, bridge_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await admin_execute(db_dsn, "DROP TABLE checkpoints CASCADE")
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    code, err = await run_cli(capsys, "status")
    assert code == 2, err
    assert "run `bridge migrate` first" in err and 'relation "checkpoints" does not exist' in err
    assert "Traceback" not in err


@pytest.fixture
async def restricted_dsn(db_dsn: str, pg_server_dsn: str) -> AsyncIterator[str]:
    """A login that may read the migrations table and nothing else bridge uses."""
    role = f"bridge_ro_{uuid.uuid4().hex[:10]}"
    await admin_execute(pg_server_dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-s3cret'")
    try:
        await admin_execute(db_dsn, f"GRANT SELECT ON bridge_migrations TO {role}")
        parts = pool.normalise_dsn(db_dsn).split("://", 1)[1].split("@", 1)[1]
        yield f"postgresql://{role}:pw-s3cret@{parts}"
    finally:
        await admin_execute(db_dsn, f"REVOKE ALL ON bridge_migrations FROM {role}")
        await admin_execute(pg_server_dsn, f"DROP ROLE {role}")


async def test_a_database_failure_mid_command_exits_3_with_what_to_do(
    restricted_dsn: str, bridge_env: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", restricted_dsn)
    for argv in (["status"], ["dead-letters", "list"]):
        code, err = await run_cli(capsys, *argv)
        assert code == 3, err
        assert "denied access" in err and "permission denied for table" in err
        assert "Traceback" not in err and "pw-s3cret" not in err
        database = urlsplit(restricted_dsn).path
        assert database in err  # which database, named in the message
