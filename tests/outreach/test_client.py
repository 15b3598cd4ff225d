from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from aioresponses.core import normalize_url

from bridge.errors import ApiError, RejectedError, TransientApiError
from bridge.http.retry import RetryPolicy
from bridge.http.transport import HttpConfig, Transport
from bridge.outreach.auth import StaticToken
from bridge.outreach.client import OutreachClient, OutreachConfig, format_since
from bridge.outreach.models import RelatedRef
from bridge.outreach.wire import error_detail as outreach_error_detail
from tests.http.fakes import FakeTime

API = "https://api.outreach.io"
TOKEN = "outreach-access-SECRET"
LIST = f"{API}/api/v2/customObjects/vehicles"


def client(session: aiohttp.ClientSession, t: FakeTime, page_size: int = 2) -> OutreachClient:
    transport = Transport(
        session, HttpConfig(api="outreach"), auth=StaticToken(TOKEN),
        retry=RetryPolicy(rand=lambda: 1.0), error_parser=outreach_error_detail,
        sleep=t.sleep, clock=t.clock, wall=t.wall,
    )
    return OutreachClient(transport, OutreachConfig(api_url=API, page_size=page_size))


def resource(id: Any, updated: str = "2024-07-25T13:18:30.736332Z", **rels: Any) -> dict[str, Any]:
    return {
        "type": "vehicles", "id": id,
        "attributes": {"vehicle_name": f"car {id}", "updatedAt": updated, "unknownThing": [1]},
        "relationships": rels,
        "links": {"self": f"https://api.outreach-staging.com/api/v2/customObjects/vehicles/{id}"},
        "meta": {"x": 1},
    }


def page_body(ids: list[int], next_url: str | None) -> dict[str, Any]:
    links: dict[str, Any] = {"first": f"{LIST}?page%5Bsize%5D=2"}
    if next_url:
        links["next"] = next_url
    return {"data": [resource(i) for i in ids], "meta": {"count": 0, "count_truncated": True}, "links": links}


def requests_to(m: aioresponses, url: str) -> list[Any]:
    return m.requests.get(("GET", normalize_url(url)), [])


# ---- list URLs -------------------------------------------------------------------------

def test_list_url_for_custom_objects_with_everything(session, fake_time) -> None:
    url = client(session, fake_time, page_size=1000).list_url(
        "vehicles", custom_object=True,
        since=datetime(2024, 7, 25, 13, 18, 30, 736332, tzinfo=UTC),
        filters={"filter[brand][name]": "DMC"}, include=["main_driver", "brand"],
        fields={"vehicles": ["vehicle_name", "speed"], "vehicle_brands": ["name"]},
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == LIST
    assert parse_qsl(parts.query) == [
        ("page[size]", "1000"), ("count", "false"), ("sort", "updatedAt"),
        ("filter[updatedAt]", "2024-07-25T13:18:30.736Z..inf"), ("filter[brand][name]", "DMC"),
        ("include", "main_driver,brand"), ("fields[vehicles]", "vehicle_name,speed"),
        ("fields[vehicle_brands]", "name"),
    ]


def test_list_url_for_standard_resources_without_since(session, fake_time) -> None:
    url = client(session, fake_time).list_url("prospects", custom_object=False)
    assert url == f"{API}/api/v2/prospects?page[size]=2&count=false&sort=updatedAt"


def test_since_is_utc_with_milliseconds() -> None:
    cest = timezone(timedelta(hours=2))
    assert format_since(datetime(2024, 7, 25, 15, 18, 30, 5000, tzinfo=cest)) == "2024-07-25T13:18:30.005Z"
    assert format_since(datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000Z"


def test_page_size_is_bounded() -> None:
    with pytest.raises(ValueError):
        OutreachConfig(page_size=1001)


# ---- paging ------------------------------------------------------------------------------

async def test_pages_follow_links_next_over_three_pages(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first = c.list_url("vehicles", custom_object=True)
    second = f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D&page%5Bsize%5D=2"
    third = f"{LIST}?page%5Bafter%5D=WzEwMF0%3D&page%5Bsize%5D=2"
    mocked.get(first, payload=page_body([1, 2], second))
    mocked.get(second, payload=page_body([3, 4], third))
    mocked.get(third, payload=page_body([5], None))
    pages = [p async for p in c.pages(first)]
    assert [[r.id for r in p.records] for p in pages] == [["1", "2"], ["3", "4"], ["5"]]
    assert [(p.url, p.next_url) for p in pages] == [(first, second), (second, third), (third, None)]
    for url in (first, second, third):
        (call,) = requests_to(mocked, url)
        headers = call.kwargs["headers"]
        assert headers["Content-Type"] == headers["Accept"] == "application/vnd.api+json"
        assert headers["Authorization"] == f"Bearer {TOKEN}"


async def test_the_next_page_is_read_while_this_one_is_in_use(session, mocked, fake_time) -> None:
    """The next page's request goes out as soon as this page's links are known, so the API's
    time to answer overlaps the caller's work on this page instead of adding to it."""
    c = client(session, fake_time)
    first, second = c.list_url("vehicles", custom_object=True), f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    asked = asyncio.Event()

    def answer_second(url: Any, **kwargs: Any) -> CallbackResult:
        asked.set()
        return CallbackResult(payload=page_body([3], None))

    mocked.get(first, payload=page_body([1, 2], second))
    mocked.get(second, callback=answer_second)
    read = []
    async for page in c.pages(first):
        if page.url == first:
            await asyncio.wait_for(asked.wait(), timeout=10)  # while page 1 is still being used
        read.append([r.id for r in page.records])
    assert read == [["1", "2"], ["3"]]
    assert len(requests_to(mocked, second)) == 1


async def test_the_next_page_is_asked_for_before_this_one_is_converted(session, mocked, fake_time) -> None:
    """The read-ahead request leaves before this page's records are read and handed on (which
    takes milliseconds for a page of 1,000), not when the listing next waits: cursor paging is
    a chain, and each link waits for the last page's answer."""
    c = client(session, fake_time)
    first, second = c.list_url("vehicles", custom_object=True), f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    mocked.get(first, payload=page_body([1, 2], second))
    mocked.get(second, payload=page_body([3], None))
    asked_by_then = []
    async for page in c.pages(first):
        if page.url == first:  # no await in between: only what ran before the page came
            asked_by_then = [str(url) for (_, url) in mocked.requests]
    assert second in asked_by_then


async def test_a_listing_left_early_cancels_the_page_it_was_reading(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first, second = c.list_url("vehicles", custom_object=True), f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    answered = asyncio.Event()

    async def hang(url: Any, **kwargs: Any) -> None:  # never answers by itself
        await answered.wait()

    mocked.get(first, payload=page_body([1], second))
    mocked.get(second, callback=hang)
    pages = c.pages(first)
    assert [r.id for r in (await anext(pages)).records] == ["1"]
    await pages.aclose()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_listing_cancelled_while_it_waits_for_a_page_leaves_no_request_behind(
    session, mocked, fake_time
) -> None:
    """A run asked to stop cancels its producer while it waits for the next page."""
    c = client(session, fake_time)
    first, second = c.list_url("vehicles", custom_object=True), f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    asked, never = asyncio.Event(), asyncio.Event()

    async def hang(url: Any, **kwargs: Any) -> None:
        asked.set()
        await never.wait()

    mocked.get(first, payload=page_body([1], second))
    mocked.get(second, callback=hang)

    async def consume() -> None:
        async for _ in c.pages(first):
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(asked.wait(), timeout=10)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_failed_next_page_surfaces_after_this_page_is_handed_on(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first, second = c.list_url("vehicles", custom_object=True), f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    mocked.get(first, payload=page_body([1], second))
    mocked.get(second, status=404, payload={"errors": [{"id": "notFound", "detail": "gone"}]})
    read = []
    with pytest.raises(RejectedError, match="404"):
        async for page in c.pages(first):
            read.append(page.url)
    assert read == [first]


async def test_foreign_next_link_is_refused_before_any_request(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first = c.list_url("vehicles", custom_object=True)
    staging = "https://api.outreach-staging.com/api/v2/customObjects/vehicles?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D"
    mocked.get(first, payload=page_body([1], staging))
    mocked.get(staging, payload=page_body([2], None))
    with pytest.raises(ApiError, match="outside the configured API origin"):
        [p async for p in c.pages(first)]
    assert requests_to(mocked, staging) == []


async def test_next_equal_to_current_stops_the_listing(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first = c.list_url("vehicles", custom_object=True)
    mocked.get(first, payload=page_body([1], first), repeat=True)
    with pytest.raises(ApiError, match="equals the current page"):
        [p async for p in c.pages(first)]
    assert len(requests_to(mocked, first)) == 1


async def test_a_cycle_of_two_pages_stops_the_listing(session, mocked, fake_time) -> None:
    c = client(session, fake_time)
    first = c.list_url("vehicles", custom_object=True)
    second = f"{LIST}?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D&page%5Bsize%5D=2"
    mocked.get(first, payload=page_body([1, 2], second), repeat=True)
    mocked.get(second, payload=page_body([3, 4], first), repeat=True)
    read = []
    with pytest.raises(RejectedError, match="leads back to a page already read"):
        async for page in c.pages(first):
            read.append(page.url)
    assert read == [first]  # the page whose next link closes the cycle is not handed on
    assert len(requests_to(mocked, first)) == 1 and len(requests_to(mocked, second)) == 1


@pytest.mark.parametrize(
    "stored",
    [
        "https://api.outreach-staging.com/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "http://api.outreach.io/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "https://evil.example/collect?access_token=SECRET-TOKEN",
        "/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
    ],
)
async def test_a_start_url_on_another_origin_is_refused_before_any_request(session, mocked, fake_time, stored) -> None:
    mocked.get(stored, payload=page_body([1], None), repeat=True)
    with pytest.raises(RejectedError) as info:  # what a resume falls back from (pipeline/sync.py)
        [p async for p in client(session, fake_time).pages(stored)]
    assert "outside the configured API origin https://api.outreach.io:443" in str(info.value)
    assert "SECRET-TOKEN" not in str(info.value) and "SECRET-TOKEN" not in info.value.detail
    assert mocked.requests == {}


async def test_records_are_parsed_tolerantly(session, mocked, fake_time) -> None:
    body = {
        "data": [
            resource(
                123456,
                main_driver={"data": {"type": "prospect", "id": 123}},
                brand={"data": {"type": "vehicle_brands", "id": "1"}},
                co_owner={"data": None},
                tasks={"links": {"related": "https://api.outreach.io/api/v2/tasks?filter[x]=1"}},
                passengers={"data": [{"type": "prospect", "id": 5}]},
            ),
            resource("77", updated="2024-07-25T13:18:30.000Z"),
        ],
        "included": [{"type": "prospect", "id": 123, "attributes": {"name": "John"}}],
        "links": {},
        "somethingNew": True,
    }
    mocked.get(LIST, payload=body)
    (page,) = [p async for p in client(session, fake_time).pages(LIST)]
    first, second = page.records
    assert (first.type, first.id, second.id) == ("vehicles", "123456", "77")
    assert first.attributes["vehicle_name"] == "car 123456"
    assert first.relationships == {
        "main_driver": RelatedRef("prospect", "123"), "brand": RelatedRef("vehicle_brands", "1"), "co_owner": None,
    }
    assert first.updated_at == datetime(2024, 7, 25, 13, 18, 30, 736332, tzinfo=UTC)
    assert second.updated_at == datetime(2024, 7, 25, 13, 18, 30, tzinfo=UTC)
    assert page.included == {("prospect", "123"): {"name": "John"}}
    assert page.next_url is None


@pytest.mark.parametrize(
    "body",
    [
        {"errors": []},
        {"data": {"type": "vehicles", "id": 1}},
        [1, 2],
    ],
)
async def test_wrong_shape_is_rejected_clearly(session, mocked, fake_time, body) -> None:
    mocked.get(LIST, body=json.dumps(body), content_type="application/vnd.api+json")
    with pytest.raises(RejectedError, match="not JSON:API") as info:
        [p async for p in client(session, fake_time).pages(LIST)]
    assert info.value.api == "outreach" and TOKEN not in str(info.value)
    assert fake_time.sleeps == []


async def test_malformed_json_page_is_retried_then_succeeds(session, mocked, fake_time) -> None:
    mocked.get(LIST, body=b'{"data": [{"type": "veh', content_type="application/vnd.api+json")
    mocked.get(LIST, payload=page_body([9], None))
    (page,) = [p async for p in client(session, fake_time).pages(LIST)]
    assert [r.id for r in page.records] == ["9"]
    assert len(requests_to(mocked, LIST)) == 2 and fake_time.sleeps == [0.5]


async def test_malformed_json_every_time_gives_up_as_transient(session, mocked, fake_time) -> None:
    mocked.get(LIST, body=b"{", content_type="application/json", repeat=True)
    with pytest.raises(TransientApiError, match="not valid JSON"):
        [p async for p in client(session, fake_time).pages(LIST)]
    assert len(fake_time.sleeps) == 5


# ---- errors ------------------------------------------------------------------------------

async def test_jsonapi_error_detail_is_carried_in_rejected_error(session, mocked, fake_time) -> None:
    body = {"errors": [{
        "id": "unauthorizedOauthScope", "title": "Unauthorized OAuth Scope",
        "detail": "Missing scope vehicles.read", "source": {"pointer": "/data"},
    }]}
    mocked.get(LIST, status=403, payload=body)
    with pytest.raises(RejectedError) as info:
        [p async for p in client(session, fake_time).pages(LIST)]
    err = info.value
    assert err.status == 403
    assert err.detail == "unauthorizedOauthScope: Missing scope vehicles.read (at /data)"
    assert str(err).startswith(
        "outreach GET /api/v2/customObjects/vehicles: 403 unauthorizedOauthScope: Missing scope vehicles.read"
    )
    assert TOKEN not in str(err)


async def test_401_with_static_token_is_an_auth_error_telling_what_to_do(session, mocked, fake_time) -> None:
    mocked.get(LIST, status=401, payload={"errors": [{"id": "unauthorizedRequest"}]})
    with pytest.raises(ApiError, match="OUTREACH_ACCESS_TOKEN") as info:
        [p async for p in client(session, fake_time).pages(LIST)]
    assert TOKEN not in str(info.value)


# ---- single records and schema ---------------------------------------------------------

async def test_get_returns_the_record(session, mocked, fake_time) -> None:
    mocked.get(f"{LIST}/123456", payload={"data": resource(123456, main_driver={"data": None})})
    record = await client(session, fake_time).get("vehicles", "123456", custom_object=True)
    assert record is not None and record.id == "123456" and record.relationships == {"main_driver": None}


async def test_get_missing_record_is_none(session, mocked, fake_time) -> None:
    mocked.get(f"{API}/api/v2/prospects/9", status=404, payload={"errors": [{"id": "resourceNotFound"}]})
    assert await client(session, fake_time).get("prospects", "9", custom_object=False) is None


async def test_get_other_errors_propagate(session, mocked, fake_time) -> None:
    mocked.get(f"{API}/api/v2/prospects/9", status=403, payload={})
    with pytest.raises(RejectedError):
        await client(session, fake_time).get("prospects", "9", custom_object=False)


async def test_schema(session, mocked, fake_time) -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/hyper-schema#", "definitions": {"vehicles": {"type": "object"}}}
    mocked.get(f"{API}/api/v2/schema", payload=schema)
    assert await client(session, fake_time).schema() == schema


async def test_schema_of_the_wrong_shape_is_rejected(session, mocked, fake_time) -> None:
    mocked.get(f"{API}/api/v2/schema", payload={"nope": 1})
    with pytest.raises(RejectedError, match="definitions"):
        await client(session, fake_time).schema()


async def test_source_types_parses_the_schema(session, mocked, fake_time) -> None:
    schema = {"definitions": {
        "vehicles": {"definitions": {"updatedAt": {"type": "string", "format": "date-time", "filterable": True,
                                                   "sortable": True}},
                     "properties": {"relationships": {"properties": {"brand": {"x-target-type": "vehicle_brands"}}}}},
        "prospect": {"definitions": {"emails": {"type": "array", "filterable": False}}},
    }}
    mocked.get(f"{API}/api/v2/schema", payload=schema)

    types = await client(session, fake_time).source_types()

    assert types["vehicles"].custom_object and not types["prospect"].custom_object
    assert types["prospect"].path_name == "prospects"
    updated = types["vehicles"].attributes["updatedAt"]
    assert (updated.format, updated.filterable, updated.sortable) == ("date-time", True, True)
    assert types["vehicles"].relationships["brand"].target == "vehicle_brands"


async def test_probe_reads_one_record_and_raises_what_outreach_answers(session, mocked, fake_time) -> None:
    mocked.get(f"{LIST}?page[size]=1&count=false", payload={"data": [], "links": {}})
    mocked.get(f"{API}/api/v2/customObjects/ghosts?page[size]=1&count=false", status=404,
               payload={"errors": [{"id": "resourceNotFound"}]})
    c = client(session, fake_time)

    await c.probe("vehicles", custom_object=True)
    with pytest.raises(RejectedError) as info:
        await c.probe("ghosts", custom_object=True)
    assert info.value.status == 404
