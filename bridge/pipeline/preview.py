"""The dry-run preview: read and translate as a run would, and say per record what it would
do (`pipeline/diff.py`), writing nothing anywhere.

A preview starts where a run would (the checkpoint, `--full` or `--since`: `incremental.
start_point`), reads the same listing (`sync.source_pages`) and translates and compares
hashes as `page.load_page` does, then compares what would be sent with the payload last
sent. Invariants:
- it writes nothing: no Zendesk request at all (so no job, no token fetch), and in Postgres
  only reads (no run row, checkpoint, id map, changelog, dead letter, parked link or lease).
  Outreach is read as a run reads it, so its requests count in the shared rate budget, and an
  OAuth token Outreach rotates is stored, as for any request;
- lookups are resolved from Postgres only: `mapping:` targets through the id map,
  `zen:user`/`zen:organization` through the people directory when its first load is complete
  (as is: it is not refreshed). What only a write or a Zendesk request could tell is shown
  `Unresolved`;
- records stream out page by page, one page fetched ahead: memory does not grow with the
  number of records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg

from bridge import targets
from bridge.mapping.model import Mapping
from bridge.outreach.client import OutreachClient
from bridge.outreach.models import Page
from bridge.pipeline import diff
from bridge.pipeline.diff import Action, RecordDiff
from bridge.pipeline.incremental import Checkpoint, StartPoint, start_point
from bridge.pipeline.page import translate_page_yielding
from bridge.pipeline.resolve import Included, Target, from_id_map, mapping_name, match_value, target_of
from bridge.pipeline.sync import SyncOptions, source_pages
from bridge.store import checkpoints, idmap
from bridge.store import directory as people
from bridge.store.pool import Connection
from bridge.translate import Translated

Values = dict[str, dict[str, Any]]  # source_id → lookup field → Zendesk id, None or Unresolved
DIRECTORY_KINDS: dict[str, people.Kind] = {"zen:user": "users", "zen:organization": "organizations"}


async def preview_mapping(
    mapping: Mapping,
    pool: asyncpg.Pool,
    outreach: OutreachClient,
    options: SyncOptions,
    *,
    running: Iterable[str] = (),
) -> AsyncIterator[RecordDiff]:
    """Every record a run of `mapping` with `options` would read, with what it would do.
    `running`: the mappings the previewed backfill runs (its final fill sets lookups to
    the targets it writes)."""
    async with pool.acquire() as conn:
        stored = await checkpoints.load(conn, mapping.name)
        lookups = await StoredLookups.open(conn, running)
    cp = Checkpoint(stored.watermark, stored.resume_url) if stored else None
    start = start_point(cp, full=options.full, since=options.since, overlap=options.overlap)
    async for page in _ahead(mapping, outreach, start):
        for record in await preview_page(mapping, pool, page, lookups):
            yield record


async def preview_page(
    mapping: Mapping, pool: asyncpg.Pool, page: Page, lookups: StoredLookups
) -> list[RecordDiff]:
    """What a run would do with each record of `page`, in listing order."""
    ready, untranslatable = await translate_page_yielding(mapping, page)
    ids = [t.source_id for t in ready]
    async with pool.acquire() as conn:
        written = await idmap.written(conn, mapping.name, ids)
        known = {sid: row.payload_hash for sid, row in written.items() if row.gone_at is None}
        changed = [t for t in ready if known.get(t.source_id) != t.payload_hash]
        values = await lookups.values(conn, changed, page.included) if mapping.relationships else {}
    out = {d.source_id: RecordDiff(mapping.name, d.source_id, d.external_id, Action.DEAD_LETTER, error=d.error)
           for d in untranslatable}  # fmt: skip
    for t in ready:
        row = written.get(t.source_id)
        out[t.source_id] = _record_diff(mapping.name, t, known.get(t.source_id), row, values.get(t.source_id, {}))
    return [out.pop(r.id) for r in page.records if r.id in out]  # a record listed twice: once


def _record_diff(
    mapping: str,
    t: Translated,
    stored_hash: str | None,
    row: idmap.WrittenRecord | None,
    lookups: dict[str, Any],
) -> RecordDiff:
    action = diff.classify(t.payload_hash, stored_hash)
    zendesk_id = row.zendesk_id if row is not None else None
    if action is Action.UNCHANGED:
        return RecordDiff(mapping, t.source_id, t.external_id, action, zendesk_id)
    previous = row.payload if action is Action.UPDATE and row is not None else None
    if action is Action.UPDATE and previous is None:
        return RecordDiff(mapping, t.source_id, t.external_id, action, zendesk_id, previous_kept=False)
    changes = diff.field_changes(t.name, {**t.fields, **lookups}, previous)
    return RecordDiff(mapping, t.source_id, t.external_id, action, zendesk_id, changes)


class StoredLookups:
    """Lookup values as far as Postgres knows them, for the records a run would send."""

    def __init__(self, loaded: frozenset[str], running: frozenset[str] = frozenset()) -> None:
        self._loaded = loaded  # directory kinds whose first load is complete
        self._running = running  # mappings the previewed run writes

    @classmethod
    async def open(cls, conn: Connection, running: Iterable[str] = ()) -> StoredLookups:
        loaded = set()
        for kind in DIRECTORY_KINDS.values():
            cursor = await people.load_cursor(conn, kind)
            if cursor is not None and cursor.complete:
                loaded.add(kind)
        return cls(frozenset(loaded), frozenset(running))

    async def values(self, conn: Connection, records: Sequence[Translated], included: Included) -> Values:
        """source_id → lookup field → what the run would send (None clears it)."""
        values: Values = {}
        wanted: dict[tuple[str, str], Target] = {}
        for record in records:
            mine = values.setdefault(record.source_id, {})
            for link in record.links:
                if link.source_id is None:
                    mine[link.field] = None
                    continue
                target = target_of(link, None if mapping_name(link.target) else match_value(link, included))
                if target is None:
                    mine[link.field] = diff.WOULD_PARK
                else:
                    wanted[(record.source_id, link.field)] = target
        found = await self._find(conn, set(wanted.values()))
        for (source_id, key), target in wanted.items():
            values[source_id][key] = found.get(target, self._unknown(target))
        return values

    def _unknown(self, target: Target) -> diff.Unresolved:
        if target.kind is not targets.Kind.MAPPING:
            return diff.WOULD_ASK
        return diff.WOULD_PARK_OR_FILL if target.key in self._running else diff.WOULD_PARK

    async def _find(self, conn: Connection, wanted: Iterable[Target]) -> dict[Target, str]:
        groups: dict[tuple[targets.Kind, str], list[Target]] = {}
        for t in wanted:
            groups.setdefault((t.kind, t.key), []).append(t)
        found: dict[Target, str] = {}
        for (kind, key), group in sorted(groups.items()):
            if kind is targets.Kind.MAPPING:
                found.update(await from_id_map(conn, key, group))
            elif (stored := DIRECTORY_KINDS.get(kind)) in self._loaded and stored is not None:
                found.update(await _from_directory(conn, stored, key, group))
        return found


async def _from_directory(conn: Connection, kind: people.Kind, match: str, group: list[Target]) -> dict[Target, str]:
    if match not in ("email", "name", "external_id"):
        return {}
    ids = await people.find(conn, kind, match, (t.value for t in group))  # type: ignore[arg-type]
    fold = match != "external_id"
    return {t: zid for t in group if (zid := ids.get(t.value.lower() if fold else t.value)) is not None}


async def _ahead(mapping: Mapping, outreach: OutreachClient, start: StartPoint) -> AsyncIterator[Page]:
    """The listing's pages, the next one fetched while this one is compared."""
    queue: asyncio.Queue[Page | Exception | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for page in source_pages(mapping, outreach, start):
                await queue.put(page)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)
            return
        await queue.put(None)

    producer = asyncio.ensure_future(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        producer.cancel()
        await asyncio.wait({producer})
