"""Bulk job results matched back to items, and the job-status poller's backoff."""

from __future__ import annotations

from typing import Any

import pytest
from aioresponses import CallbackResult

from bridge.errors import RejectedError, TransientApiError
from bridge.zendesk.jobs import JobPoller, match_results
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


def test_secret_in_item_error_is_redacted() -> None:
    results = [{"index": 0, "success": False, "error": "Bad", "details": "Bearer abc.def.ghi"}]

    (matched,) = match_results(job(results=results), EXT[:1])

    assert "abc.def.ghi" not in matched.error


def status_body(status: str, results: Any = None) -> dict[str, Any]:
    return {"job_status": {"id": "J1", "status": status, "total": 1, "progress": 0,
                           "message": None, "results": results,
                           "url": f"{BASE}/api/v2/job_statuses/J1.json"}}


async def test_poller_backs_off_doubling_to_the_cap(session, mock, sleep, clock) -> None:
    states = ["queued"] * 5 + ["working", "completed"]
    answers = iter(states)
    mock.get(
        f"{BASE}/api/v2/job_statuses/J1",
        callback=lambda url, **kw: CallbackResult(payload=status_body(next(answers))),
        repeat=True,
    )
    poller = JobPoller(
        make_transport(session, None, sleep, clock), BASE,
        poll_initial=0.05, poll_max=0.5, sleep=sleep, clock=clock,
    )

    done = await poller.wait(job("queued"))

    assert done.status == "completed"
    assert sleep.delays == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


async def test_poller_gives_up_after_the_timeout(session, mock, sleep, clock) -> None:
    mock.get(f"{BASE}/api/v2/job_statuses/J1", payload=status_body("working"), repeat=True)
    poller = JobPoller(
        make_transport(session, None, sleep, clock), BASE,
        poll_initial=1.0, poll_max=4.0, timeout=10.0, sleep=sleep, clock=clock,
    )

    with pytest.raises(TransientApiError, match="J1 is still 'working' after 10 s"):
        await poller.wait(job("queued"))
    assert sum(sleep.delays) >= 10.0
    assert sleep.delays == [1.0, 2.0, 4.0, 4.0]


async def test_finished_job_is_not_polled(session, mock, sleep, clock) -> None:
    poller = JobPoller(make_transport(session, None, sleep, clock), BASE, sleep=sleep, clock=clock)

    done = await poller.wait(job("completed", results=[]))

    assert done.status == "completed"
    assert sleep.delays == [] and not mock.requests


async def test_malformed_job_status_is_rejected(session, mock, sleep, clock) -> None:
    mock.get(f"{BASE}/api/v2/job_statuses/J1", payload={"job": {"state": "done"}})
    poller = JobPoller(make_transport(session, None, sleep, clock), BASE, sleep=sleep, clock=clock)

    with pytest.raises(RejectedError, match="not a JobStatusEnvelope: job_status: Field required"):
        await poller.wait(job("queued"))
