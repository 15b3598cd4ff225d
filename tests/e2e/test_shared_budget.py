"""Two `bridge backfill` processes on one Zendesk account stay under one shared rate budget.

The budget (`ZENDESK_RATE_LIMIT`) is below what the account allows, as when an operator leaves
room for other integrations, so the processes must keep to it by themselves: the sandbox's log
of arrival times shows every window's count. The window is shortened to a few seconds, in the
sandbox and in bridge (`ZENDESK_RATE_WINDOW_SECONDS`), so that the budget binds within seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge import schema, wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.e2e.worker_proc import write_mappings
from tests.fixtures_sandbox import REPO, SandboxWorld, settings_for

LIMIT = 30  # requests per window: bridge's budget
WINDOW = 2  # seconds
ACCOUNT_LIMIT = 4 * LIMIT  # what the sandbox's account allows in the same window


@pytest.fixture
async def account(db_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[SandboxWorld, Path, Path]]:
    """A seeded account with three mappings' objects, and two folders splitting the mappings
    between two processes (vehicles and brands in one, prospects in the other)."""
    every = write_mappings(tmp_path / "all", "1h")
    vehicles = write_mappings(tmp_path / "vehicles", "1h", prospects=False)
    prospects = tmp_path / "prospects"
    prospects.mkdir()
    (prospects / "prospects.yaml").write_text((every / "prospects.yaml").read_text())
    async with Sandbox() as sandbox:
        seed = seed_demo(sandbox, vehicles=150, brands=6, prospects=150)
        world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_mappings=every))
        mappings = load_mappings(every)
        async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
            await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))
        sandbox.zendesk.rate_limit, sandbox.zendesk.rate_window = ACCOUNT_LIMIT, WINDOW
        sandbox.counters.reset()
        yield world, vehicles, prospects


async def backfill(world: SandboxWorld, mappings: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ, **world.env(), "BRIDGE_MAPPINGS": str(mappings), "BRIDGE_BATCH_SIZE": "3",
        "ZENDESK_RATE_LIMIT": str(LIMIT), "ZENDESK_RATE_WINDOW_SECONDS": str(WINDOW),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "backfill", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_two_backfills_together_stay_under_the_budget_without_a_429(
    account: tuple[SandboxWorld, Path, Path],
) -> None:
    world, vehicles, prospects = account
    first, second = await backfill(world, vehicles), await backfill(world, prospects)
    outputs = await asyncio.wait_for(asyncio.gather(first.communicate(), second.communicate()), 120)
    assert (first.returncode, second.returncode) == (0, 0), [err.decode()[-2000:] for _, err in outputs]
    counters = world.sandbox.counters
    arrivals = sorted(entry.arrived for entry in counters.entries("zendesk"))
    assert len(arrivals) > 3 * LIMIT  # several windows' worth: the budget had to bind
    assert busiest_window(arrivals, WINDOW) <= LIMIT  # each process pacing itself put 93 in one
    assert counters.count("zendesk", status=429) == 0
    assert len(world.sandbox.zendesk.records("vehicle")) == 150
    assert len(world.sandbox.zendesk.records("prospect_copy")) == 150


def busiest_window(times: list[float], window: float) -> int:
    """The most of `times` (sorted) inside any span of `window` seconds."""
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most
