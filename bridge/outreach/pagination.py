"""Which URL comes after this page: Outreach cursor paging, as a pure function of the body.

Outreach pages by cursor: each list body carries `links.next`, an absolute URL with every
original parameter and an opaque `page[after]`; no `links.next` means the last page
(api/outreach.md, "Paging"). The paginator follows it verbatim, with two guards:

- a next link on another origin is refused, because the bearer token would be sent there
  (the documentation's own example points at api.outreach-staging.com);
- a next link equal to the current URL would loop forever, so it is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from bridge.errors import ApiError
from bridge.redact import redact_url

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in, lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)


class CursorPaginator:
    """Body in, next URL (or None on the last page) out; raises rather than leave the origin."""

    def __init__(self, allowed_origin: str) -> None:
        self._origin = origin(allowed_origin)
        self._shown_origin = f"{self._origin[0]}://{self._origin[1]}:{self._origin[2]}"

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
        if origin(resolved) != self._origin:
            raise self._error(
                current_url,
                f"next page link points at {redact_url(resolved)}, outside the configured API "
                f"origin {self._shown_origin}; refusing to send the token there. Check "
                "OUTREACH_API_URL matches the host the API answers from",
            )
        if resolved == current_url:
            raise self._error(
                current_url, "next page link equals the current page (the API would loop); "
                "restart the run from the watermark",
            )
        return resolved

    def _error(self, current_url: str, what: str) -> ApiError:
        path = redact_url(current_url)
        return ApiError(f"outreach GET {path}: {what}", api="outreach", method="GET", path=path,
                        detail=what)
