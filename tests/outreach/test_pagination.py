from __future__ import annotations

import pytest

from bridge.errors import ApiError, RejectedError
from bridge.outreach.pagination import CursorPaginator

ORIGIN = "https://api.outreach.io"
PAGE1 = f"{ORIGIN}/api/v2/customObjects/vehicles?page%5Bsize%5D=50"
PAGE2 = f"{ORIGIN}/api/v2/customObjects/vehicles?page%5Bafter%5D=Wzk3Mjc1XQ%3D%3D&page%5Bsize%5D=50"


def test_follows_links_next_verbatim() -> None:
    assert CursorPaginator(ORIGIN).next_url(PAGE1, {"links": {"next": PAGE2}}) == PAGE2


@pytest.mark.parametrize("body", [{}, {"links": {}}, {"links": {"next": None}}, {"links": None}, {"links": {"next": ""}}])
def test_no_next_link_means_last_page(body: dict) -> None:
    assert CursorPaginator(ORIGIN).next_url(PAGE1, body) is None


def test_default_port_and_case_are_the_same_origin() -> None:
    nxt = "HTTPS://API.outreach.io:443/api/v2/customObjects/vehicles?page%5Bafter%5D=x"
    assert CursorPaginator(ORIGIN + "/").next_url(PAGE1, {"links": {"next": nxt}}) == nxt


def test_relative_link_resolves_on_the_current_origin() -> None:
    got = CursorPaginator(ORIGIN).next_url(PAGE1, {"links": {"next": "/api/v2/customObjects/vehicles?page%5Bafter%5D=x"}})
    assert got == f"{ORIGIN}/api/v2/customObjects/vehicles?page%5Bafter%5D=x"


@pytest.mark.parametrize(
    "foreign",
    [
        "https://api.outreach-staging.com/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "http://api.outreach.io/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "https://api.outreach.io:8443/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "https://evil.example/?access_token=SECRET-TOKEN",
    ],
)
def test_refuses_another_origin(foreign: str) -> None:
    with pytest.raises(ApiError) as info:
        CursorPaginator(ORIGIN).next_url(PAGE1, {"links": {"next": foreign}})
    assert "outside the configured API origin" in str(info.value)
    assert "SECRET-TOKEN" not in str(info.value)


def test_next_equal_to_current_raises() -> None:
    with pytest.raises(ApiError, match="equals the current page"):
        CursorPaginator(ORIGIN).next_url(PAGE2, {"links": {"next": PAGE2}})


@pytest.mark.parametrize("body", [{"links": "nope"}, {"links": {"next": 5}}])
def test_wrong_shapes_raise(body: dict) -> None:
    with pytest.raises(ApiError):
        CursorPaginator(ORIGIN).next_url(PAGE1, body)


PAGE3 = f"{ORIGIN}/api/v2/customObjects/vehicles?page%5Bafter%5D=WzEwMF0%3D&page%5Bsize%5D=50"


def test_a_listing_follows_new_pages() -> None:
    listing = CursorPaginator(ORIGIN).listing(PAGE1)
    assert listing.next_url(PAGE1, {"links": {"next": PAGE2}}) == PAGE2
    assert listing.next_url(PAGE2, {"links": {"next": PAGE3}}) == PAGE3
    assert listing.next_url(PAGE3, {"links": {}}) is None


@pytest.mark.parametrize("back_to", [PAGE1, PAGE2])
def test_a_listing_refuses_a_next_link_back_to_a_page_it_read(back_to: str) -> None:
    listing = CursorPaginator(ORIGIN).listing(PAGE1)
    listing.next_url(PAGE1, {"links": {"next": PAGE2}})
    listing.next_url(PAGE2, {"links": {"next": PAGE3}})
    with pytest.raises(RejectedError, match="leads back to a page already read in this listing"):
        listing.next_url(PAGE3, {"links": {"next": back_to}})


def test_each_listing_remembers_only_its_own_pages() -> None:
    paginator = CursorPaginator(ORIGIN)
    for _ in range(2):
        listing = paginator.listing(PAGE1)
        assert listing.next_url(PAGE1, {"links": {"next": PAGE2}}) == PAGE2


@pytest.mark.parametrize(
    "start",
    [
        "https://api.outreach-staging.com/api/v2/customObjects/vehicles?page%5Bafter%5D=x",
        "https://evil.example/?access_token=SECRET-TOKEN",
        "api/v2/customObjects/vehicles",
    ],
)
def test_a_listing_refuses_to_start_on_another_origin(start: str) -> None:
    with pytest.raises(RejectedError) as info:
        CursorPaginator(ORIGIN).listing(start)
    assert "outside the configured API origin" in str(info.value)
    assert "SECRET-TOKEN" not in str(info.value)


def test_a_listing_may_start_on_the_origin_spelled_differently() -> None:
    start = "HTTPS://API.outreach.io:443/api/v2/customObjects/vehicles?page%5Bafter%5D=x"
    assert CursorPaginator(ORIGIN).listing(start).next_url(start, {}) is None
