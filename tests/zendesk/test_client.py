"""ZendeskClient on the wire: bulk jobs end to end, paging, objects and fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aioresponses import CallbackResult

from bridge.errors import RejectedError, TransientApiError
from bridge.zendesk.models import ItemResult, UpsertItem, ZendeskRecord

from .conftest import BASE, sent, sent_json

JOBS = f"{BASE}/api/v2/custom_objects/car/jobs"
STATUS = f"{BASE}/api/v2/job_statuses/J1"
POLL = f"{BASE}/api/v2/job_statuses/show_many?ids=J1"
RECORDS = f"{BASE}/api/v2/custom_objects/car/records"


def job_status(status: str, results: Any = None, message: str | None = None) -> dict[str, Any]:
    return {"job_status": {"id": "J1", "status": status, "total": 2, "progress": None,
                           "message": message, "results": results, "url": f"{STATUS}.json"}}


def items(count: int) -> list[UpsertItem]:
    return [UpsertItem(f"outreach:car:{n}", f"Car {n}", {"speed": n}) for n in range(count)]


def many(answer: dict[str, Any]) -> dict[str, Any]:
    """A job's status as `show_many` answers it."""
    return {"job_statuses": [answer["job_status"]]}


def serve_statuses(mock, *answers: dict[str, Any]) -> None:
    queue = iter(answers)
    mock.get(POLL, callback=lambda url, **kw: CallbackResult(payload=many(next(queue))), repeat=True)


async def test_upsert_runs_a_job_and_maps_results(client, mock, sleep) -> None:
    mock.post(JOBS, status=201, payload=job_status("queued"))
    serve_statuses(
        mock,
        job_status("queued"),
        job_status("working"),
        job_status("completed", [
            {"id": "01B", "index": 1, "success": True, "status": "Created"},
            {"index": 0, "success": False, "error": "RecordInvalid", "details": "bad speed"},
        ]),
    )

    results = await client.upsert_records("car", items(2))

    assert results == [
        ItemResult("outreach:car:0", ok=False, error="RecordInvalid: bad speed"),
        ItemResult("outreach:car:1", ok=True, record_id="01B"),
    ]
    (call,) = sent(mock, "POST", JOBS)
    assert sent_json(call) == {"job": {
        "action": "create_or_update_by_external_id",
        "items": [
            {"external_id": "outreach:car:0", "name": "Car 0", "custom_object_fields": {"speed": 0}},
            {"external_id": "outreach:car:1", "name": "Car 1", "custom_object_fields": {"speed": 1}},
        ],
    }}
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["Accept"] == "application/json"
    assert call["headers"]["Authorization"] == "Bearer tok-test"
    assert sleep.delays == pytest.approx([0.25, 0.1, 0.2])  # a lone job: polled once none came for 0.25 s
    assert len(sent(mock, "GET", POLL)) == 3
    assert sent(mock, "GET", STATUS) == []


async def test_failed_job_fails_the_unreported_items(client, mock) -> None:
    mock.post(JOBS, status=201, payload=job_status("queued"))
    serve_statuses(mock, job_status("failed", [{"id": "01A", "index": 0}], "Worker crashed"))

    results = await client.upsert_records("car", items(2))

    assert results[0] == ItemResult("outreach:car:0", ok=True, record_id="01A")
    assert results[1] == ItemResult("outreach:car:1", ok=False, error="job J1 failed: Worker crashed",
                                     unconfirmed=True)


async def test_more_than_100_items_are_refused_before_any_request(client, mock) -> None:
    with pytest.raises(ValueError, match="at most 100 items, got 101"):
        await client.upsert_records("car", items(101))
    with pytest.raises(ValueError, match="at most 100 items, got 101"):
        await client.delete_by_external_ids("car", [f"e{n}" for n in range(101)])
    assert not mock.requests


async def test_exactly_100_items_are_one_job(client, mock) -> None:
    mock.post(JOBS, status=201, payload=job_status("completed", [
        {"id": f"R{n}", "index": n} for n in range(100)
    ]))

    results = await client.upsert_records("car", items(100))

    assert [r.record_id for r in results] == [f"R{n}" for n in range(100)]
    assert len(sent_json(sent(mock, "POST", JOBS)[0])["job"]["items"]) == 100


async def test_delete_by_external_ids(client, mock) -> None:
    mock.post(JOBS, status=201, payload=job_status("queued"))
    serve_statuses(mock, job_status("completed", [
        {"external_id": "e2", "success": True, "status": "Deleted"},
        {"external_id": "e1", "success": False, "error": "RecordNotFound"},
    ]))

    results = await client.delete_by_external_ids("car", ["e1", "e2"])

    assert results == [ItemResult("e1", ok=False, error="RecordNotFound"), ItemResult("e2", ok=True)]
    assert sent_json(sent(mock, "POST", JOBS)[0]) == {
        "job": {"action": "delete_by_external_id", "items": ["e1", "e2"]}
    }


async def test_too_many_jobs_is_a_rejection_with_zendesk_detail(client, mock) -> None:
    mock.post(JOBS, status=400, payload={"errors": [{"code": "TooManyJobs", "detail": "30 queued"}]})

    with pytest.raises(RejectedError) as caught:
        await client.upsert_records("car", items(1))

    assert caught.value.detail == "TooManyJobs: 30 queued"


async def test_job_that_never_finishes_times_out(client, mock) -> None:
    mock.post(JOBS, status=201, payload=job_status("queued"))
    mock.get(POLL, payload=many(job_status("working")), repeat=True)

    with pytest.raises(TransientApiError, match="still 'working'"):
        await client.upsert_records("car", items(1))


def record(n: int) -> dict[str, Any]:
    return {"id": f"01R{n}", "name": f"Car {n}", "external_id": f"outreach:car:{n}",
            "custom_object_fields": {"speed": n}, "custom_object_key": "car"}


def records_page(ids: list[int], next_url: str | None) -> dict[str, Any]:
    return {"custom_object_records": [record(n) for n in ids],
            "links": {"next": next_url, "prev": None},
            "meta": {"has_more": next_url is not None, "after_cursor": "c" if next_url else None,
                     "before_cursor": None}}


async def test_list_records_follows_cursor_links(client, mock) -> None:
    second = f"{RECORDS}?page%5Bafter%5D=c1&page%5Bsize%5D=2"
    mock.get(f"{RECORDS}?page[size]=2", payload=records_page([1, 2], second))
    mock.get(second, payload=records_page([3], None))

    got = [r async for r in client.list_records("car", page_size=2)]

    assert got[0] == ZendeskRecord("01R1", "outreach:car:1", "Car 1", {"speed": 1})
    assert [r.id for r in got] == ["01R1", "01R2", "01R3"]


async def test_listed_records_carry_their_updated_at(client, mock) -> None:
    page = records_page([1], None)
    page["custom_object_records"][0]["updated_at"] = "2026-11-02T10:00:05Z"
    mock.get(f"{RECORDS}?page[size]=100", payload=page)

    [got] = [r async for r in client.list_records("car")]

    assert got.updated_at == datetime(2026, 11, 2, 10, 0, 5, tzinfo=UTC)


async def test_list_records_refuses_a_link_to_another_origin(client, mock) -> None:
    mock.get(f"{RECORDS}?page[size]=100", payload=records_page([1], "https://evil.example/x"))

    with pytest.raises(RejectedError, match="another origin"):
        _ = [r async for r in client.list_records("car")]


@pytest.mark.parametrize("foreign", [
    "https://evil.example/api/v2/custom_objects/car/records?page%5Bafter%5D=c1&access_token=SECRET",
    "http://acme.zendesk.com/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
    "https://acme.zendesk.com:8443/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
])
async def test_a_next_link_to_another_host_is_never_requested(client, mock, foreign) -> None:
    mock.get(f"{RECORDS}?page[size]=100", payload=records_page([1], foreign))
    mock.get(foreign, payload=records_page([2], None))

    with pytest.raises(RejectedError) as caught:
        _ = [r async for r in client.list_records("car")]

    assert sent(mock, "GET", foreign) == []
    message = str(caught.value)
    assert "outside the configured API origin https://acme.zendesk.com:443" in message
    assert "ZENDESK_URL" in message and "SECRET" not in message


async def test_list_fields_refuses_a_link_back_to_a_page_already_read(client, mock) -> None:
    fields = f"{BASE}/api/v2/custom_objects/car/fields"
    second = f"{fields}?page%5Bafter%5D=c1"

    def page(next_url: str) -> dict[str, Any]:
        return {"custom_object_fields": [{"key": "speed"}], "links": {"next": next_url},
                "meta": {"has_more": True}}

    mock.get(fields, payload=page(second), repeat=True)
    mock.get(second, payload=page(fields), repeat=True)

    with pytest.raises(RejectedError, match="already read"):
        await client.list_fields("car")
    assert len(sent(mock, "GET", fields)) == 1


async def test_list_records_refuses_a_link_to_the_same_page(client, mock) -> None:
    url = f"{RECORDS}?page[size]=100"
    mock.get(url, payload=records_page([1], url), repeat=True)

    with pytest.raises(RejectedError, match="is the page just read"):
        _ = [r async for r in client.list_records("car")]


async def test_records_by_external_ids_chunks_by_100(client, mock) -> None:
    seen: list[list[str]] = []

    def answer(url, **kwargs):
        wanted = kwargs["params"]["filter[external_ids]"].split(",")
        seen.append(wanted)
        return CallbackResult(payload=records_page([int(w.rsplit(":", 1)[1]) for w in wanted[:2]], None))

    mock.get(re.compile(re.escape(RECORDS) + r"\?.*"), callback=answer, repeat=True)
    ext = [f"outreach:car:{n}" for n in range(150)]

    got = await client.records_by_external_ids("car", ext)

    assert [len(chunk) for chunk in seen] == [100, 50]
    assert seen[0][0] == ext[0] and seen[1][-1] == ext[-1]
    assert [r.external_id for r in got] == [ext[0], ext[1], ext[100], ext[101]]


async def test_get_object_returns_none_on_404(client, mock) -> None:
    mock.get(f"{BASE}/api/v2/custom_objects/ghost", status=404,
             payload={"error": "RecordNotFound", "description": "Not found"})
    mock.get(f"{BASE}/api/v2/custom_objects/car", payload={"custom_object": {"key": "car"}})

    assert await client.get_object("ghost") is None
    assert await client.get_object("car") == {"key": "car"}


async def test_get_object_other_errors_propagate(client, mock) -> None:
    mock.get(f"{BASE}/api/v2/custom_objects/car", status=403, payload={"error": "Forbidden"})

    with pytest.raises(RejectedError) as caught:
        await client.get_object("car")
    assert caught.value.status == 403


async def test_create_object_and_field(client, mock) -> None:
    mock.post(f"{BASE}/api/v2/custom_objects", status=201,
              payload={"custom_object": {"key": "car", "title": "Car"}})
    mock.post(f"{BASE}/api/v2/custom_objects/car/fields", status=201,
              payload={"custom_object_field": {"id": 5, "key": "speed", "type": "integer"}})

    created = await client.create_object("car", "Car", "Cars", "Vehicles")
    field = await client.create_field("car", {"key": "speed", "title": "Speed", "type": "integer"})

    assert created == {"key": "car", "title": "Car"}
    assert field["id"] == 5
    assert sent_json(sent(mock, "POST", f"{BASE}/api/v2/custom_objects")[0]) == {
        "custom_object": {"key": "car", "title": "Car", "title_pluralized": "Cars",
                          "description": "Vehicles"}
    }


async def test_list_fields_follows_pages(client, mock) -> None:
    url = f"{BASE}/api/v2/custom_objects/car/fields"
    nxt = f"{url}?page%5Bafter%5D=x"
    mock.get(url, payload={"custom_object_fields": [{"key": "a"}],
                           "links": {"next": nxt}, "meta": {"has_more": True}})
    mock.get(nxt, payload={"custom_object_fields": [{"key": "b"}],
                           "links": {"next": None}, "meta": {"has_more": False}})

    assert [f["key"] for f in await client.list_fields("car")] == ["a", "b"]


async def test_wrong_shaped_answer_is_rejected_clearly(client, mock) -> None:
    mock.post(f"{BASE}/api/v2/custom_objects", status=201, payload={"object": {}})

    with pytest.raises(RejectedError) as caught:
        await client.create_object("car", "Car", "Cars")

    assert "not a ObjectEnvelope" in str(caught.value) and "custom_object" in str(caught.value)
    assert caught.value.status == 201


async def test_object_key_is_escaped_in_the_path(client, mock) -> None:
    mock.get(f"{BASE}/api/v2/custom_objects/a%2Fb", payload={"custom_object": {"key": "a/b"}})

    assert await client.get_object("a/b") == {"key": "a/b"}


async def test_empty_batches_make_no_request(client, mock) -> None:
    assert await client.upsert_records("car", []) == []
    assert await client.delete_by_external_ids("car", []) == []
    assert await client.records_by_external_ids("car", []) == []
    assert not mock.requests


async def test_external_id_with_a_comma_cannot_be_filtered(client, mock) -> None:
    with pytest.raises(ValueError, match="contains a comma"):
        await client.records_by_external_ids("car", ["a,b"])
    assert not mock.requests
