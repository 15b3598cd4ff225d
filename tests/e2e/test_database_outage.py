"""The worker while its database goes away and comes back: /readyz follows within seconds
with a short reason, /healthz stays 200, and the process lives on and syncs again."""

from __future__ import annotations

import json
import time
from itertools import groupby
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.pg_proxy import pg_proxy
from tests.e2e.test_worker import dsn_of, prepare, runs_of
from tests.e2e.worker_proc import WorkerProc, wait_for, write_mappings
from tests.fixtures_sandbox import SandboxWorld

pytestmark = pytest.mark.timeout(60)
DETECT_WITHIN_S = 5.0


async def test_readyz_fails_fast_while_postgres_is_down_and_recovers(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1s", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    async with pg_proxy(dsn) as proxy:
        worker = await WorkerProc.start(world, mappings, DATABASE_URL=proxy.dsn)
        workers.append(worker)

        async def readyz(expected: int) -> bool:
            return (await worker.get("/readyz"))[0] == expected

        await wait_for(lambda: readyz(200), "the worker to be ready", timeout=20)

        proxy.cut()  # Postgres stops: connections drop, new ones are refused
        cut_at = time.monotonic()
        await wait_for(lambda: readyz(503), "/readyz to turn 503", timeout=DETECT_WITHIN_S + 5)
        assert time.monotonic() - cut_at < DETECT_WITHIN_S
        status, body = await worker.get("/readyz")
        assert status == 503
        _assert_short(json.loads(body)["reason"], proxy.dsn)
        assert (await worker.get("/healthz"))[0] == 200
        before = await runs_of(dsn)
        await wait_for(lambda: _logged_failure(worker), "the worker to meet the outage in a run")

        proxy.restore()
        await wait_for(lambda: readyz(200), "/readyz to recover by itself", timeout=15)
        await wait_for(lambda: _ran_since(dsn, before), "a successful run after the outage", timeout=15)
        assert worker.proc.returncode is None, worker.log_tail()
        flips = [ready for ready, _ in groupby(e["ready"] for e in worker.events("readiness_changed"))]
        assert flips[-3:] == [True, False, True]  # logged on each change, not on each probe


def _assert_short(reason: str, dsn: str) -> None:
    parts = urlsplit(dsn)
    assert reason and len(reason) < 60, reason
    for internal in (parts.hostname, str(parts.port), parts.username, parts.path.strip("/"),
                     "SELECT", "postgresql", "Error"):  # fmt: skip
        assert internal and internal not in reason, (internal, reason)


async def _ran_since(dsn: str, before: object) -> bool:
    now = await runs_of(dsn)
    return sum(now.values()) > sum(before.values())  # type: ignore[attr-defined]


async def _logged_failure(worker: WorkerProc) -> bool:
    return any(worker.events(name) for name in ("run_failed", "lease_renew_failed", "mapping_failed"))
