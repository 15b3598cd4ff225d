"""Zendesk's client-credentials exchange seen from the sandbox over loopback: a token endpoint
that paces and stumbles delays a run, it does not stop it."""

from __future__ import annotations

import asyncio

from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import assert_exact, backfill, prepare_zendesk


async def revoke_tokens_while_a_job_is_held(world: SandboxWorld) -> None:
    """Once a vehicle job is held queued: every token dies, and the token endpoint answers 429
    (with Retry-After), then 503, before it mints again; then the job runs."""
    zendesk = world.sandbox.zendesk
    try:
        async with asyncio.timeout(10):
            while not zendesk.jobs.held():
                await asyncio.sleep(0.005)
        # No await in between: the next Zendesk request is refused and must renew the token.
        zendesk.expire_tokens()
        faults = world.sandbox.faults
        faults.add("zendesk", "status", status=429, retry_after=0.3, path_contains="/oauth/tokens")
        faults.add("zendesk", "status", status=503, path_contains="/oauth/tokens")
    finally:
        zendesk.jobs.release()


async def test_a_token_endpoint_answering_429_then_503_after_a_401_is_waited_out(
    world: SandboxWorld,
) -> None:
    await prepare_zendesk(world)
    world.sandbox.counters.reset()
    world.sandbox.zendesk.jobs.hold(lambda key, action, items: key == "vehicle")
    revoker = asyncio.create_task(revoke_tokens_while_a_job_is_held(world))

    reports = await backfill(world)
    await revoker

    assert {m: r.status for m, r in reports.items()} == {
        "vehicle_brands": "succeeded", "vehicles": "succeeded",
    }
    assert_exact(world.sandbox)
    entries = world.sandbox.counters.entries("zendesk")
    tokens = [e for e in entries if "/oauth/tokens" in e.path]
    assert [e.status for e in tokens] == [201, 429, 503, 201]
    assert tokens[2].at >= tokens[1].at + 0.3 - 0.01  # Retry-After honoured
    assert any(e.status == 401 for e in entries)
