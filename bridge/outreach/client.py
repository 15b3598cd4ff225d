"""Reads Outreach API v2 resources: list URLs, cursor pages, single records, the schema.

The client builds URLs and interprets bodies; the `Transport` does everything on the wire
(auth, pacing, retries, error translation). Invariants kept here:

- every request sends the JSON:API media type as Content-Type and Accept (a missing one is a
  415, api/outreach.md "Envelope");
- list URLs use cursor paging sorted by `updatedAt` with `count=false`, and the incremental
  filter `filter[updatedAt]=<since, ms precision, UTC>..inf` (finer precision is refused);
- next links are followed verbatim, only on the configured origin, and a listing never
  starts on another origin nor reads a page twice (`CursorPaginator`, `Listing`);
- a 2xx body that is JSON but not JSON:API is an `ApiError`; an unreadable one was already
  retried by the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import pydantic

from bridge.errors import RejectedError
from bridge.http.transport import Transport
from bridge.outreach import wire
from bridge.outreach.models import Page, SourceRecord
from bridge.outreach.pagination import CursorPaginator
from bridge.outreach.schema import SourceType, parse_schema
from bridge.redact import redact_text, redact_url

JSONAPI = "application/vnd.api+json"
_HEADERS = {"Content-Type": JSONAPI, "Accept": JSONAPI}
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class OutreachConfig:
    api_url: str = "https://api.outreach.io"  # origin; API under /api/v2, token at /oauth/token
    page_size: int = 1000  # ≤ 1000

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def format_since(since: datetime) -> str:
    """`2024-07-25T13:18:30.000Z`: UTC, milliseconds (Outreach refuses finer filters)."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    utc = since.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class OutreachClient:
    def __init__(self, transport: Transport, config: OutreachConfig) -> None:
        self._transport = transport
        self.config = config
        self._base = config.api_url.rstrip("/")
        self._paginator = CursorPaginator(self._base)

    @property
    def transport(self) -> Transport:
        """The request loop, for other Outreach resources (`outreach.webhooks`)."""
        return self._transport

    def list_url(
        self,
        type: str,
        *,
        custom_object: bool,
        since: datetime | None = None,
        filters: Mapping[str, str] | None = None,
        include: Sequence[str] = (),
        fields: Mapping[str, Sequence[str]] | None = None,
    ) -> str:
        """The first page's URL. `filters` keys are full query names: `filter[brand][name]`."""
        query: list[tuple[str, str]] = [
            ("page[size]", str(self.config.page_size)), ("count", "false"), ("sort", "updatedAt"),
        ]
        if since is not None:
            query.append(("filter[updatedAt]", f"{format_since(since)}..inf"))
        query.extend((key, value) for key, value in (filters or {}).items())
        if include:
            query.append(("include", ",".join(include)))
        query.extend((f"fields[{t}]", ",".join(names)) for t, names in (fields or {}).items())
        return f"{self._resource_url(type, custom_object)}?{urlencode(query, safe='[],:')}"

    async def pages(self, start_url: str) -> AsyncIterator[Page]:
        """Yields each page in order, following `links.next` until there is none.

        The next page is requested as soon as this one's `links.next` is known, so its wait
        overlaps the work on this one; a caller that stops early cancels that request, and its
        failure reaches the caller only after this page (in listing order).

        `start_url` may be a stored resume URL: one on another origin than the configured API
        is refused (a `RejectedError`) before any request, like a foreign `links.next`.
        """
        listing = self._paginator.listing(start_url)
        url: str | None = start_url
        reading = asyncio.ensure_future(self._get_json(start_url))
        try:
            while url is not None:
                body = await reading
                if not isinstance(body, Mapping):
                    raise self._bad_shape(url, "list body is not a JSON object")
                next_url = listing.next_url(url, body)
                if next_url is not None:  # read ahead while this page is converted and used
                    reading = asyncio.ensure_future(self._get_json(next_url))
                    await asyncio.sleep(0)  # the request leaves now, not after the conversion
                try:
                    page = wire.to_page(body, url, next_url)
                except (pydantic.ValidationError, ValueError) as exc:
                    raise self._bad_shape(url, _first_problem(exc)) from exc
                del body  # the records keep what they need of it
                yield page
                url = next_url
        finally:
            await _drop(reading)

    async def get(self, type: str, id: str, *, custom_object: bool) -> SourceRecord | None:
        """One record, or None when Outreach says it does not exist (404)."""
        url = f"{self._resource_url(type, custom_object)}/{quote(id, safe='')}"
        try:
            body = await self._get_json(url)
        except RejectedError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return wire.to_single(body)
        except (pydantic.ValidationError, ValueError) as exc:
            raise self._bad_shape(url, _first_problem(exc)) from exc

    async def schema(self) -> dict[str, Any]:
        """GET /api/v2/schema: draft-07 hyper-schema with one `definitions` entry per type."""
        url = f"{self._base}/api/v2/schema"
        body = await self._get_json(url)
        if not isinstance(body, dict) or not isinstance(body.get("definitions"), dict):
            raise self._bad_shape(url, "schema has no `definitions` object")
        return body

    async def source_types(self) -> dict[str, SourceType]:
        """The schema's types, parsed (`bridge.outreach.schema`); custom objects only when
        this client's credentials are accepted."""
        return parse_schema(await self.schema())

    async def probe(self, type: str, *, custom_object: bool) -> None:
        """Reads one record of `type`: raises AuthError when the credentials are refused,
        RejectedError (404) when Outreach has no such type; returns when it can be listed."""
        url = f"{self._resource_url(type, custom_object)}?page[size]=1&count=false"
        await self._get_json(url)

    async def _get_json(self, url: str) -> Any:
        response = await self._transport.request("GET", url, headers=_HEADERS)
        return response.json()

    def _resource_url(self, type: str, custom_object: bool) -> str:
        prefix = "/api/v2/customObjects/" if custom_object else "/api/v2/"
        return f"{self._base}{prefix}{quote(type, safe='')}"

    def _bad_shape(self, url: str, what: str) -> RejectedError:
        path = redact_url(url)
        return RejectedError(
            f"outreach GET {path}: answered 2xx with a body that is not JSON:API ({what}); "
            "check OUTREACH_API_URL points at the Outreach API",
            api="outreach", method="GET", path=path, detail=what,
        )


async def _drop(reading: asyncio.Future[Any]) -> None:
    """Cancels a read-ahead no one will use and waits for it to end; its error is not raised
    (the caller has its own outcome) and never logged as unretrieved."""
    reading.cancel()  # nothing when it is done
    await asyncio.wait({reading})
    if not reading.cancelled():
        reading.exception()


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return redact_text(str(exc))[:200]
