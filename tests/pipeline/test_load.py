"""Loading under failure: lookups that cannot be resolved, jobs that fail as a whole, batches
refused whole. Sandbox over loopback, real Postgres; expected states come from the sandbox.
"""

from __future__ import annotations

import asyncpg
import pytest

from bridge.errors import RejectedError
from bridge.mapping.load import load_mappings
from bridge.pipeline.load import JobRetry, PageLoader
from bridge.pipeline.page import load_page
from bridge.pipeline.redrive import retry_dead_letters
from bridge.pipeline.resolve import Resolver, Target
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.pipeline.targeted import fetch_records
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import SandboxWorld, exports_refused, settings_for
from tests.pipeline.test_reconcile import fetch, services
from tests.pipeline.test_redrive import NO_DIGITS, OPTIONS, broken, vehicles
from tests.pipeline.test_relationships import actual_lookups, backfill, expected_lookups, parked_rows, prepare
from tests.pipeline.test_sync import assert_exact


def fast(world: SandboxWorld, **overrides: object) -> SandboxWorld:
    """One attempt per request: a fault that persists is seen at once, not after backoff."""
    settings = settings_for(world.sandbox, world.seed, world.settings.database_url.get_secret_value(),  # type: ignore[union-attr]
                            bridge_max_attempts=1, **overrides)
    return SandboxWorld(world.sandbox, world.seed, settings)


def users_found_only_by_search(sandbox: Sandbox) -> set[str]:
    """Gives the prospects the seed left without a Zendesk user one without an external id,
    so that only `users/search` by email can find it. Returns their emails."""
    known = {u["email"] for u in sandbox.zendesk.users.values()}
    emails = set()
    for pid in sandbox.outreach.ids("prospect"):
        email = sandbox.outreach.get("prospect", pid)["attributes"]["emails"][0]  # type: ignore[index]
        if email not in known:
            sandbox.zendesk.add_user(f"Searchable {pid}", email)
            emails.add(email)
    return emails


def refused_rows(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    return [r for r in rows if r["failed_zendesk_id"] is not None]


async def test_a_user_search_failing_every_time_parks_the_driver_and_a_later_run_fills_it(
    world: SandboxWorld,
) -> None:
    world = fast(world)
    await prepare(world)
    emails = users_found_only_by_search(world.sandbox)
    assert emails
    exports_refused(world.sandbox)
    world.sandbox.faults.add("zendesk", "status", status=500, path_contains="/users/search", times=-1)

    reports = await backfill(world)

    total = len(world.sandbox.outreach.ids("vehicles"))
    assert (reports["vehicles"].status, reports["vehicles"].written, reports["vehicles"].failed) == ("succeeded", total, 0)
    parked = await parked_rows(world)
    assert parked and {r["match_value"] for r in parked} == emails  # unknown, so waiting
    assert not refused_rows(parked)
    expected = expected_lookups(world.sandbox)
    waiting = {f"outreach:vehicles:{r['source_id']}" for r in parked}
    assert all(v["driver"] is None for e, v in actual_lookups(world.sandbox).items() if e in waiting)
    assert {e: v for e, v in actual_lookups(world.sandbox).items() if e not in waiting} == {
        e: v for e, v in expected.items() if e not in waiting}

    world.sandbox.faults.clear()
    exports_refused(world.sandbox)
    again = await backfill(world)

    assert again["vehicles"].written == 0  # filled by the fill pass, not rewritten
    assert actual_lookups(world.sandbox) == expected
    assert await parked_rows(world) == []


async def test_an_unresolved_lookup_is_not_remembered_as_absent(world: SandboxWorld) -> None:
    world = fast(world)
    (email,) = sorted(users_found_only_by_search(world.sandbox))[:1]
    target = Target("zen:user", "email", email)
    async with services(world.settings) as s, s.pool.acquire() as conn:
        resolver = Resolver(s.zendesk)
        world.sandbox.faults.add("zendesk", "status", status=503, path_contains="/users/search", times=-1)
        assert await resolver.find(conn, [target]) == {}
        world.sandbox.faults.clear()
        found = await resolver.find(conn, [target])
    user = next(uid for uid, u in world.sandbox.zendesk.users.items() if u["email"] == email)
    assert found == {target: str(user)}


async def test_a_revoked_scope_on_user_search_still_stops_the_run(world: SandboxWorld) -> None:
    world = fast(world)
    await prepare(world)
    users_found_only_by_search(world.sandbox)
    exports_refused(world.sandbox)
    world.sandbox.faults.add("zendesk", "status", status=403, path_contains="/users/search", times=-1)
    with pytest.raises(RejectedError) as caught:
        await backfill(world)
    assert caught.value.status == 403


async def test_a_job_failing_as_a_whole_is_retried_and_no_lookup_is_refused(world: SandboxWorld) -> None:
    await prepare(world)
    await backfill(world, ["vehicle_brands"])
    world.sandbox.zendesk.jobs.fail_jobs(1, "Internal Server Error")

    reports = await backfill(world, ["vehicles"])

    total = len(world.sandbox.outreach.ids("vehicles"))
    assert (reports["vehicles"].written, reports["vehicles"].failed) == (total, 0)
    assert actual_lookups(world.sandbox) == expected_lookups(world.sandbox)
    assert not refused_rows(await parked_rows(world))
    assert await fetch(world, "SELECT 1 FROM dead_letters") == []
    assert_exact(world.sandbox)


async def test_a_job_status_poll_failing_is_retried_not_fatal(world: SandboxWorld) -> None:
    world = fast(world)
    await prepare(world)
    await backfill(world, ["vehicle_brands"])
    world.sandbox.faults.add("zendesk", "status", status=502, path_contains="/job_statuses/", times=2)

    reports = await backfill(world, ["vehicles"])

    assert reports["vehicles"].failed == 0
    assert actual_lookups(world.sandbox) == expected_lookups(world.sandbox)
    assert not refused_rows(await parked_rows(world))


def poison(sandbox: Sandbox) -> int:
    """One vehicle whose record is larger than Zendesk takes: its whole job is refused."""
    vid = sandbox.outreach.ids("vehicles")[42]
    sandbox.outreach.update("vehicles", vid, color="x" * 40_000)
    return vid


async def test_one_bad_item_in_a_batch_of_100_dead_letters_only_itself(world: SandboxWorld) -> None:
    world = fast(world, bridge_page_size=100)
    await prepare(world)
    for vid in world.sandbox.outreach.ids("vehicles")[-30:]:  # 200 left: two full pages
        world.sandbox.outreach.delete("vehicles", vid)
    bad = poison(world.sandbox)  # now the last record of the second page
    world.sandbox.counters.reset()

    reports = await backfill(world)

    total = len(world.sandbox.outreach.ids("vehicles"))
    assert (reports["vehicles"].written, reports["vehicles"].failed) == (total - 1, 1)
    letters = await fetch(world, "SELECT source_id, error FROM dead_letters")
    assert [r["source_id"] for r in letters] == [str(bad)]
    assert "32768" in letters[0]["error"]  # the API's own reason
    stored = {r["external_id"] for r in world.sandbox.zendesk.records("vehicle")}
    assert len(stored) == total - 1 and f"outreach:vehicles:{bad}" not in stored
    refused = world.sandbox.counters.count("zendesk", route="create_job", status=422)
    assert 1 <= refused <= 8  # halving: one refused job per level, 100 → 50 → … → 1


async def test_dead_letter_retry_splits_a_refused_batch_too(world: SandboxWorld) -> None:
    world = fast(world)
    await prepare(world)
    await backfill(world, ["vehicle_brands"])
    async with services(world.settings) as s:
        await sync_mapping(broken(vehicles(world), "top_speed_mph", NO_DIGITS), s, SyncOptions())
    assert len(await fetch(world, "SELECT 1 FROM dead_letters")) == world.seed.vehicles
    bad = poison(world.sandbox)

    async with services(world.settings) as s:
        report = await retry_dead_letters(vehicles(world), s, OPTIONS)

    assert (report.written, report.failed) == (world.seed.vehicles - 1, 1)
    letters = await fetch(world, "SELECT source_id, error, attempts FROM dead_letters")
    assert [(r["source_id"], r["attempts"]) for r in letters] == [(str(bad), 2)]
    assert "32768" in letters[0]["error"]


@pytest.mark.parametrize("failure", ["job failed", "job POST 500"])
async def test_a_fill_job_failing_refuses_nothing_and_the_next_fill_sets_it(world: SandboxWorld, failure: str) -> None:
    world = fast(world)
    await prepare(world)
    await backfill(world)
    parked = await parked_rows(world)
    assert parked and not refused_rows(parked)
    email = parked[0]["match_value"]
    uid = world.sandbox.zendesk.add_user("Late Comer", email)
    if failure == "job failed":
        world.sandbox.zendesk.jobs.fail_jobs(1, "Internal Server Error")
    else:
        world.sandbox.faults.add("zendesk", "status", status=500, path_contains="/jobs", method="POST", times=1)

    reports = await backfill(world)  # its fill job fails

    assert reports["vehicles"].status == "succeeded"
    assert not refused_rows(await parked_rows(world))
    await backfill(world)
    waiting = {f"outreach:vehicles:{r['source_id']}" for r in parked if r["match_value"] == email}
    assert {e for e, v in actual_lookups(world.sandbox).items() if v["driver"] == str(uid)} == waiting


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def load_vehicles(world: SandboxWorld, retry: JobRetry, count: int = 30) -> object:
    """One page of `count` vehicles loaded by a PageLoader with `retry` (no sync around it)."""
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    async with services(world.settings) as s:
        ids = [str(v) for v in world.sandbox.outreach.ids("vehicles")[:count]]
        page = await fetch_records(mapping, s, ids)
        loader = PageLoader(s.zendesk, mapping.target.object, retry=retry)
        return await load_page(mapping, s.pool, loader, page)


async def test_a_job_that_keeps_failing_dead_letters_its_items_after_bounded_retries(world: SandboxWorld) -> None:
    await prepare(world)
    world.sandbox.zendesk.jobs.fail_jobs(3, "Internal Server Error")
    sleeps = Sleeps()

    outcome = await load_vehicles(world, JobRetry(attempts=3, initial=0.5, sleep=sleeps, rand=lambda: 1.0))

    assert outcome.written == [] and len(outcome.dead) == 30  # type: ignore[attr-defined]
    assert all("did not confirm" in d.error and "Internal Server Error" in d.error for d in outcome.dead)  # type: ignore[attr-defined]
    assert sleeps.delays == [0.5, 1.0]  # backoff between the three jobs, none after the last
    assert world.sandbox.counters.count("zendesk", route="create_job") == 3
    assert world.sandbox.zendesk.records("vehicle") == []


async def test_a_lost_job_status_is_retried_not_fatal(world: SandboxWorld) -> None:
    world = fast(world)
    await prepare(world)
    world.sandbox.faults.add("zendesk", "status", status=404, path_contains="/job_statuses/", times=1)

    outcome = await load_vehicles(world, JobRetry(sleep=Sleeps()))

    assert len(outcome.written) == 30 and outcome.dead == []  # type: ignore[attr-defined]
