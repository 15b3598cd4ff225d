"""Reconcile: find mapped records that no longer exist in Outreach, and delete or mark them.

Outreach lists only live records; a deleted one just disappears and there is no delete feed
(api/outreach.md, "Filters and sort"). So reconcile lists every live id of a mapping's
source, cheaply (a sparse fieldset of one attribute, pages of up to 1000, `count=false`),
and compares them with the id map. Under `on_delete: delete` the missing records are
deleted from Zendesk by `delete_by_external_id` jobs and dropped from the id map; under
`keep` they are marked gone (`id_map.gone_at`). Invariants:

- a listing that did not reach its last page (an error after retries, a malformed page,
  a next link that cannot be followed) changes NOTHING: a partial listing is
  indistinguishable from a mass deletion;
- under `delete`, more than `max_delete_share` of a mapping's id map is never deleted in
  one run without `force`: an Outreach outage, a revoked scope or a wrong filter looks
  exactly like that, and a refused run changes nothing;
- id-map rows synced after the listing began are never counted missing (a record created
  mid-listing may be absent from it and yet be live);
- a gone record that is live again is un-marked; one written again is un-marked by the
  upsert itself (store/idmap.py), so the hash skip never hides a record Zendesk lacks;
- every run that changes something is a `reconcile` row in the run history, with who ran
  it and how many records were deleted or marked gone, and each record deleted or newly
  marked gone has its changelog row (`deleted`, `marked_gone`) in the same transaction. A
  dry run writes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bridge.errors import ApiError, BridgeError
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.outreach.client import OutreachClient
from bridge.pipeline.report import counts_dict
from bridge.pipeline.run import run_lifecycle
from bridge.pipeline.services import Services
from bridge.store import changelog, dead_letters, idmap, runs, submitted_jobs
from bridge.store.changelog import Change
from bridge.store.idmap import MissingRow

log = get_logger(__name__)

DELETE_BATCH = 100  # Zendesk bulk jobs take at most 100 items (api/zendesk.md, "Bulk jobs")


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    dry_run: bool = False
    force: bool = False
    max_delete_share: float = 0.10
    actor: str | None = None
    page_size: int = 1000
    job_concurrency: int = 4


@dataclass(slots=True)
class ReconcileReport:
    """What one reconcile found and did. `status`: succeeded, partial (some deletes failed),
    refused (over the guard), failed (listing incomplete or another error), or dry_run."""

    mapping: str
    on_delete: str
    run_id: int | None = None
    status: str = "running"
    live: int = 0
    mapped: int = 0
    missing: int = 0
    deleted: int = 0
    marked_gone: int = 0
    revived: int = 0
    failed: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def summary(self) -> str:
        done = (
            f"deleted {self.deleted}" if self.on_delete == "delete"
            else f"marked gone {self.marked_gone}"
        )
        verb = "would act on" if self.status == "dry_run" else done
        line = (
            f"{self.mapping}: {self.status}; live {self.live}, mapped {self.mapped}, "
            f"missing {self.missing}, {verb}, back {self.revived}, failed {self.failed}"
        )
        return line + (f"; {self.error}" if self.error else "")

    def as_dict(self) -> dict[str, object]:
        return counts_dict(self)


async def reconcile_mapping(
    mapping: Mapping, services: Services, options: ReconcileOptions
) -> ReconcileReport:
    """Lists the live ids, compares them with the id map, deletes or marks the missing.

    Listing failures and guard refusals come back as the report's status (the worker logs
    them and tries again next time); store errors and cancellation propagate.
    """
    report = ReconcileReport(mapping.name, mapping.on_delete)

    async def finish() -> None:
        report.seconds = time.monotonic() - report.started
        await _finish(services, report)
        log.info("reconcile_finished", **report.as_dict())

    async with run_lifecycle(report, finish, mapping=mapping.name):
        await _run(mapping, services, options, report)
    return report


async def _run(
    mapping: Mapping, services: Services, options: ReconcileOptions, report: ReconcileReport
) -> None:
    async with services.pool.acquire() as conn:
        listed_from = await idmap.database_now(conn)
        if not options.dry_run:
            report.run_id = await runs.start(conn, mapping.name, "reconcile", actor=options.actor)
    try:
        live = await list_live_ids(mapping, services.outreach, options.page_size)
    except BridgeError as exc:
        report.status, report.error = "failed", f"{exc}; nothing was deleted or marked"
        log.warning("reconcile_listing_failed", error=str(exc), error_type=type(exc).__name__)
        return
    report.live = len(live)
    async with services.pool.acquire() as conn:
        report.mapped = await idmap.count(conn, mapping.name)
        gone = await idmap.missing(conn, mapping.name, sorted(live), listed_from)
    report.missing = len(gone)
    if options.dry_run:
        report.status = "dry_run"
        return
    if mapping.on_delete == "delete":
        await _delete(mapping, services, options, gone, report)
    else:
        await _mark(mapping.name, services, gone, report)
    async with services.pool.acquire() as conn:
        report.revived = await idmap.clear_gone(conn, mapping.name, sorted(live))


async def list_live_ids(mapping: Mapping, outreach: OutreachClient, page_size: int) -> set[str]:
    """Every live source id, or an error: a listing that ends early raises, never returns."""
    url = outreach.list_url(
        mapping.source.type,
        custom_object=mapping.source.custom_object,
        filters=mapping.source.query_filters(),
        fields={json_api_type(mapping): ["updatedAt"]},
    )
    url = with_page_size(url, page_size)
    live: set[str] = set()
    pages = 0
    next_url: str | None = url
    async for page in outreach.pages(url):
        pages += 1
        live.update(record.id for record in page.records)
        next_url = page.next_url
    if next_url is not None:  # the client stops only at a page without links.next; be sure
        raise ApiError(
            f"the Outreach listing of {mapping.source.type} stopped after {pages} page(s) "
            "before its last page; rerun reconcile",
            api="outreach", method="GET", detail="listing ended before a page without links.next",
        )
    log.info("reconcile_listed", live=len(live), pages=pages)
    return live


async def remove_confirmed_gone(
    mapping: Mapping, services: Services, source_ids: Sequence[str], *, actor: str | None
) -> ReconcileReport:
    """Applies `on_delete` to records Outreach has just confirmed gone one by one (a webhook's
    `destroyed`, then a fetch that no longer finds them), audited as a `reconcile` run.

    No share guard: each id was confirmed individually, unlike a listing that may be partial.
    """
    report = ReconcileReport(mapping.name, on_delete=mapping.on_delete)
    async with services.pool.acquire() as conn:
        gone = await idmap.rows_for(conn, mapping.name, source_ids)
        if not gone:
            report.status = "succeeded"
            return report
        report.run_id = await runs.start(conn, mapping.name, "reconcile", actor=actor)
    report.missing = len(gone)
    async with run_lifecycle(report, lambda: _finish(services, report), mapping=mapping.name):
        if mapping.on_delete == "delete":
            await _delete(mapping, services, ReconcileOptions(force=True), gone, report)
        else:
            await _mark(mapping.name, services, gone, report)
    return report


def json_api_type(mapping: Mapping) -> str:
    """The JSON:API `type` that keys a sparse fieldset: a custom object's internal name, or
    the singular of a standard resource's path (`prospects` → `prospect`)."""
    name = mapping.source.type
    if mapping.source.custom_object:
        return name
    if name.endswith("sses"):  # emailAddresses → emailAddress
        return name[:-2]
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


def with_page_size(url: str, size: int) -> str:
    """`url` with `page[size]` set to `size` (reconcile reads bigger pages than a sync)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page[size]"]
    query.insert(0, ("page[size]", str(size)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="[],:")))


async def _mark(
    name: str, services: Services, gone: Sequence[MissingRow], report: ReconcileReport
) -> None:
    async with services.pool.acquire() as conn, conn.transaction():
        report.marked_gone = await idmap.mark_gone(conn, name, [r.source_id for r in gone])
        marked = [Change(r.source_id, "marked_gone", detail="on_delete keep") for r in gone if not r.gone]
        await changelog.add_many(conn, name, report.run_id, marked)
        if report.run_id is not None:
            await runs.add_repair_counts(conn, report.run_id, gone=report.marked_gone)
    report.status = "succeeded"


async def _delete(
    mapping: Mapping,
    services: Services,
    options: ReconcileOptions,
    gone: Sequence[MissingRow],
    report: ReconcileReport,
) -> None:
    refusal = guard(len(gone), report.mapped, options.max_delete_share, force=options.force)
    if refusal is not None:
        report.status, report.error = "refused", refusal
        log.warning("reconcile_refused", missing=len(gone), mapped=report.mapped)
        return
    slots = asyncio.Semaphore(options.job_concurrency)
    batches = [gone[i : i + DELETE_BATCH] for i in range(0, len(gone), DELETE_BATCH)]
    await asyncio.gather(*(_delete_batch(mapping, services, b, slots, report) for b in batches))
    report.status = "partial" if report.failed else "succeeded"


def guard(to_delete: int, mapped: int, max_share: float, *, force: bool) -> str | None:
    """Why a deletion is refused, or None when it may go ahead."""
    if force or to_delete == 0 or to_delete <= mapped * max_share:
        return None
    share = to_delete / mapped if mapped else 1.0
    return (
        f"refused to delete {to_delete} of {mapped} record(s) ({share:.0%}), more than the "
        f"{max_share:.0%} allowed in one run (BRIDGE_RECONCILE_MAX_DELETE_SHARE); nothing was "
        "deleted. Check the Outreach token's scopes and the mapping's filter, then rerun with "
        "--force if the deletions are real"
    )


async def _delete_batch(
    mapping: Mapping,
    services: Services,
    batch: Sequence[MissingRow],
    slots: asyncio.Semaphore,
    report: ReconcileReport,
) -> None:
    by_external = {row.external_id: row.source_id for row in batch}
    async with slots:
        results = await services.zendesk.delete_by_external_ids(
            mapping.target.object, list(by_external)
        )
    done = [by_external[r.external_id] for r in results if r.ok or r.already_gone]
    deleted = [
        Change(by_external[r.external_id], "deleted", zendesk_job_id=r.job_id,
               item_result=r.record_id if r.ok else r.error, detail="on_delete delete")
        for r in results if r.ok or r.already_gone
    ]  # fmt: skip
    failures = [r for r in results if not (r.ok or r.already_gone)]
    for failure in failures[:5]:
        log.warning("reconcile_delete_failed", external_id=failure.external_id, error=failure.error)
    async with services.pool.acquire() as conn, conn.transaction():
        await idmap.delete_many(conn, mapping.name, done)
        await changelog.add_many(conn, mapping.name, report.run_id, deleted)
        await submitted_jobs.settle(conn, mapping.name, [], list(by_external))  # stale now
        await dead_letters.resolve(conn, mapping.name, done)
        if report.run_id is not None:
            await runs.add_repair_counts(conn, report.run_id, deleted=len(done))
            await runs.add_counts(conn, report.run_id, runs.RunCounts(failed=len(failures)))
    report.deleted += len(done)
    report.failed += len(failures)


async def _finish(services: Services, report: ReconcileReport) -> None:
    if report.run_id is None:
        return
    status = {"refused": "failed", "running": "failed"}.get(report.status, report.status)
    note = _note(report)
    async with services.pool.acquire() as conn:
        await runs.add_counts(conn, report.run_id, runs.RunCounts(fetched=report.live))
        await runs.add_repair_counts(conn, report.run_id, note=note)
        await runs.finish(conn, report.run_id, status, error=report.error)


def _note(report: ReconcileReport) -> str:
    if report.status == "refused":
        return f"refused: {report.missing} of {report.mapped} missing from Outreach"
    if report.on_delete == "delete":
        return (
            f"on_delete delete: {report.missing} missing from Outreach, {report.deleted} "
            f"deleted from Zendesk, {report.failed} failed, {report.revived} back"
        )
    return (
        f"on_delete keep: {report.missing} missing from Outreach, {report.marked_gone} newly "
        f"marked gone, {report.revived} back"
    )
