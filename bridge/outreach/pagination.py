"""Which URL comes after this page: Outreach cursor paging, as a pure function of the body.

Outreach pages by cursor: each list body carries `links.next`, an absolute URL with every
original parameter and an opaque `page[after]`; no `links.next` means the last page
(api/outreach.md, "Paging"). The paginator follows it verbatim, with three guards:

- a next link on another origin is refused (`bridge.http.origin`, the check both clients
  share), because the bearer token would be sent there (the documentation's own example
  points at api.outreach-staging.com);
- a `Listing` (one walk from a start URL) refuses to start on another origin too: a stored
  resume URL from an earlier OUTREACH_API_URL, or an edited checkpoint, must not carry the
  token elsewhere either;
- a next link back to a page this listing already read (the current one, or any earlier one:
  A → B → A) would loop forever, so it is an error.

The origin, start and loop refusals are `RejectedError`s: retrying the same URL cannot help, and a
caller resuming from a stored URL falls back to listing from its watermark on that error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from bridge.errors import ApiError, RejectedError
from bridge.http.origin import SameOrigin
from bridge.redact import redact_url


class CursorPaginator:
    """Body in, next URL (or None on the last page) out; raises rather than leave the origin."""

    def __init__(self, allowed_origin: str) -> None:
        self._origin = SameOrigin(allowed_origin, api="outreach", setting="OUTREACH_API_URL")
        self._shown_origin = str(self._origin.origin)

    def listing(self, start_url: str) -> Listing:
        """A walk from `start_url`; refuses (before any request) a start on another origin."""
        if not self._origin.holds(start_url):
            raise _refused(
                start_url,
                f"the listing would start at {redact_url(start_url)}, outside the configured API "
                f"origin {self._shown_origin}; refusing to send the token there. A stored resume "
                "URL from another OUTREACH_API_URL is dropped and the listing starts again from "
                "the watermark",
            )
        return Listing(self, start_url)

    def next_url(self, current_url: str, body: Mapping[str, Any]) -> str | None:
        links = body.get("links")
        if links is None:
            return None
        if not isinstance(links, Mapping):
            raise self._error(current_url, "`links` is not an object; the API answered with an "
                              "unexpected shape, check OUTREACH_API_URL")
        nxt = links.get("next")
        if nxt is None or nxt == "":
            return None
        if not isinstance(nxt, str):
            raise self._error(current_url, "`links.next` is not a string; the API answered with "
                              "an unexpected shape, check OUTREACH_API_URL")
        resolved = nxt if urlsplit(nxt).scheme else urljoin(current_url, nxt)
        self._origin.check_next(current_url, resolved)
        if resolved == current_url:
            raise _refused(
                current_url, "next page link equals the current page (the API would loop); "
                "restart the run from the watermark",
            )
        return resolved

    def _error(self, current_url: str, what: str) -> ApiError:
        path = redact_url(current_url)
        return ApiError(f"outreach GET {path}: {what}", api="outreach", method="GET", path=path,
                        detail=what)



class Listing:
    """One walk through a listing: remembers every URL it read, so no cycle goes unnoticed."""

    def __init__(self, paginator: CursorPaginator, start_url: str) -> None:
        self._paginator = paginator
        self._seen = {start_url}

    def next_url(self, current_url: str, body: Mapping[str, Any]) -> str | None:
        """The paginator's answer, refused when it leads back to a page already read."""
        nxt = self._paginator.next_url(current_url, body)
        if nxt is None:
            return None
        if nxt in self._seen:
            raise _refused(
                current_url,
                f"next page link leads back to a page already read in this listing (after "
                f"{len(self._seen)} pages; the API would loop); restart the run from the watermark",
            )
        self._seen.add(nxt)
        return nxt


def _refused(current_url: str, what: str) -> RejectedError:
    path = redact_url(current_url)
    return RejectedError(f"outreach GET {path}: {what}", api="outreach", method="GET", path=path,
                         detail=what)
