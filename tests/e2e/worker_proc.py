"""A `bridge worker` subprocess for tests: start, probe its HTTP endpoints, signal, collect logs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.fixtures_sandbox import REPO, SandboxWorld

FAST_WORKER_ENV = {
    "BRIDGE_LEASE_TTL_SECONDS": "2",
    "BRIDGE_BACKOFF_SECONDS": "0.3",
    "BRIDGE_BACKOFF_MAX_SECONDS": "1",
    "BRIDGE_SCHEDULE_JITTER_SECONDS": "0.1",
    "BRIDGE_OVERLAP_SECONDS": "1",
    "BRIDGE_JOB_CONCURRENCY": "4",
}

BRANDS_YAML = """source: {type: vehicle_brands, custom_object: true}
target: {object: vehicle_brand, name: "{name}"}
fields:
  brand_name: name
  country: {from: country, type: text, transform: [strip]}
  founded: {from: founded, type: integer}
schedule: {every: EVERY}
"""
PROSPECTS_YAML = """source: {type: prospects, custom_object: false}
target: {object: prospect_copy, name: "{firstName} {lastName}"}
fields:
  first_name: firstName
  last_name: lastName
  title: title
schedule: {every: EVERY}
"""


def write_mappings(directory: Path, every: str, *, prospects: bool = True) -> Path:
    """The example mappings with a short schedule (and a third one, prospects) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    vehicles = (REPO / "mappings" / "vehicles.yaml").read_text().replace("{every: 5m}", f"{{every: {every}}}")
    assert f"every: {every}" in vehicles
    (directory / "vehicles.yaml").write_text(vehicles)
    (directory / "vehicle_brands.yaml").write_text(BRANDS_YAML.replace("EVERY", every))
    if prospects:
        (directory / "prospects.yaml").write_text(PROSPECTS_YAML.replace("EVERY", every))
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


class WorkerProc:
    """One `python -m bridge worker`, its port and its JSON log lines."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, world: SandboxWorld, mappings: Path, command: str = "worker", **env: str) -> WorkerProc:
        port = free_port()
        full_env = {**os.environ, **world.env(), **FAST_WORKER_ENV, "BRIDGE_MAPPINGS": str(mappings),
                    "PORT": str(port), **env}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", command, cwd=REPO, env=full_env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(proc, port)
        await wait_for(worker.answers, "the worker's /healthz", timeout=30)
        return worker

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name:
                found.append(entry)
        return found

    @property
    def holder(self) -> str:
        return str(self.events("worker_started")[0]["holder"])

    async def get(self, path: str) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"http://127.0.0.1:{self.port}{path}") as response:
                return response.status, await response.text()

    async def answers(self) -> bool:
        if self.proc.returncode is not None:
            raise AssertionError("the worker exited:\n" + "\n".join(self.lines[-30:]))
        try:
            status, _ = await self.get("/healthz")
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    async def stop(self, sig: int, timeout: float = 30) -> tuple[int, float]:
        """Sends `sig`; returns the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return code, time.monotonic() - started

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])
