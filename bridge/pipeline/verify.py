"""Verify: compare a mapping's Zendesk records with what bridge last wrote, and repair.

One pass reads the Zendesk side (`pipeline/verify_read.py`: the export from the stored cursor,
else a full listing, said so in the report) and keeps what it saw (`store/verify_state.py`),
then answers from Postgres:
- edited: a live record whose name or fields differ from the payload last written
  (`pipeline/drift.py`);
- deleted: an id-map row bridge believes live whose Zendesk record is not among the live
  ones (a tombstone, or never listed);
- unknown: a live record whose external id follows the mapping's convention
  (`outreach:<type>:<id>` by default) that no id-map row names; reported, never deleted;
- stale: an id-map row of a record gone from Outreach (marked gone, `on_delete: keep`)
  whose Zendesk record no longer exists: nothing to rewrite it from.
Invariants:
- a record is judged against what was written before Zendesk was read: a row written after
  a page was fetched, or after its stored differing values were read, is not compared (its
  new version is later in the stream), and rows written after the pass began, or less than
  `settle` before (the export may leave out its freshest changes), are counted deleted only
  when the pass read their tombstone;
- deletions and unknown records are judged only from a complete set of live records;
- repair rewrites the edited and deleted records from Outreach's current version through the
  targeted page path, forcing the write (the id map's hash says "unchanged" for exactly these
  records), and never deletes anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.errors import ExportCursorInvalid, ExportUnavailable
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.mapping.templates import Template
from bridge.pipeline import targeted
from bridge.pipeline.drift import Difference, differences
from bridge.pipeline.load import PageLoader
from bridge.pipeline.services import Services
from bridge.pipeline.verify_read import EXPORT, ExportReader, ListingReader, Reader, ZendeskPage
from bridge.store import idmap, runs, verify_state
from bridge.store.idmap import WrittenRecord
from bridge.store.verify_state import Absent, Seen
from bridge.zendesk.models import ZendeskRecord

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    actor: str | None = None
    batch_size: int = 100  # repair: items per bulk job
    job_concurrency: int = 4
    # Zendesk's export may leave out its freshest changes (the last minute or so): a record
    # bridge wrote this recently may not be listed yet, so it is not counted deleted before
    # its next pass. The listing is live and needs no such margin.
    settle: timedelta = timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class Edited:
    source_id: str
    zendesk_id: str
    external_id: str
    differences: list[Difference]

    def as_dict(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "zendesk_id": self.zendesk_id,
                "external_id": self.external_id,
                "differences": [d.as_dict() for d in self.differences]}  # fmt: skip


@dataclass(slots=True)
class VerifyReport:
    """What one verify found (and, with repair, did). `status`: clean, differences, or
    incomplete (no complete set of live records to judge deletions by)."""

    mapping: str
    source: str = EXPORT
    status: str = "running"
    pages: int = 0
    records_read: int = 0
    deletions_read: int = 0
    # Zendesk ids this pass read as tombstones: deleted whatever `settle` says
    tombstones: set[str] = field(default_factory=set)
    edited: list[Edited] = field(default_factory=list)
    deleted: list[Absent] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (zendesk id, external id)
    stale: list[Absent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: list[str] | None = None  # source ids rewritten; None: no repair asked
    not_repaired: dict[str, str] = field(default_factory=dict)  # source id → why
    started_at: datetime | None = None
    seconds: float = 0.0

    @property
    def found(self) -> int:
        return len(self.edited) + len(self.deleted) + len(self.unknown) + len(self.stale)

    @property
    def left(self) -> int:
        """Differences still there: all found, less what repair rewrote."""
        fixed = len(self.repaired or [])
        return self.found - fixed

    def counts(self) -> dict[str, Any]:
        """The figures alone (run history, status, logs)."""
        return {
            "mapping": self.mapping, "status": self.status, "source": self.source,
            "pages": self.pages, "records_read": self.records_read,
            "edited": len(self.edited), "deleted": len(self.deleted),
            "unknown": len(self.unknown), "stale": len(self.stale),
            "repaired": None if self.repaired is None else len(self.repaired),
            "not_repaired": len(self.not_repaired), "seconds": round(self.seconds, 3),
        }  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "edited_records": [e.as_dict() for e in self.edited],
            "deleted_records": [_absent_dict(a) for a in self.deleted],
            "unknown_records": [{"zendesk_id": z, "external_id": x} for z, x in self.unknown],
            "stale_rows": [_absent_dict(a) for a in self.stale],
            "repaired_records": self.repaired,
            "not_repaired_records": self.not_repaired,
            "notes": self.notes,
        }


def _absent_dict(row: Absent) -> dict[str, str]:
    return {"source_id": row.source_id, "zendesk_id": row.zendesk_id, "external_id": row.external_id}


async def verify_mapping(
    mapping: Mapping, services: Services, options: VerifyOptions = VerifyOptions()
) -> VerifyReport:
    """One pass over `mapping`'s Zendesk records, from the stored cursor; with no record
    export (`Services.record_export`), or one the account refuses, the records are listed."""
    report = VerifyReport(mapping.name)
    started = time.monotonic()
    export = services.record_export
    reader: Reader = ExportReader(export) if export is not None else ListingReader(services.zendesk)
    if export is None:
        report.notes.append("the record export is not configured; listed every record instead")
    try:
        await _pass(mapping, services, reader, report)
    except ExportUnavailable as exc:
        report.notes.append(
            f"the record export is not available on this Zendesk account (HTTP {exc.status}); "
            "listed every record instead (page[size]=100), which reads them all on every pass"
        )
        log.warning("verify_export_unavailable", status=exc.status, error=str(exc))
        await _pass(mapping, services, ListingReader(services.zendesk), report)
    await _judge(mapping, services, report, options.settle if report.source == EXPORT else timedelta(0))
    report.seconds = time.monotonic() - started
    log.info("verify_finished", **report.counts())
    return report


async def _pass(mapping: Mapping, services: Services, reader: Reader, report: VerifyReport) -> None:
    name = mapping.name
    report.source = reader.source
    async with services.pool.acquire() as conn:
        previous = await verify_state.state(conn, name)
        report.started_at = await verify_state.begin(conn, name, reader.source)
        cursor = previous.cursor if previous is not None and reader.source == EXPORT else None
        if cursor is None:
            await verify_state.restart(conn, name)
    try:
        await _read(mapping, services, reader, cursor, report)
    except ExportCursorInvalid:
        report.notes.append(
            "Zendesk refused the stored export cursor (invalid or expired); read every record "
            "again from the beginning"
        )
        log.warning("verify_cursor_refused")
        async with services.pool.acquire() as conn:
            await verify_state.restart(conn, name)
        await _read(mapping, services, reader, None, report)


async def _read(
    mapping: Mapping, services: Services, reader: Reader, cursor: str | None, report: VerifyReport
) -> None:
    async with services.pool.acquire() as conn:
        fetched_at = await idmap.database_now(conn)
    async for page in reader.pages(mapping.target.object, cursor):
        await _store_page(mapping, services, page, fetched_at)
        report.pages += 1
        report.records_read += len(page.live)
        report.deletions_read += len(page.deleted)
        report.tombstones.update(page.deleted)
        async with services.pool.acquire() as conn:
            fetched_at = await idmap.database_now(conn)  # the next page is read after this


async def _store_page(mapping: Mapping, services: Services, page: ZendeskPage, fetched_at: datetime) -> None:
    """Stores a page's records (and how those bridge wrote differ) with the cursor after it."""
    name = mapping.name
    async with services.pool.acquire() as conn, conn.transaction():
        written = await idmap.written_by_zendesk_id(conn, name, [r.id for r in page.live])
        seen = [
            Seen(r.id, r.external_id, differing_values(mapping, written.get(r.id), r, fetched_at))
            for r in page.live
        ]
        await verify_state.save_page(conn, name, seen, page.deleted, page.cursor, fetched_at)
        if page.end:
            await verify_state.mark_complete(conn, name)


def differing_values(
    mapping: Mapping, written: WrittenRecord | None, record: ZendeskRecord, fetched_at: datetime
) -> dict[str, Any] | None:
    """The record's Zendesk name and the fields bridge writes, when they differ from what was
    written before the page was fetched; None when they agree or cannot be judged."""
    if written is None or written.payload is None or written.synced_at >= fetched_at:
        return None
    if not differences(written.payload, record.name, record.fields, lookups=mapping.relationships):
        return None
    keys = written.payload.get("fields") or {}
    return {"name": record.name, "fields": {k: record.fields.get(k) for k in keys}}


async def _judge(mapping: Mapping, services: Services, report: VerifyReport, settle: timedelta) -> None:
    name = mapping.name
    prefix, suffix = external_id_affixes(mapping)
    async with services.pool.acquire() as conn:
        state = await verify_state.state(conn, name)
        differing = await verify_state.differing(conn, name)
        written = await idmap.written_by_zendesk_id(conn, name, [s.zendesk_id for s in differing])
        report.edited = _still_edited(mapping, differing, written)
        if state is None or not state.complete or report.started_at is None:
            report.status = "incomplete"
            report.notes.append("no complete read of Zendesk yet: deletions and unknown records were not judged")
            return
        report.unknown = await verify_state.unknown(conn, name, prefix, suffix)
        absent = await verify_state.absent(conn, name, report.started_at - settle, report.tombstones)
    report.deleted = [a for a in absent if not a.gone]
    report.stale = [a for a in absent if a.gone]
    report.status = "differences" if report.found else "clean"


def _still_edited(
    mapping: Mapping, differing: Sequence[Seen], written: dict[str, WrittenRecord]
) -> list[Edited]:
    """The records stored as differing that still differ from what is written now."""
    edited: list[Edited] = []
    for seen in differing:
        row = written.get(seen.zendesk_id)
        if row is None or row.payload is None or seen.differs is None:
            continue
        if seen.checked_at is not None and row.synced_at >= seen.checked_at:
            continue  # bridge wrote it since it was read: judged when the export shows it again
        found = differences(row.payload, seen.differs.get("name"), seen.differs.get("fields") or {},
                            lookups=mapping.relationships)  # fmt: skip
        if found:
            edited.append(Edited(row.source_id, seen.zendesk_id, row.external_id, found))
    return sorted(edited, key=lambda e: e.external_id)


def external_id_affixes(mapping: Mapping) -> tuple[str, str]:
    """What comes before and after the id in the mapping's external ids (`outreach:vehicles:`
    and `` by default)."""
    before: list[str] = []
    after: list[str] = []
    side = before
    for part in Template.parse(mapping.target.external_id).parts:
        if isinstance(part, tuple) and part[0] == "id":
            side = after
        elif isinstance(part, tuple):
            side.append(mapping.source.type)  # {type}: the only other name allowed
        else:
            side.append(part)
    return "".join(before), "".join(after)


async def repair(
    mapping: Mapping, services: Services, report: VerifyReport, options: VerifyOptions
) -> None:
    """Rewrites the edited and deleted records from Outreach's current version (the caller
    holds the mapping's lease); unknown records and stale rows are left as they are."""
    ids = sorted({e.source_id for e in report.edited} | {d.source_id for d in report.deleted})
    report.repaired = []
    if not ids:
        return
    async with services.pool.acquire() as conn:
        run_id = await runs.start(conn, mapping.name, "verify_repair", actor=options.actor)
    status, error = "failed", None
    try:
        loader = PageLoader(
            services.zendesk, mapping.target.object, batch_size=options.batch_size,
            concurrency=asyncio.Semaphore(options.job_concurrency),
        )  # fmt: skip
        outcome = await targeted.sync_ids(mapping, services, loader, ids, run_id, force=True)
        report.repaired = sorted(outcome.written)
        report.not_repaired = {
            **{i: "gone from Outreach: nothing to rewrite it from" for i in outcome.vanished},
            **{i: "dead-lettered (see bridge dead-letters list)" for i in outcome.failed},
        }
        rewritten = [e.zendesk_id for e in report.edited if e.source_id in outcome.written]
        async with services.pool.acquire() as conn:
            await verify_state.clear_differs(conn, mapping.name, rewritten)
        status = "partial" if report.not_repaired else "succeeded"
    except Exception as exc:
        error = str(exc)
        raise
    finally:
        note = (f"verify repair: {len(report.repaired)} of {len(ids)} edited or deleted record(s) "
                f"rewritten, {len(report.not_repaired)} not")  # fmt: skip
        async with services.pool.acquire() as conn:
            await runs.add_repair_counts(conn, run_id, note=note)
            await asyncio.shield(runs.finish(conn, run_id, status, error=error))
        log.info("verify_repaired", repaired=len(report.repaired), not_repaired=len(report.not_repaired))


async def save_report(services: Services, report: VerifyReport) -> None:
    """Keeps the report's figures for `bridge status`."""
    async with services.pool.acquire() as conn:
        await verify_state.finish(conn, report.mapping, report.counts())
