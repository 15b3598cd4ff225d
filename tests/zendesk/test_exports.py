"""The incremental-export paginator against the sandbox over loopback: pages, identities,
deletions, resuming from a cursor, pacing to the export limit and riding out its 429s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bridge.http.transport import HttpConfig, Transport
from bridge.sandbox import Sandbox, ZendeskSandbox
from bridge.zendesk.auth import BearerToken
from bridge.zendesk.exports import ExportPacer, IncrementalExports
from bridge.zendesk.wire import error_detail as zendesk_error_detail
from tests.sandbox.conftest import FakeClock


@dataclass
class Rig:
    sandbox: Sandbox
    clock: FakeClock
    transport: Transport
    slept: list[float]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    zendesk = ZendeskSandbox(clock=clock, export_rate_limit=1000)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # the transport's waits move the sandbox's clock
        slept.append(seconds)
        clock.advance(seconds)

    async with Sandbox(zendesk=zendesk) as sandbox, aiohttp.ClientSession() as session:
        auth = BearerToken(zendesk.issue_token())
        transport = Transport(session, HttpConfig(api="zendesk"), auth=auth,
                              error_parser=zendesk_error_detail, sleep=sleep)  # fmt: skip
        yield Rig(sandbox, clock, transport, slept)


def exports(rig: Rig, per_page: int = 1000, per_minute: float = 10_000) -> IncrementalExports:
    async def no_wait(seconds: float) -> None:  # pacing has its own test
        return None

    pacer = ExportPacer(per_minute, sleep=no_wait)
    return IncrementalExports(rig.transport, rig.sandbox.zendesk_url, pacer=pacer, per_page=per_page)


async def test_users_come_in_pages_with_every_identity_and_deletions_then_resume(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    ids = [zd.add_user(f"User {i}", f"user.{i}@example.com") for i in range(25)]
    two = zd.add_user("Two Mails", "Main@Example.com", "ext-2", other_emails=("other@example.com",))
    zd.delete_user(ids[0])
    pages = [p async for p in exports(rig, per_page=10).pages("users")]
    assert [len(p.entries) for p in pages] == [10, 10, 6] and [p.end_of_stream for p in pages] == [False, False, True]
    entries = {e.id: e for p in pages for e in p.entries}
    assert entries[str(two)].emails == ("Main@Example.com", "other@example.com")
    assert entries[str(two)].external_id == "ext-2"
    assert entries[str(ids[0])].deleted and not entries[str(ids[1])].deleted
    zd.add_user("Later", "later@example.com")
    again = [p async for p in exports(rig).pages("users", pages[-1].cursor)]
    assert [[e.name for e in p.entries] for p in again] == [["Later"]]
    assert rig.sandbox.counters.count("zendesk", route="incremental_users") == 4


async def test_organizations_export_marks_deleted_ones(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    keep, gone = zd.add_organization("Keep", "org-1"), zd.add_organization("Gone")
    zd.delete_organization(gone)
    rig.clock.advance(120)
    pages = [p async for p in exports(rig).pages("organizations")]
    assert {(e.id, e.name, e.deleted) for p in pages for e in p.entries} == {(str(keep), "Keep", False), (str(gone), "Gone", True)}


async def test_organizations_are_read_by_time_and_resume_from_the_last_end_time(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    made = []
    for i in range(7):
        made.append(zd.add_organization(f"Org {i}", f"org-{i}"))
        rig.clock.advance(1)
    rig.clock.advance(120)
    pages = [p async for p in exports(rig, per_page=3).pages("organizations")]
    assert pages[-1].end_of_stream and not any(p.end_of_stream for p in pages[:-1])
    assert {e.id for p in pages for e in p.entries} >= {str(m) for m in made}
    assert pages[-1].cursor is not None and pages[-1].cursor.isdigit()  # the last end_time
    assert rig.sandbox.counters.count("zendesk", route="incremental_organizations") == len(pages)
    zd.add_organization("Fresh", "org-fresh")
    later = [p async for p in exports(rig).pages("organizations", pages[-1].cursor)]
    assert [e.name for p in later for e in p.entries] == ["Org 6", "Fresh"]  # its start second again
    # The cursor is now Fresh's second, under a minute ago: Zendesk refuses the start time,
    # and there is nothing new to read yet.
    idle = [p async for p in exports(rig).pages("organizations", later[-1].cursor)]
    assert [(p.entries, p.cursor, p.end_of_stream) for p in idle] == [([], later[-1].cursor, True)]
    # A stored cursor from the old cursor-based form reads everything again.
    again = [p async for p in exports(rig).pages("organizations", "MTU3NjYxMzUzOS4wfHw0Njd8")]
    assert {e.id for p in again for e in p.entries} >= {str(m) for m in made}


async def test_a_page_that_makes_no_progress_moves_past_its_second(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    for i in range(5):
        zd.add_organization(f"Same second {i}")  # five rows in one second, pages of two
    rig.clock.advance(120)
    pages = [p async for p in exports(rig, per_page=2).pages("organizations")]
    assert len({e.id for p in pages for e in p.entries}) == len(zd.organizations)
    assert len(pages) <= 3


async def test_pacer_spaces_requests_to_the_export_limit() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = ExportPacer(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        await pacer.wait()
    assert waits == [6.0, 6.0, 6.0] and now[0] == 18.0


async def test_an_export_429_is_waited_out_as_retry_after_says(rig: Rig) -> None:
    zd = rig.sandbox.zendesk
    for i in range(5):
        zd.add_user(f"User {i}", f"user.{i}@example.com")
    zd.exports.rate_limit = 1
    pages = [p async for p in exports(rig, per_page=2).pages("users")]
    assert sum(len(p.entries) for p in pages) == 5
    assert rig.sandbox.counters.count("zendesk", route="incremental_users", status=429) == 2
    assert rig.slept and all(1 <= s <= 60 for s in rig.slept)
