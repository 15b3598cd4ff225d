"""Relationships end to end: lookups resolved, parked, filled, moved, cleared and re-parked.

Sandbox over loopback, real Postgres. Expected lookup values are computed here from the
sandbox's own state (Outreach relationships, Zendesk users and records), independently of
bridge's resolver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge import schema, wiring
from bridge.commands.sync import run_backfill
from bridge.mapping.load import load_mappings
from bridge.mapping.order import sync_order
from bridge.pipeline.report import RunReport
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, exports_refused, settings_for

REPO = Path(__file__).resolve().parents[2]


async def prepare(world: SandboxWorld) -> None:
    mappings = load_mappings(world.settings.bridge_mappings)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))


async def backfill(world: SandboxWorld, names: list[str] | None = None, **options: Any) -> dict[str, RunReport]:
    mappings = load_mappings(world.settings.bridge_mappings)
    opts = SyncOptions(batch_size=100, job_concurrency=4, **options)
    reports = await run_backfill(world.settings, mappings, names or sync_order(mappings), opts)
    return {r.mapping: r for r in reports}


async def parked_rows(world: SandboxWorld, mapping: str = "vehicles") -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        return list(await conn.fetch("SELECT * FROM parked_links WHERE mapping = $1", mapping))
    finally:
        await conn.close()


def zendesk_id(sandbox: Sandbox, obj: str, external_id: str) -> str | None:
    record = sandbox.zendesk.record_by_external_id(obj, external_id)
    return None if record is None else record["id"]


def user_by_email(sandbox: Sandbox) -> dict[str, str]:
    return {u["email"]: str(uid) for uid, u in sandbox.zendesk.users.items()}


def expected_lookups(sandbox: Sandbox) -> dict[str, dict[str, str | None]]:
    """external id → {driver, brand} as they must be in Zendesk, from the sandbox's state."""
    users = user_by_email(sandbox)
    out: dict[str, dict[str, str | None]] = {}
    for vid in sandbox.outreach.ids("vehicles"):
        rels = sandbox.outreach.get("vehicles", vid)["relationships"]  # type: ignore[index]
        driver = (rels["main_driver"]["data"] or {}).get("id")
        brand = (rels["brand"]["data"] or {}).get("id")
        email = sandbox.outreach.get("prospect", driver)["attributes"]["emails"][0] if driver else None  # type: ignore[index]
        out[f"outreach:vehicles:{vid}"] = {
            "driver": users.get(email) if email else None,
            "brand": zendesk_id(sandbox, "vehicle_brand", f"outreach:vehicle_brands:{brand}") if brand else None,
        }
    return out


def actual_lookups(sandbox: Sandbox) -> dict[str, dict[str, str | None]]:
    return {
        r["external_id"]: {k: r["custom_object_fields"].get(k) for k in ("driver", "brand")}
        for r in sandbox.zendesk.records("vehicle")
    }


@pytest.fixture
async def ready(world: SandboxWorld) -> SandboxWorld:
    await prepare(world)
    world.sandbox.counters.reset()
    return world


async def test_every_lookup_points_at_the_right_record(ready: SandboxWorld) -> None:
    reports = await backfill(ready)
    sb = ready.sandbox
    expected = expected_lookups(sb)
    assert actual_lookups(sb) == expected
    with_driver = sum(1 for v in expected.values() if v["driver"])
    with_brand = sum(1 for v in expected.values() if v["brand"])
    assert with_driver > 100 and with_brand == len(expected)  # the test means something
    # Drivers without a Zendesk user are parked (by email), never dropped.
    parked = await parked_rows(ready)
    unmatched = {ext for ext, v in expected.items() if v["driver"] is None}
    rels = {f"outreach:vehicles:{vid}": sb.outreach.get("vehicles", vid)["relationships"]  # type: ignore[index]
            for vid in sb.outreach.ids("vehicles")}
    waiting = {e for e in unmatched if rels[e]["main_driver"]["data"] is not None}
    assert {f"outreach:vehicles:{r['source_id']}" for r in parked} == waiting
    assert all(r["field"] == "driver" and r["match"] == "email" and "@" in r["match_value"] for r in parked)
    assert reports["vehicles"].parked == len(waiting) and reports["vehicles"].failed == 0
    # One Outreach list request per page, with the driver's email included on the page.
    lists = [e for e in sb.counters.entries("outreach") if e.route == "list_custom" and "vehicles" in e.path]
    assert len(lists) == reports["vehicles"].pages


async def test_a_user_created_later_is_filled_by_the_next_run_without_rewriting(ready: SandboxWorld) -> None:
    await backfill(ready)
    parked = await parked_rows(ready)
    assert parked
    email = parked[0]["match_value"]
    uid = ready.sandbox.zendesk.add_user("Late Comer", email)
    ready.sandbox.counters.reset()
    reports = await backfill(ready)
    assert reports["vehicles"].written == 0  # filled by a bulk update, not rewritten
    filled = [r for r in actual_lookups(ready.sandbox).items() if r[1]["driver"] == str(uid)]
    assert {f"outreach:vehicles:{r['source_id']}" for r in parked if r["match_value"] == email} == {e for e, _ in filled}
    assert ready.sandbox.counters.count("zendesk", method="POST", route="create_job") == 1


async def test_referrer_synced_before_its_target_is_parked_then_filled(ready: SandboxWorld) -> None:
    first = await backfill(ready, ["vehicles"])
    total = len(ready.sandbox.outreach.ids("vehicles"))
    assert first["vehicles"].written == total  # nothing held back
    assert all(v["brand"] is None for v in actual_lookups(ready.sandbox).values())
    assert sum(1 for r in await parked_rows(ready) if r["field"] == "brand") == total
    second = await backfill(ready, ["vehicle_brands"])
    assert second["vehicle_brands"].written == len(ready.sandbox.outreach.ids("vehicle_brands"))
    assert actual_lookups(ready.sandbox) == expected_lookups(ready.sandbox)
    assert not [r for r in await parked_rows(ready) if r["field"] == "brand"]
    third = await backfill(ready)
    assert third["vehicles"].written == 0 and third["vehicles"].skipped > 0  # no needless rewrites


async def test_changed_then_nulled_relationship_moves_then_clears_the_lookup(ready: SandboxWorld) -> None:
    await backfill(ready)
    sb = ready.sandbox
    vid = sb.outreach.ids("vehicles")[3]
    brands = sb.outreach.ids("vehicle_brands")
    current = sb.outreach.get("vehicles", vid)["relationships"]["brand"]["data"]["id"]  # type: ignore[index]
    other = next(b for b in brands if b != current)
    sb.outreach.set_relationship("vehicles", vid, "brand", other)
    await backfill(ready)
    ext = f"outreach:vehicles:{vid}"
    assert actual_lookups(sb)[ext]["brand"] == zendesk_id(sb, "vehicle_brand", f"outreach:vehicle_brands:{other}")
    sb.outreach.set_relationship("vehicles", vid, "brand", None)
    sb.outreach.set_relationship("vehicles", vid, "main_driver", None)
    await backfill(ready)
    assert actual_lookups(sb)[ext] == {"driver": None, "brand": None}
    assert not [r for r in await parked_rows(ready) if r["source_id"] == str(vid)]
    assert actual_lookups(sb) == expected_lookups(sb)


async def test_a_target_removed_from_zendesk_reparks_and_the_rest_keep_syncing(ready: SandboxWorld) -> None:
    await backfill(ready)
    sb = ready.sandbox
    brand = sb.outreach.ids("vehicle_brands")[0]
    gone = zendesk_id(sb, "vehicle_brand", f"outreach:vehicle_brands:{brand}")
    assert gone is not None and sb.zendesk.delete_record("vehicle_brand", gone)
    users = {v for v in sb.outreach.ids("vehicles")
             if sb.outreach.get("vehicles", v)["relationships"]["brand"]["data"]["id"] == brand}  # type: ignore[index]
    others = [v for v in sb.outreach.ids("vehicles") if v not in users][:10]
    assert users
    for vid in [*users, *others]:
        sb.outreach.update("vehicles", vid, color="Teal")
    reports = await backfill(ready)
    assert reports["vehicles"].failed == 0 and reports["vehicles"].written == len(users) + len(others)
    lookups = actual_lookups(sb)
    assert all(lookups[f"outreach:vehicles:{v}"]["brand"] is None for v in users)
    assert all(sb.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{v}")["custom_object_fields"]["color"] == "teal"  # type: ignore[index]
               for v in [*users, *others])
    reparked = [r for r in await parked_rows(ready) if r["field"] == "brand"]
    assert {r["source_id"] for r in reparked} == {str(v) for v in users}
    assert {r["failed_zendesk_id"] for r in reparked} == {gone}
    # Changed again: the refused id is not sent again, so no job fails and none is retried.
    def failed_items() -> int:
        return sum(1 for j in sb.zendesk.jobs.statuses.values() for i in j["results"] or [] if not i["success"])

    assert failed_items() == len(users)  # the first write of each tried the deleted brand once
    for vid in users:
        sb.outreach.update("vehicles", vid, color="Plum")
    again = await backfill(ready)
    assert again["vehicles"].failed == 0 and again["vehicles"].written == len(users)
    assert failed_items() == len(users)


CYCLE_TEAMS = """
source: {type: teams}
target: {object: team, name: "{name}"}
fields: {team_name: name}
relationships:
  captain: {from: captain, target: mapping:players}
"""
CYCLE_PLAYERS = """
source: {type: players}
target: {object: player, name: "{name}"}
fields: {player_name: name}
relationships:
  team: {from: team, target: mapping:teams}
"""


async def test_a_cycle_between_two_mappings_ends_with_both_sides_filled(sandbox: Sandbox, db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "teams.yaml").write_text(CYCLE_TEAMS)
    (tmp_path / "players.yaml").write_text(CYCLE_PLAYERS)
    out = sandbox.outreach
    out.add_type("teams", custom_object=True, display_field="name", attributes={"name": "string"}, relationships={"captain": "players"})
    out.add_type("players", custom_object=True, display_field="name", attributes={"name": "string"}, relationships={"team": "teams"})
    teams = [out.put("teams", {"name": f"Team {i}"}) for i in range(5)]
    players = [out.put("players", {"name": f"Player {i}"}, {"team": teams[i % 5]}) for i in range(20)]
    for i, tid in enumerate(teams):
        out.set_relationship("teams", tid, "captain", players[i])
    seed = seed_demo(sandbox, vehicles=0, brands=0, prospects=0)
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_mappings=tmp_path))
    await prepare(world)
    reports = await backfill(world)
    assert all(r.failed == 0 for r in reports.values())
    zd = sandbox.zendesk
    for i, tid in enumerate(teams):
        team = zd.record_by_external_id("team", f"outreach:teams:{tid}")
        assert team and team["custom_object_fields"]["captain"] == zendesk_id(sandbox, "player", f"outreach:players:{players[i]}")
    for i, pid in enumerate(players):
        player = zd.record_by_external_id("player", f"outreach:players:{pid}")
        assert player and player["custom_object_fields"]["team"] == zendesk_id(sandbox, "team", f"outreach:teams:{teams[i % 5]}")
    assert not await parked_rows(world, "teams") and not await parked_rows(world, "players")


FLEET = """
source:
  type: fleet
  filter: {FILTER}
target: {object: fleet_car, name: "{name}"}
fields: {car_name: name}
relationships:
  driver: {from: driver, target: zen:user, match: MATCH}
  brand: {from: brand, target: mapping:vehicle_brands}
  owner: {from: owner, target: zen:organization, match: external_id}
"""


async def fleet_world(sandbox: Sandbox, db_dsn: str, tmp_path: Path, *, match: str = "external_id", filter: str = "{}", cars: int = 1000) -> SandboxWorld:
    """1,000 records with three kinds of relationship; users and organizations to match."""
    seed = seed_demo(sandbox, vehicles=0, brands=8, prospects=60)
    out = sandbox.outreach
    out.add_type("fleet", custom_object=True, display_field="name", attributes={"name": "string"},
                 relationships={"driver": "prospect", "brand": "vehicle_brands", "owner": "account"})
    accounts, prospects, brands = out.ids("account"), out.ids("prospect"), out.ids("vehicle_brands")
    for aid in accounts:
        sandbox.zendesk.add_organization(f"Account {aid}", external_id=f"outreach:account:{aid}")
    for i in range(cars):
        out.put("fleet", {"name": f"Car {i}"}, {"driver": prospects[i % len(prospects)],
                                                "brand": brands[i % len(brands)], "owner": accounts[i % len(accounts)]})
    (tmp_path / "fleet.yaml").write_text(FLEET.replace("MATCH", match).replace("{FILTER}", filter))
    (tmp_path / "vehicle_brands.yaml").write_text((REPO / "mappings" / "vehicle_brands.yaml").read_text())
    world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_mappings=tmp_path, bridge_page_size=1000))
    await prepare(world)
    await backfill(world, ["vehicle_brands"])
    return world


async def sync_fleet(world: SandboxWorld) -> RunReport:
    mappings = load_mappings(world.settings.bridge_mappings)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as services:
        return await sync_mapping(mappings["fleet"], services, SyncOptions(), mappings=mappings)


LOOKUP_ROUTES = ("users_show_many", "organizations_show_many", "users_search", "organizations_search", "list_records")


async def test_a_page_of_1000_with_three_relationship_kinds_costs_one_outreach_and_at_most_three_lookups(
    sandbox: Sandbox, db_dsn: str, tmp_path: Path
) -> None:
    world = await fleet_world(sandbox, db_dsn, tmp_path)
    sandbox.counters.reset()
    report = await sync_fleet(world)
    assert (report.fetched, report.written, report.pages) == (1000, 1000, 1)
    counters = sandbox.counters
    assert counters.count("outreach", route="list_custom") == 1
    lookups = sum(counters.count("zendesk", route=r) for r in LOOKUP_ROUTES)
    assert 1 <= lookups <= 3
    cars = sandbox.zendesk.records("fleet_car")
    users = {u["external_id"]: str(uid) for uid, u in sandbox.zendesk.users.items()}
    expected_drivers = {c["external_id"]: users.get(f"outreach:prospect:{(sandbox.outreach.get('fleet', int(c['external_id'].split(':')[-1])) or {})['relationships']['driver']['data']['id']}")
                        for c in cars}
    assert {c["external_id"]: c["custom_object_fields"]["driver"] for c in cars} == expected_drivers
    assert all(c["custom_object_fields"]["brand"] and c["custom_object_fields"]["owner"] for c in cars)


async def test_email_matches_read_the_email_from_the_same_list_request(sandbox: Sandbox, db_dsn: str, tmp_path: Path) -> None:
    world = await fleet_world(sandbox, db_dsn, tmp_path, match="email", cars=300)
    # A user carrying the conventional external id but another email is not the driver.
    first = sandbox.outreach.ids("prospect")[0]
    user = next(u for u in sandbox.zendesk.users.values() if u["external_id"] == f"outreach:prospect:{first}")
    user["email"] = "someone.else@example.com"
    exports_refused(sandbox)  # the way without the people directory (tests/e2e/test_lookup_cost.py has it)
    sandbox.counters.reset()
    report = await sync_fleet(world)
    assert report.pages == 1 and sandbox.counters.count("outreach") == 1
    (listing,) = [e.path for e in sandbox.counters.entries("outreach")]
    assert "include=driver" in listing.replace("%5B", "[").replace("%5D", "]")
    # One show_many by the conventional external id (confirmed by email), then one exact search
    # per distinct email still unknown (prospects without a Zendesk user), each asked once.
    emails = user_by_email(sandbox)
    unknown = {p for p in sandbox.outreach.ids("prospect")
               if sandbox.outreach.get("prospect", p)["attributes"]["emails"][0] not in emails}  # type: ignore[index]
    assert unknown
    assert sandbox.counters.count("zendesk", route="users_show_many") == 1
    assert sandbox.counters.count("zendesk", route="users_search") == len(unknown)
    for car in sandbox.zendesk.records("fleet_car"):
        rec = sandbox.outreach.get("fleet", int(car["external_id"].split(":")[-1]))
        email = sandbox.outreach.get("prospect", rec["relationships"]["driver"]["data"]["id"])["attributes"]["emails"][0]  # type: ignore[index]
        assert car["custom_object_fields"]["driver"] == emails.get(email)


@pytest.mark.parametrize("filter_", ["{brand.name: DMC}", "{'filter[driver][id]': 3}"])
async def test_relationship_filters_select_the_records(sandbox: Sandbox, db_dsn: str, tmp_path: Path, filter_: str) -> None:
    world = await fleet_world(sandbox, db_dsn, tmp_path, filter=filter_, cars=200)
    await sync_fleet(world)
    cars = sandbox.zendesk.records("fleet_car")
    assert cars
    for car in cars:
        rels = sandbox.outreach.get("fleet", int(car["external_id"].split(":")[-1]))["relationships"]  # type: ignore[index]
        if "brand" in filter_:
            assert sandbox.outreach.get("vehicle_brands", rels["brand"]["data"]["id"])["attributes"]["name"] == "DMC"  # type: ignore[index]
        else:
            assert rels["driver"]["data"]["id"] == 3
