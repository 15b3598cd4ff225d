"""What the benchmarks share: the sandbox in its own process, a fresh database, `bridge` as a
child process, and the sandbox's control surface (faults, counters, state).

The sandbox runs as `python -m bridge.sandbox` so that its CPU is not the measured process's,
and bridge runs as a child so that what is measured is what an operator runs. Everything
here talks to the sandbox over HTTP, as an operator's tooling would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
APIS = ("outreach", "zendesk")
# Benchmarks run at Zendesk's real bound (Enterprise: 700 requests/min), never a kinder one.
ZENDESK_RATE_LIMIT = 700


@contextmanager
def sandbox_process(info_file: Path, *args: str, rate_limit: int = ZENDESK_RATE_LIMIT) -> Iterator[dict[str, Any]]:
    """Starts the seeded sandbox with `args`, Zendesk limited to `rate_limit` requests a
    minute (ZENDESK_RATE_LIMIT unless a benchmark asks to see past it); yields its info (URLs,
    credentials); stops it."""
    limit = ["--zendesk-rate-limit", str(rate_limit)]
    proc = subprocess.Popen([sys.executable, "-m", "bridge.sandbox", *limit, *args, "--info-file", str(info_file)],
                            cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        yield _wait_for_info(info_file, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_info(path: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sandbox exited with {proc.returncode}")
        if path.exists() and path.stat().st_size:
            try:
                info = dict(json.loads(path.read_text()))
                info["pid"] = proc.pid
                return info
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise SystemExit("sandbox did not start within 120 s")


def bridge_env(info: dict[str, Any], dsn: str, mappings: Path, **extra: str) -> dict[str, str]:
    """The environment of a `bridge` child pointed at the sandbox and `dsn`."""
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "OUTREACH_API_URL": info["outreach_url"],
        "OUTREACH_ACCESS_TOKEN": info["outreach_token"],
        "ZENDESK_URL": info["zendesk_url"],
        "ZENDESK_CLIENT_ID": info["zendesk_client_id"],
        "ZENDESK_CLIENT_SECRET": info["zendesk_client_secret"],
        "BRIDGE_MAPPINGS": str(mappings),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def bridge(args: list[str], env: dict[str, str]) -> None:
    """Runs `bridge args`; exits the benchmark with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bridge {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def control(info: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """One request to the sandbox's control surface (on the Outreach server; both serve it)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{info['outreach_url']}/_sandbox/{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def counters(info: dict[str, Any]) -> dict[str, Any]:
    return dict(control(info, "GET", "counters"))


def reset_counters(info: dict[str, Any]) -> None:
    control(info, "DELETE", "counters")


def add_fault(info: dict[str, Any], **rule: Any) -> None:
    control(info, "POST", "faults", rule)


def clear_faults(info: dict[str, Any]) -> None:
    control(info, "DELETE", "faults")


def state(info: dict[str, Any], outreach: list[str], zendesk: list[str]) -> dict[str, Any]:
    """Both simulators' records of these types and objects, and the Zendesk users."""
    return dict(control(info, "GET", f"state?outreach={','.join(outreach)}&zendesk={','.join(zendesk)}"))


def create_objects(env: dict[str, str]) -> None:
    """The Zendesk objects the mappings need, created as `bridge demo` does."""
    from bridge import schema, wiring
    from bridge.mapping.load import load_mappings
    from bridge.mapping.order import sync_order
    from bridge.settings import Settings

    async def create() -> None:
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.isupper() and k.lower() in Settings.model_fields})
        mappings = load_mappings(settings.bridge_mappings)
        async with wiring.open_pool(settings) as pool, wiring.open_services(settings, pool) as s:
            await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))

    asyncio.run(create())


def fresh_database(server_dsn: str, name: str) -> str:
    """Recreates database `name` on the server; its DSN."""
    from bridge.store.scratch import fresh_database as fresh

    return asyncio.run(fresh(server_dsn, name))


@contextmanager
def scratch_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """A fresh database of its own (`prefix` and a random suffix, so that benchmarks run at the
    same moment on a shared server never recreate each other's); its DSN; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = fresh_database(server_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, name)


def drop_database(server_dsn: str, name: str) -> None:
    import asyncpg

    from bridge.store import pool

    async def drop() -> None:
        conn = await asyncpg.connect(pool.normalise_dsn(server_dsn))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def query(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    import asyncpg

    from bridge.store import pool

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(pool.normalise_dsn(dsn))
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def server_dsn() -> str:
    """DATABASE_URL, or the embedded Postgres under `.bridge/`."""
    from bridge import embedded_pg

    return os.environ.get("DATABASE_URL") or embedded_pg.start_embedded(REPO / ".bridge")
