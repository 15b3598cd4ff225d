"""Bulk job results matched back to items, and the poller: every job in flight in one request."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest
from aioresponses import CallbackResult
from yarl import URL

from bridge.errors import ApiError, AuthError, RejectedError, TransientApiError
from bridge.zendesk.jobs import JobPoller, match_results, refuses_the_batch, stops_every_job
from bridge.zendesk.models import ItemResult
from bridge.zendesk.wire import JobStatus

from .conftest import BASE, make_transport

EXT = ["outreach:car:1", "outreach:car:2", "outreach:car:3"]


def job(status: str = "completed", results: Any = None, **extra: Any) -> JobStatus:
    return JobStatus.model_validate({"id": "J1", "status": status, "results": results, **extra})


def by_ext(results: list[ItemResult]) -> dict[str, ItemResult]:
    return {r.external_id: r for r in results}


def test_results_matched_by_index_in_any_order() -> None:
    results = [{"id": "01C", "index": 2}, {"id": "01A", "index": 0}, {"id": 77, "index": 1}]

    matched = match_results(job(results=results), EXT)

    assert [r.external_id for r in matched] == EXT
    assert [r.record_id for r in matched] == ["01A", "77", "01C"]
    assert all(r.ok for r in matched)


def test_every_result_names_the_job_it_came_from() -> None:
    ok, refused = match_results(job(results=[{"id": "01A", "index": 0}, {"index": 1, "error": "RecordInvalid"}]), EXT[:2])
    failed = match_results(job(status="failed", message="boom"), EXT[:1])
    assert [r.job_id for r in (ok, refused, *failed)] == ["J1", "J1", "J1"]


def test_results_matched_by_external_id() -> None:
    results = [
        {"id": "01B", "external_id": EXT[1], "success": True, "status": "Updated"},
        {"id": "01A", "external_id": EXT[0], "success": True, "status": "Created"},
        {"external_id": EXT[2], "success": False, "error": "RecordInvalid",
         "details": "Name: cannot be blank"},
    ]

    matched = by_ext(match_results(job(results=results), EXT))

    assert matched[EXT[0]] == ItemResult(EXT[0], ok=True, record_id="01A")
    assert matched[EXT[1]] == ItemResult(EXT[1], ok=True, record_id="01B")
    assert matched[EXT[2]] == ItemResult(
        EXT[2], ok=False, error="RecordInvalid: Name: cannot be blank"
    )


def test_results_matched_by_order_when_nothing_else_says() -> None:
    results = [
        {"id": "01A", "action": "update", "success": True, "status": "Updated"},
        {"id": "01B", "action": "create", "success": True, "status": "Created"},
        {"action": "create", "success": False, "error": "RecordInvalid",
         "details": {"speed": [{"description": "must be a number"}]}},
    ]

    matched = match_results(job(results=results), EXT)

    assert [r.record_id for r in matched] == ["01A", "01B", None]
    assert [r.ok for r in matched] == [True, True, False]
    assert matched[2].error == "RecordInvalid: speed: description: must be a number"


def test_failure_with_index_but_no_id() -> None:
    results = [
        {"index": 1, "success": False, "error": "DuplicateValue", "details": "external_id taken"},
        {"index": 0, "id": "01A", "success": True},
        {"index": 2, "id": "01C", "status": "Failed", "error": "LookupInvalid"},
    ]

    matched = match_results(job(results=results), EXT)

    assert [r.ok for r in matched] == [True, False, False]
    assert matched[1].error == "DuplicateValue: external_id taken"
    assert matched[2].error == "LookupInvalid"


def test_item_without_a_result_in_a_completed_job_fails() -> None:
    matched = match_results(job(results=[{"id": "01A", "index": 0}]), EXT)

    assert matched[0].ok
    unconfirmed = ItemResult(EXT[1], ok=False, error="no result for this item in job J1", unconfirmed=True)
    assert matched[1:] == [unconfirmed, ItemResult(EXT[2], ok=False, error=unconfirmed.error, unconfirmed=True)]


def test_failed_job_fails_every_item_not_reported_ok() -> None:
    failed = job("failed", results=[{"id": "01A", "index": 0}], message="Internal error")

    matched = match_results(failed, EXT)

    assert matched[0].ok
    assert [r.error for r in matched[1:]] == ["job J1 failed: Internal error"] * 2
    assert [r.unconfirmed for r in matched] == [False, True, True]  # says nothing of the items


def test_item_errors_of_a_failed_job_stay_item_errors() -> None:
    results = [{"index": 0, "success": False, "error": "RecordInvalid", "details": "brand: gone"}]

    (matched,) = match_results(job("failed", results=results, message="partly done"), EXT[:1])

    assert (matched.error, matched.unconfirmed) == ("RecordInvalid: brand: gone", False)


def test_result_object_instead_of_list_reports_no_items() -> None:
    matched = match_results(job(results={"success": True}), EXT[:1])

    assert matched == [ItemResult(EXT[0], ok=False, error="no result for this item in job J1", unconfirmed=True)]


def test_out_of_range_and_duplicate_results_are_ignored() -> None:
    results = [{"id": "X", "index": 9}, {"id": "01A", "index": 0}, {"id": "DUP", "index": 0}]

    matched = match_results(job(results=results), EXT[:1])

    assert matched == [ItemResult(EXT[0], ok=True, record_id="01A")]


def test_an_item_error_says_which_lookups_it_refuses_and_only_its_own() -> None:
    results = [
        {"index": 0, "success": False, "error": "RecordInvalid", "details": {"driver": ["is not a valid user"]}},
        {"index": 1, "success": False, "error": "RecordInvalid", "details": "drivers_license is too long"},
        {"index": 2, "id": "9", "success": True},
    ]
    bad, other, fine = match_results(job(results=results), EXT)

    assert bad.refused_fields(["driver", "brand"]) == {"driver"}
    assert other.refused_fields(["driver"]) == set()  # a longer word is not the field
    assert fine.refused_fields(["driver"]) == set()
    [whole] = match_results(job("failed", message="driver exploded"), EXT[:1])
    assert whole.unconfirmed and whole.refused_fields(["driver"]) == set()  # a job failure refuses nothing


def test_an_item_zendesk_no_longer_has_is_already_gone() -> None:
    results = [
        {"index": 0, "success": False, "error": "RecordNotFound", "details": "no record 'x'"},
        {"index": 1, "success": False, "error": "RecordInvalid", "details": "RecordNotFound in text"},
        {"index": 2, "success": True, "id": "3"},
    ]
    gone, invalid, ok = match_results(job(results=results), EXT)

    assert (gone.code, gone.already_gone) == ("RecordNotFound", True)
    assert (invalid.code, invalid.already_gone) == ("RecordInvalid", False)
    assert (ok.code, ok.already_gone) == ("", False)
    [lost] = match_results(job("failed", message="RecordNotFound"), EXT[:1])
    assert not lost.already_gone  # a job that failed whole says nothing about the record


@pytest.mark.parametrize(
    ("error", "stops", "refuses"),
    [
        (AuthError("refused", api="zendesk", method="POST", status=401), True, False),
        (RejectedError("scope", api="zendesk", method="POST", status=403), True, False),
        (RejectedError("no object", api="zendesk", method="POST", status=404), True, False),
        (RejectedError("job gone", api="zendesk", method="GET", status=404), False, False),
        (RejectedError("bad item", api="zendesk", method="POST", status=422), False, True),
        (TransientApiError("busy", api="zendesk", method="POST", status=503), False, False),
    ],
    ids=["401", "403", "404-post", "404-poll", "422-post", "503"],
)
def test_what_a_job_error_means_for_the_other_jobs_and_for_its_batch(
    error: ApiError, stops: bool, refuses: bool
) -> None:
    assert (stops_every_job(error), refuses_the_batch(error)) == (stops, refuses)


def test_secret_in_item_error_is_redacted() -> None:
    results = [{"index": 0, "success": False, "error": "Bad", "details": "Bearer abc.def.ghi"}]

    (matched,) = match_results(job(results=results), EXT[:1])

    assert "abc.def.ghi" not in matched.error


SHOW_MANY = re.compile(rf"^{re.escape(BASE)}/api/v2/job_statuses/show_many\?ids=")


def status(job_id: str, state: str, results: Any = None) -> dict[str, Any]:
    return {"id": job_id, "status": state, "total": 1, "progress": 0, "message": None,
            "results": results, "url": f"{BASE}/api/v2/job_statuses/{job_id}.json"}


class Zendesk:
    """Answers `show_many` from a script: each job is `working` until polled `polls` times."""

    def __init__(self, mock, polls: dict[str, int], *, missing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.polls = polls
        self.seen: Counter[str] = Counter()
        self.requests: list[list[str]] = []
        self.missing = missing
        mock.get(SHOW_MANY, callback=self.answer, repeat=True)

    def answer(self, url: Any, **_: Any) -> CallbackResult:
        ids = URL(str(url)).query["ids"].split(",")
        self.requests.append(ids)
        self.seen.update(ids)
        statuses = [self.state(i) for i in ids if i not in self.missing]
        return CallbackResult(payload={"job_statuses": statuses})

    def state(self, job_id: str) -> dict[str, Any]:
        if self.seen[job_id] < self.polls.get(job_id, 10**9):
            return status(job_id, "working")
        return status(job_id, "completed", [{"index": 0, "id": f"R-{job_id}", "success": True}])


def poller(session, sleep, clock, **options: Any) -> JobPoller:
    return JobPoller(make_transport(session, None, sleep, clock), BASE, sleep=sleep, clock=clock,
                     **options)


def queued(job_id: str) -> JobStatus:
    return JobStatus.model_validate(status(job_id, "queued"))


def single_polls(mock) -> list[str]:
    return [str(u) for (m, u) in mock.requests if "/show_many" not in str(u)]


def poller_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "zendesk-job-poller" and not t.done()]


async def no_poller_left() -> bool:
    """True once no polling task runs (it ends within a few loop turns of its last job)."""
    async with asyncio.timeout(2):
        while poller_tasks():
            await asyncio.sleep(0)
    return True


async def test_jobs_in_flight_are_polled_with_one_show_many_request_per_tick(
    session, mock, sleep, clock
) -> None:
    zendesk = Zendesk(mock, {"J1": 1, "J2": 2, "J3": 3, "J4": 3, "J5": 5})
    jobs = poller(session, sleep, clock)

    done = await asyncio.gather(*(jobs.wait(queued(j)) for j in zendesk.polls))

    assert [(d.id, d.status) for d in done] == [(j, "completed") for j in zendesk.polls]
    assert [d.result_items[0].id for d in done] == [f"R-{j}" for j in zendesk.polls]
    assert zendesk.requests == [
        ["J1", "J2", "J3", "J4", "J5"], ["J2", "J3", "J4", "J5"], ["J3", "J4", "J5"], ["J5"], ["J5"],
    ]
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8])  # the jobs' shared backoff
    assert single_polls(mock) == []
    assert await no_poller_left()


async def test_more_than_100_jobs_take_several_requests_per_tick(session, mock, sleep, clock) -> None:
    ids = [f"J{n}" for n in range(150)]
    zendesk = Zendesk(mock, dict.fromkeys(ids, 2))
    jobs = poller(session, sleep, clock)

    done = await asyncio.gather(*(jobs.wait(queued(j)) for j in ids))

    assert all(d.status == "completed" for d in done)
    assert [len(r) for r in zendesk.requests] == [100, 50, 100, 50]
    assert sorted(zendesk.requests[0] + zendesk.requests[1]) == sorted(ids)
    assert sleep.delays == pytest.approx([0.05, 0.1])


class HeldSleep:
    """asyncio.sleep stand-in that ends only when the test says so; the clock then moves on."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.gate: asyncio.Future[None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.gate = asyncio.get_running_loop().create_future()
        await self.gate
        self.clock.now += seconds

    async def sleeping(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self.delays) < count or self.gate is None or self.gate.done():
                await asyncio.sleep(0)

    async def wake(self) -> None:
        assert self.gate is not None
        self.gate.set_result(None)

    async def until_done(self, task: asyncio.Task[Any]) -> Any:
        """Ends every nap until `task` is done; its result."""
        async with asyncio.timeout(2):
            while not task.done():
                if self.gate is not None and not self.gate.done():
                    await self.wake()
                await asyncio.sleep(0)
        return task.result()


async def test_a_young_job_is_polled_soon_though_an_old_one_waits_longer(session, mock, clock) -> None:
    held = HeldSleep(clock)
    zendesk = Zendesk(mock, {"OLD": 5, "NEW": 1})
    jobs = poller(session, held, clock)
    old = asyncio.create_task(jobs.wait(queued("OLD")))
    for count in range(1, 4):
        await held.sleeping(count)
        await held.wake()
    await held.sleeping(4)
    assert held.delays == pytest.approx([0.05, 0.1, 0.2, 0.4])

    new = asyncio.create_task(jobs.wait(queued("NEW")))
    await held.sleeping(5)
    assert held.delays[-1] == pytest.approx(0.05)  # the old job's 0.4 s nap gave way
    await held.wake()
    assert (await new).status == "completed"
    assert zendesk.requests[-1] == ["NEW", "OLD"]
    assert (await held.until_done(old)).status == "completed"
    assert len(zendesk.requests) == 5


async def test_a_job_arriving_does_not_pull_the_tick_nearer_than_min_tick(session, mock, clock) -> None:
    held = HeldSleep(clock)
    zendesk = Zendesk(mock, {"OLD": 4, "NEW": 1})
    jobs = poller(session, held, clock, min_tick=0.25)
    old = asyncio.create_task(jobs.wait(queued("OLD")))
    for count in range(1, 4):
        await held.sleeping(count)
        await held.wake()
    await held.sleeping(4)
    assert held.delays == pytest.approx([0.05, 0.1, 0.2, 0.4])  # a lone job keeps its own backoff

    new = asyncio.create_task(jobs.wait(queued("NEW")))
    await held.sleeping(5)
    assert held.delays[-1] == pytest.approx(0.25)  # not 0.05: the last tick was just now
    await held.wake()
    assert (await new).status == "completed"
    assert sorted(zendesk.requests[-1]) == ["NEW", "OLD"]
    assert (await held.until_done(old)).status == "completed"
    assert len(zendesk.requests) == 4  # OLD was done at its 4th poll, with NEW


async def test_a_cancelled_waiter_leaves_the_others_polled(session, mock, clock) -> None:
    held = HeldSleep(clock)
    zendesk = Zendesk(mock, {"A": 3, "B": 3})
    jobs = poller(session, held, clock)
    a = asyncio.create_task(jobs.wait(queued("A")))
    b = asyncio.create_task(jobs.wait(queued("B")))
    await held.sleeping(1)
    await held.wake()
    await held.sleeping(2)

    a.cancel()
    await held.wake()
    assert (await held.until_done(b)).status == "completed"
    assert a.cancelled()
    assert zendesk.requests == [["A", "B"], ["B"], ["B"]]
    assert await no_poller_left()


async def test_no_poller_is_left_once_every_waiter_is_cancelled(session, mock, clock) -> None:
    held = HeldSleep(clock)
    Zendesk(mock, {})
    jobs = poller(session, held, clock)
    waiter = asyncio.create_task(jobs.wait(queued("A")))
    await held.sleeping(1)
    assert len(poller_tasks()) == 1

    waiter.cancel()

    assert await no_poller_left()


async def test_closing_fails_the_jobs_still_waited_for(session, mock, clock) -> None:
    held = HeldSleep(clock)
    Zendesk(mock, {})
    jobs = poller(session, held, clock)
    waiter = asyncio.create_task(jobs.wait(queued("A")))
    await held.sleeping(1)

    await jobs.aclose()

    with pytest.raises(TransientApiError, match="closed while bulk job A was still 'queued'"):
        await waiter
    assert await no_poller_left()


async def test_a_failed_poll_fails_every_job_it_asked_for_and_polling_goes_on(
    session, mock, sleep, clock
) -> None:
    mock.get(SHOW_MANY, status=404, payload={"error": "RecordNotFound", "description": "Not found"})
    zendesk = Zendesk(mock, {"C": 1})
    jobs = poller(session, sleep, clock)

    outcomes = await asyncio.gather(jobs.wait(queued("A")), jobs.wait(queued("B")),
                                    return_exceptions=True)

    assert all(isinstance(o, RejectedError) and o.status == 404 and o.method == "GET" for o in outcomes)
    assert (await jobs.wait(queued("C"))).status == "completed"
    assert zendesk.requests == [["C"]]


async def test_a_job_missing_from_show_many_is_asked_for_alone(session, mock, sleep, clock) -> None:
    Zendesk(mock, {"A": 1, "GONE": 1}, missing={"GONE"})
    mock.get(f"{BASE}/api/v2/job_statuses/GONE", status=404,
             payload={"error": "RecordNotFound", "description": "Not found"})
    jobs = poller(session, sleep, clock)

    a, gone = await asyncio.gather(jobs.wait(queued("A")), jobs.wait(queued("GONE")),
                                   return_exceptions=True)

    assert isinstance(a, JobStatus) and a.status == "completed"
    assert isinstance(gone, RejectedError) and gone.status == 404
    assert single_polls(mock) == [f"{BASE}/api/v2/job_statuses/GONE"]


async def test_poller_backs_off_doubling_to_the_cap(session, mock, sleep, clock) -> None:
    zendesk = Zendesk(mock, {"J1": 7})
    jobs = poller(session, sleep, clock, poll_initial=0.05, poll_max=0.5)

    done = await jobs.wait(queued("J1"))

    assert done.status == "completed"
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert len(zendesk.requests) == 7


async def test_poller_gives_up_after_the_timeout(session, mock, sleep, clock) -> None:
    Zendesk(mock, {})
    jobs = poller(session, sleep, clock, poll_initial=1.0, poll_max=4.0, timeout=10.0)

    with pytest.raises(TransientApiError, match="J1 is still 'working' after 10 s"):
        await jobs.wait(queued("J1"))
    assert sum(sleep.delays) >= 10.0
    assert sleep.delays == pytest.approx([1.0, 2.0, 4.0, 4.0])


async def test_one_job_timing_out_leaves_the_others_waiting(session, mock, sleep, clock) -> None:
    zendesk = Zendesk(mock, {"QUICK": 2})
    jobs = poller(session, sleep, clock, poll_initial=1.0, poll_max=4.0, timeout=10.0)

    slow, quick = await asyncio.gather(jobs.wait(queued("SLOW")), jobs.wait(queued("QUICK")),
                                       return_exceptions=True)

    assert isinstance(quick, JobStatus) and quick.status == "completed"
    assert isinstance(slow, TransientApiError) and "SLOW is still 'working'" in str(slow)
    assert zendesk.requests == [["SLOW", "QUICK"]] * 2 + [["SLOW"]] * 2


async def test_finished_job_is_not_polled(session, mock, sleep, clock) -> None:
    jobs = poller(session, sleep, clock)

    done = await jobs.wait(JobStatus.model_validate(status("J1", "completed", [])))

    assert done.status == "completed"
    assert sleep.delays == [] and not mock.requests


async def test_malformed_job_statuses_are_rejected(session, mock, sleep, clock) -> None:
    mock.get(SHOW_MANY, payload={"job": {"state": "done"}})
    jobs = poller(session, sleep, clock)

    with pytest.raises(RejectedError, match="not a JobStatusesEnvelope: job_statuses: Field required"):
        await jobs.wait(queued("J1"))


async def test_a_job_arriving_as_the_last_waiter_leaves_is_still_polled(session, mock, clock) -> None:
    held = HeldSleep(clock)
    zendesk = Zendesk(mock, {"B": 1})
    jobs = poller(session, held, clock)
    a = asyncio.create_task(jobs.wait(queued("A")))
    await held.sleeping(1)

    a.cancel()
    b = asyncio.create_task(jobs.wait(queued("B")))

    assert (await held.until_done(b)).status == "completed"
    assert zendesk.requests == [["B"]]
    assert await no_poller_left()
