"""The fill pass: parked links whose target now exists are written with bulk `update` jobs.

Run after each mapping run (for links waiting on that mapping, and that mapping's links to
Zendesk users/organizations parked by earlier runs) and once after a whole backfill (for
every mapping target, which settles cycles such as A → B → A). Invariants:
- one bulk job per ≤ `batch_size` referrer records, never a request per record; a record
  with several fillable lookups gets them in one item;
- only the lookup fields are sent (`update` changes only what it is given), so a fill never
  rewrites attributes and never touches the payload hash: the record is not written again
  just because its lookup was filled;
- a filled row is deleted only if it still points at the target it was filled with; an id
  is refused (remembered on the row as `failed_zendesk_id`, not offered again) only when
  an item's own error names its lookup field;
- a job that fails as a whole, or cannot be sent or confirmed, refuses nothing: its links
  stay parked for the next fill; a batch refused whole is halved to find the bad items;
- a run fails only for what every later job would hit too (auth, a missing object, 403),
  never for a link;
- each link filled is a `filled_link` changelog row, each refused a `parked_link` row
  naming the refused id, in the transaction that settles the parked rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from bridge import targets
from bridge.errors import ApiError
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.pipeline.load import by_halving, refused_lookups, stops_the_run
from bridge.pipeline.resolve import Resolver, Target
from bridge.store import changelog, leases, links
from bridge.store.changelog import Change
from bridge.store.links import Fillable
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ItemResult, RecordUpdate, ZendeskRecordId

log = get_logger(__name__)

CHUNK = 5000  # parked rows read per round


@dataclass(slots=True)
class FillReport:
    filled: int = 0
    refused: int = 0

    def add(self, other: FillReport) -> None:
        self.filled += other.filled
        self.refused += other.refused


class Filler:
    """Fills parked links of the given mappings through one Zendesk client and pool."""

    def __init__(
        self,
        mappings: AbcMapping[str, Mapping],
        zendesk: ZendeskClient,
        pool: asyncpg.Pool,
        *,
        resolver: Resolver | None = None,
        batch_size: int = 100,
        concurrency: int = 4,
        run_id: int | None = None,
    ) -> None:
        self._mappings = mappings
        self._run_id = run_id  # the run the fills are logged under, if any
        self._zendesk = zendesk
        self._pool = pool
        self._resolver = resolver or Resolver(zendesk)
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)

    async def on_mappings(self, target: str | None = None) -> FillReport:
        """Links to `mapping:` targets (of `target`, or all) whose target now has a Zendesk id."""
        report = FillReport()
        while True:
            async with self._pool.acquire() as conn:
                rows = await links.ready_on_mappings(conn, target, CHUNK)
            rows = [r for r in rows if r.mapping in self._mappings]
            round_ = await self._fill(rows)
            report.add(round_)
            if len(rows) < CHUNK or round_.filled + round_.refused == 0:
                break
        return report

    async def on_zendesk(self, referrer: str, parked_before: datetime) -> FillReport:
        """`referrer`'s links to Zendesk users/organizations parked before a time, looked up again."""
        if referrer not in self._mappings:
            return FillReport()
        async with self._pool.acquire() as conn:
            rows = await links.waiting_on_zendesk(conn, referrer, parked_before)
            targets = {r: _target(r) for r in rows}
            found = await self._resolver.find(conn, set(targets.values()))
        ready = [
            replace(r, value=zid)
            for r, t in targets.items()
            if (zid := found.get(t)) is not None and zid != r.failed_zendesk_id
        ]
        return await self._fill(ready)

    async def _fill(self, rows: Sequence[Fillable]) -> FillReport:
        if not rows:
            return FillReport()
        groups: dict[tuple[str, str], list[Fillable]] = {}
        for row in rows:
            groups.setdefault((row.mapping, row.referrer_id), []).append(row)
        by_object: dict[str, list[list[Fillable]]] = {}
        for (mapping, _), group in groups.items():
            by_object.setdefault(self._mappings[mapping].target.object, []).append(group)
        jobs = [
            self._job(obj, items[i : i + self._batch_size])
            for obj, items in by_object.items()
            for i in range(0, len(items), self._batch_size)
        ]
        outcomes = await asyncio.gather(*jobs)
        done = [pair for ok, _ in outcomes for pair in ok]
        bad = [pair for _, no in outcomes for pair in no]
        filled = [f for f, _ in done]
        refused = [f for f, _ in bad]
        async with self._pool.acquire() as conn, conn.transaction():
            await links.remove_filled(conn, filled)
            await links.mark_refused(conn, refused)
            for mapping, changes in fill_changes(done, bad).items():
                await changelog.add_many(conn, mapping, self._run_id, changes)
        if filled or refused:
            log.info("links_filled", filled=len(filled), refused=len(refused))
        return FillReport(len(filled), len(refused))

    async def _job(
        self, object_key: str, groups: list[list[Fillable]]
    ) -> tuple[list[tuple[Fillable, ItemResult]], list[tuple[Fillable, ItemResult]]]:
        items = [
            RecordUpdate(ZendeskRecordId(g[0].referrer_id), {f.field: f.value for f in g})
            for g in groups
        ]

        async def send(batch: Sequence[RecordUpdate]) -> list[ItemResult]:
            async with self._slots:
                return await self._zendesk.update_records(object_key, batch)

        try:
            results = await by_halving(items, send, lambda item: str(item.id))
        except ApiError as exc:
            if stops_the_run(exc):
                raise
            log.warning("link_fill_not_confirmed", object=object_key, links=len(items), error=str(exc))
            return [], []
        filled: list[tuple[Fillable, ItemResult]] = []
        refused: list[tuple[Fillable, ItemResult]] = []
        for group, result in zip(groups, results, strict=True):
            if result.ok:
                filled.extend((f, result) for f in group)
                continue
            if result.unconfirmed:  # the job failed as a whole: nothing to say about the item
                continue
            # Only the lookups the error names are refused; the others wait for the next fill.
            named = refused_lookups({f.field: f.value for f in group}, result)
            refused.extend((f, result) for f in group if f.field in named)
            log.warning("link_fill_failed", object=object_key, fields=sorted(named),
                        error=result.error)  # fmt: skip
        return filled, refused


def fill_changes(
    filled: Sequence[tuple[Fillable, ItemResult]], refused: Sequence[tuple[Fillable, ItemResult]]
) -> dict[str, list[Change]]:
    """mapping → the changelog rows of a fill: `filled_link` (detail: the field) for each link
    set, `parked_link` naming the refused id for each link Zendesk refused."""
    out: dict[str, list[Change]] = {}
    for f, result in filled:
        out.setdefault(f.mapping, []).append(
            Change(f.source_id, "filled_link", zendesk_job_id=result.job_id, item_result=f.referrer_id, detail=f.field)
        )
    for f, result in refused:
        detail = f"{f.field} -> {f.target} {f.target_type} {f.target_source_id}; Zendesk refused {f.value}"
        out.setdefault(f.mapping, []).append(
            Change(f.source_id, "parked_link", zendesk_job_id=result.job_id, item_result=result.error, detail=detail)
        )
    return out


def _target(row: Fillable) -> Target:
    hint = None
    if row.match != "external_id" and row.target_type:
        hint = targets.external_id_of(row.target_type, row.target_source_id)
    return Target(targets.from_stored(row.target).kind, row.match or "", row.match_value or "", hint)


async def unleased(
    pool: asyncpg.Pool, mappings: AbcMapping[str, Mapping], *, mine: set[str]
) -> dict[str, Mapping]:
    """The mappings whose records a fill may update: ours, and those nobody holds a lease on.

    A run of another mapping in flight could be moving the very lookup a fill would set; its
    own fill (or the next one) settles those links instead.
    """
    async with pool.acquire() as conn:
        held = {lease.mapping for lease in await leases.current(conn) if not lease.expired}
    return {name: m for name, m in mappings.items() if name in mine or name not in held}


async def fill_all(
    mappings: AbcMapping[str, Mapping],
    zendesk: ZendeskClient,
    pool: asyncpg.Pool,
    *,
    batch_size: int = 100,
    concurrency: int = 4,
) -> FillReport:
    """The final pass of a backfill: every link to a `mapping:` target that exists now (this
    is what settles cycles, whose first side ran before its target)."""
    filler = Filler(mappings, zendesk, pool, batch_size=batch_size, concurrency=concurrency)
    report = await filler.on_mappings()
    log.info("final_fill_finished", filled=report.filled, refused=report.refused)
    return report
