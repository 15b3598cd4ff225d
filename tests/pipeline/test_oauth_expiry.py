"""A backfill that outlives many short-lived Outreach access tokens, over loopback.

The sandbox issues tokens that live 1.5 s, lets one be minted per 0.5 s and honours each
refresh token once, as the real API does at 2 h / 60 s (api/outreach.md, Auth). With latency
on every Outreach request, one run spans several expiries and rotations; it must end exactly
like the source, with the newest refresh token stored.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from pydantic import SecretStr

from bridge import wiring
from bridge.http.transport import HttpConfig, Transport
from bridge.outreach.auth import OAuthRefresh
from bridge.store import pool as pool_module
from bridge.store.crypto import TokenCipher
from bridge.store.tokens import PgTokenStore
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_sync import assert_exact, backfill, prepare_zendesk

SECRET_KEY = "test-secret-key-for-tokens"


@pytest.fixture
async def oauth_world(world: SandboxWorld, db_dsn: str) -> SandboxWorld:
    seed = world.seed
    settings = settings_for(
        world.sandbox, seed, db_dsn,
        outreach_access_token=None,
        outreach_client_id=seed.outreach_client_id,
        outreach_client_secret=SecretStr(seed.outreach_client_secret),
        outreach_refresh_token=SecretStr(seed.outreach_refresh_token),
        bridge_secret_key=SecretStr(SECRET_KEY),
        bridge_page_size=10,
    )
    oauth = SandboxWorld(world.sandbox, seed, settings)
    await prepare_zendesk(oauth)
    outreach = world.sandbox.outreach
    outreach.access_ttl, outreach.mint_interval = 1.5, 0.5
    world.sandbox.faults.set_latency("outreach", 0.1)
    world.sandbox.counters.reset()
    return oauth


async def test_a_backfill_spanning_many_token_expiries_finishes_exactly(oauth_world: SandboxWorld) -> None:
    reports = await backfill(oauth_world)
    assert {m: r.status for m, r in reports.items()} == {"vehicle_brands": "succeeded", "vehicles": "succeeded"}
    assert_exact(oauth_world.sandbox)
    counters = oauth_world.sandbox.counters
    mints = counters.count("outreach", route="oauth_token", status=200)
    assert mints >= 3  # the run outlived several tokens, each renewed ahead of its expiry
    assert counters.count("outreach", route="oauth_token") == mints + counters.count(
        "outreach", route="oauth_token", status=429
    )  # never a refused grant
    await _assert_newest_refresh_token_stored(oauth_world)


async def test_a_new_refresh_token_in_the_environment_takes_over_the_stored_chain(
    oauth_world: SandboxWorld,
) -> None:
    oauth_world.sandbox.faults.set_latency("outreach", 0)
    oauth_world.settings = oauth_world.settings.model_copy(update={"bridge_page_size": 100})
    await backfill(oauth_world)  # the store now holds a chain seeded by the first token
    outreach, seed = oauth_world.sandbox.outreach, oauth_world.seed
    # The operator re-authorises (the stored chain and its access tokens are revoked) and sets
    # the new refresh token, as the invalid_grant message tells them to.
    fresh = outreach.add_oauth_client(seed.outreach_client_id, seed.outreach_client_secret)
    outreach.expire_tokens()
    changed = outreach.ids("vehicles")[:3]
    for vid in changed:
        outreach.update("vehicles", vid, color="Ultra Violet")
    settings = oauth_world.settings.model_copy(update={"outreach_refresh_token": SecretStr(fresh)})
    reports = await backfill(SandboxWorld(oauth_world.sandbox, seed, settings))
    assert reports["vehicles"].status == "succeeded" and reports["vehicles"].written == len(changed)
    assert_exact(oauth_world.sandbox)
    await _assert_newest_refresh_token_stored(oauth_world)


async def _assert_newest_refresh_token_stored(world: SandboxWorld) -> None:
    """Under strict rotation only the newest refresh token mints: the stored one must."""
    s = world.settings
    async with wiring.open_pool(s) as pool:
        stored = await PgTokenStore(pool, TokenCipher(SECRET_KEY)).load("outreach")
    assert stored is not None
    world.sandbox.outreach.mint_interval = 0
    form = {"grant_type": "refresh_token", "client_id": world.seed.outreach_client_id,
            "client_secret": world.seed.outreach_client_secret, "refresh_token": stored.refresh_token}  # fmt: skip
    async with aiohttp.ClientSession() as http, http.post(f"{s.outreach_api_url}/oauth/token", data=form) as r:
        assert r.status == 200, await r.text()


async def test_two_processes_share_one_rotating_chain(oauth_world: SandboxWorld, db_dsn: str) -> None:
    """Two replicas (two pools, two auth objects) renew 0.6 s tokens through one store:
    each mint is adopted by the other, so no refresh token is ever used twice."""
    outreach, seed = oauth_world.sandbox.outreach, oauth_world.seed
    outreach.access_ttl, outreach.mint_interval = 0.6, 0.2
    oauth_world.sandbox.faults.set_latency("outreach", 0)
    cipher = TokenCipher(SECRET_KEY)
    pools = [await pool_module.create_pool(db_dsn, max_size=3) for _ in range(2)]
    try:
        async with aiohttp.ClientSession() as http:
            replicas = [
                OAuthRefresh(
                    http, token_url=f"{oauth_world.settings.outreach_api_url}/oauth/token",
                    client_id=seed.outreach_client_id, client_secret=seed.outreach_client_secret,
                    refresh_token=seed.outreach_refresh_token, store=PgTokenStore(pool, cipher),
                )
                for pool in pools
            ]
            url = f"{oauth_world.settings.outreach_api_url}/api/v2/customObjects/vehicles?page[size]=1"

            async def keep_calling(auth: OAuthRefresh) -> int:
                ok, deadline = 0, asyncio.get_running_loop().time() + 2.0
                while asyncio.get_running_loop().time() < deadline:
                    response = await Transport(http, HttpConfig(api="outreach"), auth=auth).request("GET", url)
                    ok += response.status == 200
                    await asyncio.sleep(0.02)
                return ok

            done = await asyncio.gather(*(keep_calling(a) for a in replicas for _ in range(3)))
        assert min(done) > 10
    finally:
        for pool in pools:
            await pool.close()
    counters = oauth_world.sandbox.counters
    assert counters.count("outreach", route="oauth_token", status=200) >= 3
    assert counters.count("outreach", route="oauth_token", status=400) == 0
    await _assert_newest_refresh_token_stored(oauth_world)
