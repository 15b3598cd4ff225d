"""`bridge sandbox` as a newcomer uses it: start it, export what it prints, run commands by hand."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_sandbox import REPO

VEHICLES = 30


def _clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without any bridge setting, as a fresh shell has it."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("OUTREACH_", "ZENDESK_", "BRIDGE_", "LOG_")) and k not in ("DATABASE_URL", "PORT")
    }  # fmt: skip
    return {**env, **extra}


async def _bridge(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _read_until_ready(proc: asyncio.subprocess.Process, timeout: float = 60) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not (lines and lines[-1].startswith("# ready")):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"`bridge sandbox` never said it was ready; printed: {lines}")
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=left)
        if not line:
            stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
            raise AssertionError(f"`bridge sandbox` ended early ({proc.returncode}): {lines} {stderr}")
        lines.append(line.decode().rstrip("\n"))
    return lines


def _exports(lines: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
    return env


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _start_sandbox(tmp_path: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "sandbox", "--vehicles", str(VEHICLES), *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_newcomer_migrates_and_backfills_against_the_sandbox_by_hand(tmp_path: Path) -> None:
    """No DATABASE_URL: the sandbox starts the embedded Postgres and prints everything to export."""
    env = _clean_env(BRIDGE_DATA_DIR=str(tmp_path / "data"), BRIDGE_MAPPINGS=str(REPO / "mappings"))
    proc = await _start_sandbox(tmp_path, env, "--env-file", str(tmp_path / ".env"))
    try:
        exported = _exports(await _read_until_ready(proc))
        for name in ("DATABASE_URL", "OUTREACH_API_URL", "OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET",
                     "OUTREACH_REFRESH_TOKEN", "BRIDGE_SECRET_KEY", "ZENDESK_URL", "ZENDESK_CLIENT_ID",
                     "ZENDESK_CLIENT_SECRET", "BRIDGE_MAPPINGS"):  # fmt: skip
            assert exported.get(name), f"{name} is not printed"
        assert "bridge_sandbox" in exported["DATABASE_URL"]
        shell = _clean_env(**exported, LOG_FORMAT="json")
        for step in (("migrate",), ("schema", "apply"), ("backfill",)):
            code, out, err = await _bridge(tmp_path, shell, *step)
            assert code == 0, f"bridge {' '.join(step)}: {out}{err}"
        assert f"vehicles: succeeded; fetched {VEHICLES}, written {VEHICLES}" in out
        # The env file is a .env in the working directory: a bare `bridge status` there uses it.
        code, out, err = await _bridge(tmp_path, _clean_env(), "status")
        assert code == 0, err
        assert f"vehicles: records={VEHICLES}" in out
    finally:
        if proc.returncode is None:
            code, text = await _stop(proc)
            assert code == 0 and "# sandbox stopped" in text


async def test_the_sandbox_uses_database_url_as_given(tmp_path: Path, empty_db_dsn: str) -> None:
    env = _clean_env(DATABASE_URL=empty_db_dsn, BRIDGE_MAPPINGS=str(REPO / "mappings"))
    proc = await _start_sandbox(tmp_path, env)
    try:
        exported = _exports(await _read_until_ready(proc))
        assert exported["DATABASE_URL"] == empty_db_dsn
        code, out, err = await _bridge(tmp_path, _clean_env(**exported), "migrate")
        assert code == 0 and "applied" in out, err
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0


async def test_the_sandbox_refuses_a_missing_mappings_folder(tmp_path: Path) -> None:
    env = _clean_env(BRIDGE_DATA_DIR=str(tmp_path / "data"), BRIDGE_MAPPINGS=str(tmp_path / "nope"))
    code, _, err = await _bridge(tmp_path, env, "sandbox")
    assert code == 2 and "BRIDGE_MAPPINGS" in err


@pytest.fixture(autouse=True)
def _no_stray_env_file() -> None:
    assert not (REPO / ".env").exists(), "a .env in the checkout would leak into these runs"
