"""Which URL comes after this page: Zendesk cursor paging, as a pure function of the body.

Zendesk's cursor-paged lists (custom object records and fields; api/zendesk.md, "Records")
answer `{"links": {"next", "prev"}, "meta": {"has_more", "after_cursor", …}}`: there is a
next page while `meta.has_more` is true, at `links.next`, which carries every parameter of
the first request. The paginator follows it verbatim, with the same guards as Outreach's:

- a next link on another origin is refused (`bridge.http.origin`, the check both clients
  share), because the credentials would be sent there;
- a `Listing` (one walk from a start URL) refuses to start on another origin too, so a
  stored URL from another ZENDESK_URL cannot carry them elsewhere either;
- a next link back to a page this listing already read (the current one, or any earlier one)
  would loop forever, so it is an error.

All refusals are `RejectedError`s: following the same link again cannot help. URLs compare
unquoted, because the transport hands back the URL it sent percent-encoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from bridge.errors import RejectedError
from bridge.http.origin import SameOrigin
from bridge.redact import redact_url
from bridge.zendesk.wire import API


class CursorPaginator:
    """Body in, next URL (or None on the last page) out; raises rather than leave the origin."""

    def __init__(self, base_url: str) -> None:
        self._origin = SameOrigin(base_url, api=API, setting="ZENDESK_URL")

    def listing(self, start_url: str) -> Listing:
        """A walk from `start_url`; refuses (before any request) a start on another origin."""
        if not self._origin.holds(start_url):
            raise _refused(
                start_url,
                f"the listing would start at {redact_url(start_url)}, outside the configured API "
                f"origin {self._origin.origin}; refusing to send the credentials there. Check "
                "ZENDESK_URL",
            )
        return Listing(self, start_url)

    def next_url(self, current_url: str, body: Mapping[str, Any]) -> str | None:
        if not _has_more(current_url, body):
            return None
        links = body.get("links")
        if not isinstance(links, Mapping):
            raise _shape(current_url, "`meta.has_more` is true but `links` is not an object")
        nxt = links.get("next")
        if nxt is None or nxt == "":
            return None
        if not isinstance(nxt, str):
            raise _shape(current_url, "`links.next` is not a string")
        resolved = nxt if urlsplit(nxt).scheme else urljoin(current_url, nxt)
        self._origin.check_next(current_url, resolved)
        if unquote(resolved) == unquote(current_url):
            raise _refused(
                current_url, "links.next is the page just read (the API would loop); stopping "
                "the listing, report it",
            )
        return resolved


class Listing:
    """One walk through a listing: remembers every URL it read, so no cycle goes unnoticed."""

    def __init__(self, paginator: CursorPaginator, start_url: str) -> None:
        self._paginator = paginator
        self._seen = {unquote(start_url)}

    def next_url(self, current_url: str, body: Mapping[str, Any]) -> str | None:
        """The paginator's answer, refused when it leads back to a page already read."""
        self._seen.add(unquote(current_url))
        nxt = self._paginator.next_url(current_url, body)
        if nxt is None:
            return None
        if unquote(nxt) in self._seen:
            raise _refused(
                current_url,
                f"links.next leads back to a page already read in this listing (after "
                f"{len(self._seen)} pages; the API would loop); stopping the listing, report it",
            )
        return nxt


def _has_more(current_url: str, body: Mapping[str, Any]) -> bool:
    meta = body.get("meta")
    if meta is None:
        return False
    if not isinstance(meta, Mapping):
        raise _shape(current_url, "`meta` is not an object")
    return meta.get("has_more") is True


def _shape(current_url: str, what: str) -> RejectedError:
    return _refused(current_url, f"{what}; the API answered with an unexpected shape, check "
                    "ZENDESK_URL")


def _refused(current_url: str, what: str) -> RejectedError:
    path = redact_url(current_url)
    return RejectedError(f"{API} GET {path}: {what}", api=API, method="GET", path=path,
                         detail=what)
