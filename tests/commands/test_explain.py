"""`bridge explain` as a user runs it (in process): exit codes, and when it needs the APIs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog

from bridge import cli
from bridge.store import dead_letters
from bridge.store.dead_letters import DeadLetter
from tests.fixtures_sandbox import REPO


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_dsn: str) -> pytest.MonkeyPatch:
    """The database and the example mappings, and no API credentials at all."""
    for name in list(os.environ):
        if name.startswith(("OUTREACH_", "ZENDESK_", "BRIDGE_", "LOG_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.setenv("BRIDGE_MAPPINGS", str(REPO / "mappings"))
    monkeypatch.setenv("LOG_FORMAT", "json")
    return monkeypatch


async def bridge(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_an_unknown_mapping_exits_2_naming_the_known_ones(env: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert await bridge("explain", "trucks", "7") == 2
    err = capsys.readouterr().err
    assert "unknown mapping(s): trucks" in err and "vehicles" in err


async def test_an_id_that_is_neither_exits_2(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert await bridge("explain", "vehicles", "DeLorean") == 2
    assert "neither an Outreach id" in capsys.readouterr().err


async def test_a_record_with_state_is_explained_without_credentials(
    env: pytest.MonkeyPatch, db_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await dead_letters.add_many(conn, "vehicles", 3, [DeadLetter("8", None, "RecordInvalid: bad color", None)])
    finally:
        await conn.close()
    assert await bridge("explain", "vehicles", "8", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "dead_lettered" and not data["asked_outreach"]
    assert await bridge("explain", "vehicles", "outreach:vehicles:8") == 0
    assert "RecordInvalid: bad color" in capsys.readouterr().out


async def test_a_record_without_state_needs_outreach_and_says_which_credentials(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await bridge("explain", "vehicles", "9") == 2
    err = capsys.readouterr().err
    assert "explain must ask Outreach" in err and "no state for the record" in err and "ZENDESK_URL" in err
