"""Zendesk cursor paging as a pure object: body in, next URL out, never off the origin."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import RejectedError
from bridge.zendesk.pagination import CursorPaginator

BASE = "https://acme.zendesk.com"
RECORDS = f"{BASE}/api/v2/custom_objects/car/records"
PAGE1 = f"{RECORDS}?page%5Bsize%5D=100"
PAGE2 = f"{RECORDS}?page%5Bafter%5D=c1&page%5Bsize%5D=100"
PAGE3 = f"{RECORDS}?page%5Bafter%5D=c2&page%5Bsize%5D=100"


def body(next_url: Any, has_more: Any = True) -> dict[str, Any]:
    return {"custom_object_records": [], "links": {"next": next_url, "prev": None},
            "meta": {"has_more": has_more, "after_cursor": "c"}}


def test_follows_links_next_verbatim_while_has_more() -> None:
    assert CursorPaginator(BASE).next_url(PAGE1, body(PAGE2)) == PAGE2


@pytest.mark.parametrize("answer", [
    body(PAGE2, has_more=False), body(None), body(""), {"custom_object_records": []},
    {"links": {"next": PAGE2}},  # no meta: no has_more
])
def test_the_last_page_has_no_next(answer: dict[str, Any]) -> None:
    assert CursorPaginator(BASE).next_url(PAGE1, answer) is None


def test_a_relative_link_resolves_on_the_current_origin() -> None:
    got = CursorPaginator(BASE).next_url(PAGE1, body("/api/v2/custom_objects/car/records?page%5Bafter%5D=c1"))
    assert got == f"{RECORDS}?page%5Bafter%5D=c1"


def test_the_origin_spelled_differently_is_the_same() -> None:
    nxt = "https://ACME.zendesk.com:443/api/v2/custom_objects/car/records?page%5Bafter%5D=c1"
    assert CursorPaginator(BASE + "/").next_url(PAGE1, body(nxt)) == nxt


@pytest.mark.parametrize("foreign", [
    "https://evil.example/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
    "http://acme.zendesk.com/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
    "https://acme.zendesk.com:8443/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
    "https://other.zendesk.com/api/v2/custom_objects/car/records?page%5Bafter%5D=c1",
    "https://evil.example/?access_token=SECRET-TOKEN",
])
def test_refuses_another_origin(foreign: str) -> None:
    with pytest.raises(RejectedError) as caught:
        CursorPaginator(BASE).next_url(PAGE1, body(foreign))
    message = str(caught.value)
    assert "outside the configured API origin https://acme.zendesk.com:443" in message
    assert "ZENDESK_URL" in message and "SECRET-TOKEN" not in message


def test_next_equal_to_current_raises_even_when_quoted_differently() -> None:
    unquoted = f"{RECORDS}?page[after]=c1&page[size]=100"
    with pytest.raises(RejectedError, match="is the page just read"):
        CursorPaginator(BASE).next_url(PAGE2, body(unquoted))


@pytest.mark.parametrize("answer", [
    {"meta": "nope"}, {"meta": {"has_more": True}, "links": "nope"}, body(5),
])
def test_wrong_shapes_raise(answer: dict[str, Any]) -> None:
    with pytest.raises(RejectedError, match="unexpected shape"):
        CursorPaginator(BASE).next_url(PAGE1, answer)


def test_a_listing_walks_every_page_once() -> None:
    listing = CursorPaginator(BASE).listing(PAGE1)
    assert listing.next_url(PAGE1, body(PAGE2)) == PAGE2
    assert listing.next_url(PAGE2, body(PAGE3)) == PAGE3
    assert listing.next_url(PAGE3, body(None, has_more=False)) is None


def test_a_listing_refuses_a_link_back_to_an_earlier_page() -> None:
    listing = CursorPaginator(BASE).listing(PAGE1)
    listing.next_url(PAGE1, body(PAGE2))
    with pytest.raises(RejectedError, match="already read"):
        listing.next_url(PAGE2, body(PAGE1))


def test_a_listing_started_without_its_query_still_sees_a_loop_to_the_first_page() -> None:
    listing = CursorPaginator(BASE).listing(RECORDS)  # parameters sent separately
    listing.next_url(PAGE1, body(PAGE2))  # PAGE1 is the URL the transport reports
    with pytest.raises(RejectedError, match="already read"):
        listing.next_url(PAGE2, body(PAGE1))


@pytest.mark.parametrize("start", [
    "https://evil.example/api/v2/custom_objects/car/records",
    "http://acme.zendesk.com/api/v2/custom_objects/car/records",
])
def test_a_listing_refuses_to_start_on_another_origin(start: str) -> None:
    with pytest.raises(RejectedError, match="ZENDESK_URL"):
        CursorPaginator(BASE).listing(start)
