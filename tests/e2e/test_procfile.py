"""The Procfile's processes under honcho (as Heroku runs them): release, then the worker syncs.

DATABASE_URL is unset, so both processes use the embedded Postgres under BRIDGE_DATA_DIR.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from bridge.embedded_pg import stop_embedded
from tests.e2e.test_worker import prepare
from tests.e2e.worker_proc import FAST_WORKER_ENV, free_port, wait_for, write_mappings
from tests.fixtures_sandbox import REPO, SandboxWorld
from tests.pipeline.test_sync import assert_exact

HONCHO = str(Path(sys.executable).with_name("honcho"))


def bin_dir(tmp_path: Path) -> Path:
    """Where the Procfile's `bridge` is found: the installed console script (`make test`
    installs the project), else a shim to `python -m bridge`; never iproute2's `bridge`."""
    venv_bin = Path(sys.executable).parent
    if (venv_bin / "bridge").is_file():
        return venv_bin
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "bridge").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bridge "$@"\n')
    (shim / "bridge").chmod(0o755)
    return shim


async def honcho(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        HONCHO, "-f", str(REPO / "Procfile"), "-d", str(REPO), "--no-colour", "start", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.timeout(90)
async def test_release_then_worker_under_honcho(world: SandboxWorld, tmp_path: Path) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings)
    data_dir = Path(tempfile.mkdtemp(prefix="bridge-honcho-"))  # not under pytest's 0700 tmp
    env = {**os.environ, **world.env(), **FAST_WORKER_ENV, "BRIDGE_MAPPINGS": str(mappings),
           "BRIDGE_DATA_DIR": str(data_dir), "PATH": f"{bin_dir(tmp_path)}:{os.environ['PATH']}"}  # fmt: skip
    env.pop("DATABASE_URL")
    port = free_port()
    try:
        release = await honcho(env, "release")
        out, _ = await asyncio.wait_for(release.communicate(), 60)
        assert release.returncode == 0, out.decode()
        assert "applied" in out.decode()
        worker = await honcho(env, "-p", str(port), "worker")
        output = bytearray()

        async def pump() -> None:
            assert worker.stdout is not None
            async for line in worker.stdout:
                output.extend(line)

        reader = asyncio.create_task(pump())
        total = len(world.sandbox.outreach.ids("vehicles"))

        async def synced() -> bool:
            assert worker.returncode is None, output.decode()
            return len(world.sandbox.zendesk.records("vehicle")) == total and b"run_finished" in output

        await wait_for(synced, "the worker's first sync", timeout=45)
        assert f'"port": {port}'.encode() in output  # honcho's $PORT reached the health server
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
        await reader
        # honcho exits 143 after a SIGTERM of its own, and reports the `sh -c` it started as
        # killed by it; the worker itself stopped cleanly (its exit code is tested directly
        # in test_worker.py).
        assert worker.returncode == 143, output.decode()
        assert b"worker_stopped" in output and b"Traceback" not in output, output.decode()
        assert_exact(world.sandbox)
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
