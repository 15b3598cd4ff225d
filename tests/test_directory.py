"""The people directory against the sandbox over loopback and real Postgres: a resumable first
load, refreshes from the stored cursor, and lookups answered without a search per value."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bridge.directory import Directory, kinds_for
from bridge.http.transport import HttpConfig, Transport
from bridge.mapping.load import load_mappings
from bridge.sandbox import Sandbox
from bridge.store import directory as store
from bridge.zendesk.auth import BearerToken
from bridge.zendesk.client import ZendeskClient, ZendeskConfig
from bridge.zendesk.exports import ExportPacer, ExportPage, IncrementalExports
from bridge.zendesk.wire import error_detail as zendesk_error_detail

REPO = Path(__file__).resolve().parents[1]


class Killed(Exception):
    """Stands for the process dying between two export pages."""


class DyingExports(IncrementalExports):
    """The real paginator, cut off after `pages` pages have been handed out."""

    def __init__(self, *args: Any, pages: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.left = pages

    async def pages(self, kind: Any, cursor: str | None = None, *, start_time: int = 0) -> AsyncIterator[ExportPage]:  # type: ignore[override]
        async for page in super().pages(kind, cursor, start_time=start_time):
            if self.left == 0:
                raise Killed
            self.left -= 1
            yield page


@dataclass
class Rig:
    sandbox: Sandbox
    pool: asyncpg.Pool
    transport: Transport
    zendesk: ZendeskClient

    def exports(self, per_page: int = 1000, cls: type[IncrementalExports] = IncrementalExports, **kw: Any) -> IncrementalExports:
        async def no_wait(seconds: float) -> None:
            return None

        return cls(self.transport, self.sandbox.zendesk_url, pacer=ExportPacer(10_000, sleep=no_wait), per_page=per_page, **kw)

    def directory(self, exports: IncrementalExports | None = None) -> Directory:
        return Directory(self.pool, exports or self.exports(), self.zendesk)

    def requests(self, route: str) -> int:
        return self.sandbox.counters.count("zendesk", route=route)


@pytest.fixture
async def rig(db_pool: asyncpg.Pool) -> AsyncIterator[Rig]:
    async with Sandbox() as sandbox, aiohttp.ClientSession() as session:
        sandbox.zendesk.exports.rate_limit = 1000
        transport = Transport(session, HttpConfig(api="zendesk", max_attempts=1), auth=BearerToken(sandbox.zendesk.issue_token()),
                              error_parser=zendesk_error_detail)  # fmt: skip
        yield Rig(sandbox, db_pool, transport, ZendeskClient(transport, ZendeskConfig(base_url=sandbox.zendesk_url)))


async def test_a_first_load_killed_between_pages_resumes_after_the_last_saved_page(rig: Rig) -> None:
    for i in range(2500):
        rig.sandbox.zendesk.add_user(f"User {i}", f"user.{i}@example.com")
    with pytest.raises(Killed):
        await rig.directory(rig.exports(cls=DyingExports, pages=1)).refresh("users")
    async with rig.pool.acquire() as conn:
        assert await store.count(conn, "users") == 1000
        stored = await store.load_cursor(conn, "users")
    assert stored is not None and not stored.complete
    fresh = rig.directory()
    assert not fresh.covers("zen:user", "email")  # half a directory answers nothing
    before = rig.requests("incremental_users")
    report = await fresh.refresh("users")
    assert (report.pages, report.people) == (2, 1500)
    assert rig.requests("incremental_users") - before == 2  # nothing read twice
    async with rig.pool.acquire() as conn:
        assert await store.count(conn, "users") == 2500
    assert fresh.covers("zen:user", "email") and not fresh.covers("zen:organization", "name")


async def test_a_refresh_reads_only_what_changed_since_the_stored_cursor(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    uid = zd.add_user("Ann", "ann@example.com")
    await rig.directory().refresh("users")
    zd.update_user(uid, email="ann.new@example.com")
    gone = zd.add_user("Gone", "gone@example.com")
    zd.delete_user(gone)
    report = await rig.directory().refresh("users")
    assert (report.pages, report.people) == (1, 2)
    async with rig.pool.acquire() as conn:
        found = await store.find(conn, "users", "email", ["ann@example.com", "ann.new@example.com", "gone@example.com"])
    assert found == {"ann.new@example.com": str(uid)}


async def test_lookups_answer_from_the_directory_and_a_miss_costs_one_batched_check(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    ann = zd.add_user("Ann", "Ann.Lee@Example.com", other_emails=("ann@home.example.org",))
    bob = zd.add_user("Bob", "bob@example.com")
    zd.delete_user(bob)
    directory = rig.directory()
    await directory.refresh("users")
    late = [zd.add_user(f"Late {i}", f"late.{i}@example.com", f"outreach:prospect:{i}") for i in range(150)]
    wanted = [("ann.lee@EXAMPLE.com", "outreach:prospect:900"), ("ANN@home.example.org", None),
              ("bob@example.com", "outreach:prospect:901"), ("nobody@example.com", "outreach:prospect:902")]
    wanted += [(f"late.{i}@example.com", f"outreach:prospect:{i}") for i in range(150)]
    rig.sandbox.counters.reset()
    found, unknown = await directory.resolve("zen:user", "email", wanted)
    assert found == {"ann.lee@EXAMPLE.com": str(ann), "ANN@home.example.org": str(ann),
                     **{f"late.{i}@example.com": str(late[i]) for i in range(150)}}  # fmt: skip
    assert unknown == set()
    assert rig.requests("users_show_many") == 2  # 152 hints, 100 per request
    assert rig.requests("users_search") == 0
    rig.sandbox.counters.reset()
    await directory.resolve("zen:user", "email", wanted[:2])
    assert rig.sandbox.counters.total("zendesk") == 0  # all known: no request at all


async def test_a_check_zendesk_does_not_answer_leaves_the_misses_unknown(rig: Rig) -> None:
    directory = rig.directory()
    await directory.refresh("users")
    rig.sandbox.faults.add("zendesk", "status", status=503, path_contains="/users/show_many", times=-1)
    found, unknown = await directory.resolve("zen:user", "email", [("x@example.com", "outreach:prospect:1")])
    assert (found, unknown) == ({}, {"x@example.com"})


def test_only_mappings_with_matched_zendesk_lookups_need_the_directory() -> None:
    mappings = load_mappings(REPO / "mappings")
    assert kinds_for([mappings["vehicles"]]) == {"users"}
    assert kinds_for([mappings["vehicle_brands"]]) == set()


async def test_the_worker_schedule_refreshes_between_runs_until_stopped(rig: Rig) -> None:
    mappings = load_mappings(REPO / "mappings")
    directory = rig.directory()
    stop = asyncio.Event()
    task = asyncio.create_task(directory.keep_fresh(mappings.values(), 0.01, stop))
    rig.sandbox.zendesk.add_user("Ann", "ann@example.com")
    deadline = asyncio.get_running_loop().time() + 10
    while not directory.covers("zen:user", "email"):
        assert asyncio.get_running_loop().time() < deadline, "no refresh within 10 s"
        await asyncio.sleep(0.01)
    rig.sandbox.faults.add("zendesk", "status", status=400, path_contains="/incremental/", times=1)
    while rig.sandbox.counters.count("zendesk", route="incremental_users", status=400) == 0:
        assert asyncio.get_running_loop().time() < deadline, "no second refresh within 10 s"
        await asyncio.sleep(0.01)
    assert not task.done()  # a refused export is logged, the schedule goes on
    assert rig.requests("incremental_organizations") == 0  # no mapping looks organizations up
    stop.set()
    await asyncio.wait_for(task, 5)
