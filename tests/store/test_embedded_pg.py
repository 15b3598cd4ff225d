from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bridge import embedded_pg


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp dir (see tests/fixtures_db.embedded_server).
    path = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


async def test_start_connect_stop_restart(data_dir: Path) -> None:
    dsn = embedded_pg.start_embedded(data_dir)
    try:
        assert dsn.startswith("postgresql://")
        assert await _select_one(dsn) == 1
        assert embedded_pg.start_embedded(data_dir) == dsn  # same process: same server

        # a second process reuses the running server, and its exit does not stop it
        code = (
            "import sys; from pathlib import Path; from bridge import embedded_pg; "
            "print(embedded_pg.start_embedded(Path(sys.argv[1])))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(data_dir)],
            check=True, capture_output=True, text=True, timeout=60,
        )
        assert out.stdout.strip() == dsn
        assert await _select_one(dsn) == 1
    finally:
        embedded_pg.stop_embedded(data_dir)
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await _select_one(dsn)
    # and it starts again after an explicit stop
    dsn = embedded_pg.start_embedded(data_dir)
    try:
        assert await _select_one(dsn) == 1
    finally:
        embedded_pg.stop_embedded(data_dir)


def test_stop_of_a_never_started_dir_is_a_no_op(tmp_path: Path) -> None:
    embedded_pg.stop_embedded(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
