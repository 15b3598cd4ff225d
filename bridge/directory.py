"""The Zendesk people directory: users and organizations kept in Postgres for lookups.

Email, name and external-id lookups to `zen:user` / `zen:organization` would otherwise cost a
Zendesk search per distinct value. Instead the directory reads Zendesk's incremental exports
(`zendesk/exports.py`, 1,000 rows a page, paced to their 10 requests a minute) into
`store/directory.py`, and lookups are answered from there.

Invariants:
- the first load resumes from the last saved page: each page is saved with its cursor in
  one transaction, and a refresh always starts from the stored cursor;
- one process refreshes a kind at a time (a session advisory lock); another that wants the
  same kind waits for it to finish and then reads what it stored;
- a kind answers lookups only once its first load has reached the end of the stream
  (`covers`); until then the resolver looks the old way, so a half-loaded directory never
  turns a present user into a parked link;
- a value the directory does not know costs ONE batched check per 100 targets: `show_many`
  by the `outreach:<type>:<id>` external id the related record would have (kept only if the
  email or name agrees), or by the external id itself. Never a search per value. What is still
  unknown is left to the caller, which parks it; a check Zendesk did not answer makes its
  targets "unknown" (asked again later), and only refused credentials or a 403 stop the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from bridge.errors import ApiError, AuthError, BridgeError, RejectedError
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.store import directory as store
from bridge.store.pool import Connection
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.exports import ExportPage, IncrementalExports
from bridge.zendesk.models import ZendeskPerson

log = get_logger(__name__)

KINDS: dict[str, store.Kind] = {"zen:user": "users", "zen:organization": "organizations"}
MATCHES = ("email", "name", "external_id")


@dataclass(frozen=True, slots=True)
class RefreshReport:
    kind: str
    pages: int
    people: int


def kinds_for(mappings: Iterable[Mapping]) -> set[store.Kind]:
    """The directory kinds that the mappings' lookups are matched in."""
    return {
        KINDS[rel.target]
        for mapping in mappings
        for rel in mapping.relationships.values()
        if rel.target in KINDS and rel.match in MATCHES
    }


class Directory:
    """Refreshes the directory from the exports and answers lookups from it."""

    def __init__(self, pool: asyncpg.Pool, exports: IncrementalExports, zendesk: ZendeskClient) -> None:
        self._pool = pool
        self._exports = exports
        self._zendesk = zendesk
        self._complete: set[str] = set()

    async def refresh_for(self, mappings: Iterable[Mapping]) -> list[RefreshReport]:
        """Brings the kinds these mappings look up up to date (nothing when they look up none).

        An export Zendesk refuses or does not answer (after retries) is logged and skipped:
        lookups then use what is stored, or the old way when the first load never finished
        (exports are for admins only: an agent's token gets 403 here). Refused credentials
        stop the run, as every other request would hit them too."""
        reports = []
        for kind in sorted(kinds_for(mappings)):
            try:
                reports.append(await self.refresh(kind))
            except AuthError:
                raise
            except ApiError as exc:
                log.warning("directory_refresh_failed", kind=kind, status=exc.status, error=str(exc))
                async with self._pool.acquire() as conn:
                    await self._note_complete(conn, kind)
        return reports

    async def refresh(self, kind: store.Kind) -> RefreshReport:
        """Reads the export from the stored cursor to the end of the stream."""
        pages = people = 0
        async with self._pool.acquire() as conn:
            if not await store.try_lock(conn, kind):
                log.info("directory_refresh_waits", kind=kind)
                await store.wait_for_lock(conn, kind)  # another process is refreshing it
                await self._note_complete(conn, kind)
                return RefreshReport(kind, 0, 0)
            try:
                stored = await store.load_cursor(conn, kind)
                async for page in self._exports.pages(kind, stored.cursor if stored else None):
                    await store.save_page(conn, kind, _people(page), page.cursor, end=page.end_of_stream)
                    pages, people = pages + 1, people + len(page.entries)
            finally:
                await store.unlock(conn, kind)
            await self._note_complete(conn, kind)
        log.info("directory_refreshed", kind=kind, pages=pages, people=people,
                 first_load=stored is None or not stored.complete)  # fmt: skip
        return RefreshReport(kind, pages, people)

    async def keep_fresh(self, mappings: Iterable[Mapping], every: float, stop: asyncio.Event) -> None:
        """The worker's schedule: refreshes every `every` seconds between runs until `stop`.
        A failed refresh is logged and tried again next time; it never stops the worker."""
        mappings = list(mappings)
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
                return
            except TimeoutError:
                pass
            try:
                await self.refresh_for(mappings)
            except BridgeError as exc:
                log.warning("directory_refresh_failed", error=str(exc))

    async def _note_complete(self, conn: Connection, kind: store.Kind) -> None:
        stored = await store.load_cursor(conn, kind)
        if stored is not None and stored.complete:
            self._complete.add(kind)

    def covers(self, target: str, match: str) -> bool:
        """Whether lookups of `target` matched by `match` are answered here."""
        return KINDS.get(target) in self._complete and match in MATCHES

    async def resolve(
        self, target: str, match: str, wanted: Sequence[tuple[str, str | None]]
    ) -> tuple[dict[str, str], set[str]]:
        """(value, hint) pairs → (Zendesk id by value for those found, values left unknown
        because Zendesk did not answer the check). Absent from both: looked up, not there."""
        kind = KINDS[target]
        async with self._pool.acquire() as conn:
            known = await store.find(conn, kind, match, (v for v, _ in wanted))  # type: ignore[arg-type]
        fold = match != "external_id"
        found = {v: zid for v, _ in wanted if (zid := known.get(v.lower() if fold else v))}
        misses = [(v, h) for v, h in wanted if v not in found]
        if not misses:
            return found, set()
        by_external_id = {(v if match == "external_id" else h): v for v, h in misses}
        by_external_id.pop(None, None)
        people = await self._check(target, sorted(k for k in by_external_id if k and "," not in k))
        if people is None:
            return found, {v for v, _ in misses}
        for ext, value in by_external_id.items():
            person = people.get(ext or "")
            if person is not None and (not fold or _agrees(person, match, value)):
                found[value] = person.id
        log.info("directory_misses", target=target, match=match, misses=len(misses),
                 found_by_check=len(found) - (len(wanted) - len(misses)))  # fmt: skip
        return found, set()

    async def _check(self, target: str, external_ids: list[str]) -> dict[str, ZendeskPerson] | None:
        """People by external id in `show_many` requests of 100; None when Zendesk did not answer."""
        if not external_ids:
            return {}
        lookup = (self._zendesk.users_by_external_ids if target == "zen:user"
                  else self._zendesk.organizations_by_external_ids)  # fmt: skip
        try:
            people = await lookup(external_ids)
        except ApiError as exc:
            if isinstance(exc, AuthError) or (isinstance(exc, RejectedError) and exc.status == 403):
                raise
            log.warning("directory_check_failed", target=target, targets=len(external_ids),
                        status=exc.status, error=str(exc))  # fmt: skip
            return None
        return {p.external_id: p for p in people if p.external_id is not None}


def _agrees(person: ZendeskPerson, match: str, value: str) -> bool:
    found = person.email if match == "email" else person.name
    return found is not None and found.casefold() == value.casefold()


def _people(page: ExportPage) -> list[store.Person]:
    return [store.Person(e.id, e.external_id, e.emails, e.name, e.deleted) for e in page.entries]
