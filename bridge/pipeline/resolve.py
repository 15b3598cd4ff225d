"""Resolving a page's links to Zendesk ids: which lookups can be set, cleared, or must wait.

Costs, cheapest first (the issue's "cheapest correct resolution"):
- `mapping:<name>` targets come from the id map in Postgres: no Zendesk request at all. Zendesk
  could resolve `external_id:<id>` itself, but it fails the whole record when the target does
  not exist, so bridge sends only ids it knows exist and parks the rest;
- `zen:user` / `zen:organization` matched by `external_id`: one `show_many` per page per kind
  (100 distinct targets per request), answers cached for the run;
- matched by `email` or `name`: first one `show_many` by the external id bridge's convention
  gives the related record (`outreach:<type>:<id>`), a match kept only when the user's email
  (or name) agrees; then, as Zendesk has no bulk search, one exact search per distinct value
  still unknown and not cached. The email or name itself comes from the page's `included`
  resources (the list request asked for them with `include=` and `fields[...]=`), never from a
  request per record.
- where the people directory (`bridge/directory.py`, a `PeopleDirectory`) covers a kind, it
  answers the three matches from Postgres instead, and a value it lacks costs one batched
  `show_many` check, never a search: the two ways above are for when it does not.
Invariants: a link never fails or holds back its record (an unknown target is parked, an
unreadable match value is parked without one); a look-up Zendesk did not answer (an API
error that retries did not cure) leaves its targets unknown: parked, not cached, asked again
by the next page or fill; only errors every later look-up would hit too (credentials
refused, access revoked: 403) stop the run. A null relationship clears the lookup; the
cache holds at most `cache_size` answers (least recently used go first), negative answers
included, so a missing user is asked for once per run, not once per page.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from bridge import targets
from bridge.errors import ApiError, AuthError, RejectedError
from bridge.logs import get_logger
from bridge.mapping import model
from bridge.outreach.models import OutreachId
from bridge.store import idmap, links
from bridge.store.links import ParkedLink
from bridge.translate import Link, Translated
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ZendeskPerson

log = get_logger(__name__)

Included = Mapping[tuple[str, OutreachId], Mapping[str, Any]]
LinkKey = tuple[str, str]  # (source_id, lookup field)
MAPPING = targets.Kind.MAPPING


@dataclass(frozen=True, slots=True)
class Target:
    """What a link points at, in the terms it is resolved by.

    `kind` is "mapping" (then `key` is the mapping name and `value` the target's source id)
    or `zen:user`/`zen:organization` (then `key` is the match attribute, `value` its value).
    """

    kind: targets.Kind
    key: str
    value: str
    # For email/name matches: the external id the related record would have in Zendesk by
    # bridge's convention; tried first in one batched `show_many`, confirmed by the email or
    # name it returns. Not part of the identity (nor of the cache key).
    hint: str | None = field(default=None, compare=False)


def relationship_query(
    mapping: model.Mapping,
) -> tuple[list[str], dict[str, list[str]]]:
    """`include` and `fields[...]` for the list request, so that email and name matches find
    the related record's attribute on the same page (one level deep, as Outreach allows)."""
    include: set[str] = set()
    fields: dict[str, set[str]] = {}
    for rel in mapping.relationships.values():
        attributes = targets.match_attributes(rel.lookup, rel.match)
        if not attributes:
            continue
        include.add(rel.from_)
        for type_, attribute in attributes:
            if type_ != mapping.source.type:  # fields[<own type>] would trim the records too
                fields.setdefault(type_, set()).add(attribute)
    return sorted(include), {t: sorted(a) for t, a in sorted(fields.items())}


def mapping_name(link_target: str) -> str | None:
    return targets.parse(link_target).mapping


def match_value(link: Link, included: Included) -> str | None:
    """The value a `zen:` link is matched by, or None when the page does not carry it."""
    if link.source_id is None:
        return None
    if link.match == "external_id":
        return targets.external_id_of(link.source_type, link.source_id)
    attrs = included.get((link.source_type, OutreachId(link.source_id)))
    if attrs is None:
        return None
    if link.match == "email":
        emails = attrs.get("emails")
        value = emails[0] if isinstance(emails, list) and emails else attrs.get("email")
    else:
        value = attrs.get("name")
    return value.strip() if isinstance(value, str) and value.strip() else None


def target_of(link: Link, value: str | None) -> Target | None:
    if link.source_id is None:
        return None
    lookup = targets.parse(link.target)
    if lookup.mapping is not None:
        return Target(MAPPING, lookup.mapping, link.source_id)
    if value is None or link.match is None:
        return None
    hint = None if link.match == "external_id" else targets.external_id_of(link.source_type, link.source_id)
    return Target(lookup.kind, link.match, value, hint)


def parked_form(link: Link, value: str | None) -> ParkedLink:
    """The row a link is parked as: enough to fill it later without the page."""
    assert link.source_id is not None
    return ParkedLink(
        source_id="",  # set by LinkPlan.add
        field=link.field,
        target=targets.parse(link.target).stored(),
        target_type=link.source_type,
        target_source_id=link.source_id,
        match=link.match,
        match_value=value,
    )


@dataclass(slots=True)
class LinkPlan:
    """For the changed records of one page: lookup values to send and links to park."""

    values: dict[str, dict[str, str | None]] = field(default_factory=dict)  # sid → field → id
    pending: dict[LinkKey, ParkedLink] = field(default_factory=dict)  # every non-null link
    targets: dict[LinkKey, Target] = field(default_factory=dict)
    resolved: set[LinkKey] = field(default_factory=set)
    cleared: set[LinkKey] = field(default_factory=set)

    def parked_for(self, written: set[str]) -> list[ParkedLink]:
        return [p for k, p in self.pending.items() if k[0] in written and k not in self.resolved]

    def settled_for(self, written: set[str]) -> list[LinkKey]:
        return [k for k in (*self.resolved, *self.cleared) if k[0] in written]


class PeopleDirectory(Protocol):
    """Zendesk users and organizations kept in Postgres (`bridge/directory.py`): where it
    `covers` a target and match, it answers instead of a search per value."""

    async def refresh_for(self, mappings: Sequence[model.Mapping]) -> object: ...

    def covers(self, target: str, match: str) -> bool: ...

    async def resolve(
        self, target: str, match: str, wanted: Sequence[tuple[str, str | None]]
    ) -> tuple[dict[str, str], set[str]]: ...


class Resolver:
    """Finds Zendesk ids for link targets, batched per page, cached (bounded) for the run."""

    def __init__(
        self, zendesk: ZendeskClient, *, cache_size: int = 50_000, search_concurrency: int = 4,
        directory: PeopleDirectory | None = None,
    ) -> None:  # fmt: skip
        self._zendesk = zendesk
        self._directory = directory
        self._cache: OrderedDict[Target, str | None] = OrderedDict()
        self._cache_size = cache_size
        self._searches = asyncio.Semaphore(search_concurrency)
        self.requests = 0  # Zendesk look-up requests made (for logs and benchmarks)

    async def plan(
        self, pool: asyncpg.Pool, records: Sequence[Translated], included: Included
    ) -> LinkPlan:
        plan = LinkPlan()
        for record in records:
            values = plan.values.setdefault(record.source_id, {})
            for link in record.links:
                key = (record.source_id, link.field)
                if link.source_id is None:
                    values[link.field] = None
                    plan.cleared.add(key)
                    continue
                value = None if mapping_name(link.target) else match_value(link, included)
                values[link.field] = None  # until resolved: written without the lookup
                plan.pending[key] = _with_source(parked_form(link, value), record.source_id)
                target = target_of(link, value)
                if target is not None:
                    plan.targets[key] = target
        async with pool.acquire() as conn:
            found = await self.find(conn, set(plan.targets.values()))
        for key, target in plan.targets.items():
            if (zid := found.get(target)) is not None:
                plan.values[key[0]][key[1]] = zid
                plan.resolved.add(key)
        return plan

    async def find(self, conn: Any, wanted: Iterable[Target]) -> dict[Target, str]:
        """Zendesk ids of the targets that exist; absent ones are simply left out."""
        by_kind: dict[tuple[targets.Kind, str], list[Target]] = {}
        for t in wanted:
            by_kind.setdefault((t.kind, t.key), []).append(t)
        found: dict[Target, str] = {}
        zen: list[tuple[tuple[targets.Kind, str], list[Target]]] = []
        for (kind, key), group in sorted(by_kind.items()):
            if targets.Kind(kind).resolution is targets.Resolution.ID_MAP:
                found.update(await from_id_map(conn, key, group))
            else:
                zen.append(((kind, key), group))
        answers = await asyncio.gather(*(self._zen(kind, key, group) for (kind, key), group in zen))
        for answer in answers:
            found.update(answer)
        return found

    def forget(self, target: Target) -> None:
        """Drops a cached answer Zendesk has since refused (the target was deleted)."""
        self._cache.pop(target, None)

    async def _zen(self, kind: str, key: str, group: list[Target]) -> dict[Target, str]:
        found: dict[Target, str] = {}
        missing: list[Target] = []
        for t in group:
            if t in self._cache:
                self._cache.move_to_end(t)
                if (cached := self._cache[t]) is not None:
                    found[t] = cached
            else:
                missing.append(t)
        if missing:
            fresh, unknown = await self._ask(kind, key, missing)
            for t in missing:
                if t not in unknown:
                    self._remember(t, fresh.get(t))
            found.update(fresh)
        return found

    async def _ask(
        self, kind: str, key: str, targets: list[Target]
    ) -> tuple[dict[Target, str], set[Target]]:
        """The targets found, and those left unknown because Zendesk did not answer."""
        if self._directory is not None and self._directory.covers(kind, key):
            ids, unanswered = await self._directory.resolve(kind, key, [(t.value, t.hint) for t in targets])
            return ({t: ids[t.value] for t in targets if t.value in ids},
                    {t for t in targets if t.value in unanswered})  # fmt: skip
        if key == "external_id":
            people = await self._show_many(kind, [t.value for t in targets])
            if people is None:
                return {}, set(targets)
            return {t: p.id for t in targets if (p := people.get(t.value)) is not None}, set()
        # Batched first: by the conventional external id, kept only if email/name agree.
        people = await self._show_many(kind, [t.hint for t in targets if t.hint])
        if people is None:
            return {}, set(targets)
        found = {
            t: p.id
            for t in targets
            if t.hint and (p := people.get(t.hint)) is not None and _same(getattr(p, key), t.value)
        }
        rest = [t for t in targets if t not in found]
        answers = await asyncio.gather(*(self._search(kind, key, t.value) for t in rest))
        unknown = {t for t, answer in zip(rest, answers, strict=True) if answer is _UNKNOWN}
        found.update({t: a for t, a in zip(rest, answers, strict=True) if isinstance(a, str)})
        if unknown:
            log.warning("lookups_unresolved", target=kind, match=key, targets=len(unknown))
        return found, unknown

    async def _show_many(
        self, kind: str, external_ids: list[str]
    ) -> dict[str, ZendeskPerson] | None:
        """People by external id; None when Zendesk did not answer."""
        values = sorted({v for v in external_ids if "," not in v})
        if not values:
            return {}
        lookup = (self._zendesk.users_by_external_ids if kind == targets.Kind.USER
                  else self._zendesk.organizations_by_external_ids)  # fmt: skip
        self.requests += -(-len(values) // 100)
        try:
            people = await lookup(values)
        except ApiError as exc:
            _unless_fatal(exc, kind, "external_id", len(values))
            return None
        return {p.external_id: p for p in people if p.external_id is not None}

    async def _search(self, kind: str, key: str, value: str) -> str | None | _Unknown:
        """The one match's id, None when there is none, `_UNKNOWN` when Zendesk did not answer."""
        async with self._searches:
            self.requests += 1
            try:
                if kind == targets.Kind.ORGANIZATION:
                    people: list[ZendeskPerson] = await self._zendesk.organizations_by_name(value)
                elif key == "email":
                    people = await self._zendesk.users_by_email(value)
                else:
                    people = await self._zendesk.users_by_name(value)
            except ApiError as exc:
                _unless_fatal(exc, kind, key, 1)
                return _UNKNOWN
        if len(people) > 1:
            log.warning("lookup_ambiguous", target=kind, match=key, matches=len(people))
        return people[0].id if people else None

    def _remember(self, target: Target, zid: str | None) -> None:
        self._cache[target] = zid
        self._cache.move_to_end(target)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class _Unknown:
    """The answer of a look-up Zendesk did not give (unlike None: looked up, not there)."""


_UNKNOWN = _Unknown()


def _unless_fatal(exc: ApiError, kind: str, match: str, targets: int) -> None:
    """Re-raises what every later look-up would hit too; logs the rest, which leaves the
    targets unknown (their links are parked and looked up again later)."""
    if isinstance(exc, AuthError) or (isinstance(exc, RejectedError) and exc.status == 403):
        raise exc
    log.warning("lookup_failed", target=kind, match=match, targets=targets, status=exc.status,
                error=str(exc))  # fmt: skip


async def from_id_map(conn: Any, mapping: str, group: list[Target]) -> dict[Target, str]:
    """Zendesk ids of `mapping:` targets bridge wrote and Zendesk has not refused (read only)."""
    ids = sorted({t.value for t in group})
    rows = await idmap.lookup(conn, mapping, ids)
    refused = await links.refused_ids(conn, mapping, ids)
    found: dict[Target, str] = {}
    for t in group:
        row = rows.get(t.value)
        if row is not None and row.zendesk_id and (t.value, row.zendesk_id) not in refused:
            found[t] = row.zendesk_id
    return found


def _same(found: str | None, wanted: str) -> bool:
    return found is not None and found.casefold() == wanted.casefold()


def _with_source(link: ParkedLink, source_id: str) -> ParkedLink:
    return ParkedLink(source_id, link.field, link.target, link.target_type, link.target_source_id,
                      link.match, link.match_value)  # fmt: skip
