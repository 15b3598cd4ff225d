"""What email-matched user lookups cost against Zendesk, measured on the sandbox's counters.

2,000 vehicles whose `driver` is matched to a Zendesk user by email, 300 distinct people who
exist in Zendesk on their own (no `outreach:` external id, emails in another case): the sync
must cost at most two requests per bulk job plus the directory's export pages, never a
search per person, and every lookup must land.
"""

from __future__ import annotations

from bridge import schema, wiring
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.sandbox.seed import people_of_their_own, seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, settings_for
from tests.pipeline.test_relationships import actual_lookups, backfill, expected_lookups

EXPORTS = ("incremental_users", "incremental_organizations")


async def test_2000_vehicles_300_people_cost_two_requests_per_job_plus_directory_pages(
    sandbox: Sandbox, db_dsn: str
) -> None:
    seed = seed_demo(sandbox, vehicles=2000, brands=6, prospects=300)
    people_of_their_own(sandbox, 300)
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_page_size=100))
    mappings = load_mappings(world.settings.bridge_mappings)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))
    sandbox.counters.reset()

    reports = await backfill(world)

    assert reports["vehicles"].failed == 0 and reports["vehicles"].parked == 0
    expected = expected_lookups(sandbox)
    by_email = {u["email"].lower(): str(uid) for uid, u in sandbox.zendesk.users.items()}
    for ext, lookups in expected.items():  # expected_lookups reads emails as Outreach has them
        vid = ext.rsplit(":", 1)[1]
        rels = sandbox.outreach.get("vehicles", int(vid))["relationships"]  # type: ignore[index]
        driver = (rels["main_driver"]["data"] or {}).get("id")
        email = sandbox.outreach.get("prospect", driver)["attributes"]["emails"][0] if driver else None  # type: ignore[index]
        lookups["driver"] = by_email.get(email) if email else None
    assert actual_lookups(sandbox) == expected
    counters = sandbox.counters
    jobs = counters.count("zendesk", route="create_job")
    pages = sum(counters.count("zendesk", route=r) for r in EXPORTS)
    searches = counters.count("zendesk", route="users_search")
    assert searches == 0
    assert counters.total("zendesk") <= 2 * jobs + pages, counters.snapshot()["by_route"]["zendesk"]
