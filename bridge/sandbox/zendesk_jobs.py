"""Bulk jobs of the Zendesk simulator: `POST .../custom_objects/{key}/jobs` and job statuses.

A job is accepted as `queued` and run later by one background task, so clients must poll
`/api/v2/job_statuses/{id}` as on the real API (`api/zendesk.md`, "Bulk jobs").
Invariants: at most `max_jobs` jobs are queued or working at once (beyond that the route
answers 429 `TooManyJobs`); one item failing never fails the job: it gets a result with
`success: false`, `error` and `details`, matched to its item by `index` (and `external_id`
when there is one); results are only published when the job completes. A job can also fail
as a whole (`fail_jobs`): status `failed`, a job-level `message`, no results, nothing applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.sandbox.zendesk_records import RecordInvalid

if TYPE_CHECKING:
    from bridge.sandbox.zendesk import ZendeskSandbox

ACTIONS = (
    "create",
    "update",
    "create_or_update_by_external_id",
    "create_or_update_by_name",
    "delete",
    "delete_by_external_id",
)
MAX_ITEMS = 100


class TooManyJobs(Exception):
    """More jobs are queued or running than the account allows."""


class ItemFailed(Exception):
    def __init__(self, error: str, details: str) -> None:
        super().__init__(details)
        self.error = error
        self.details = details


class JobRunner:
    """Queues bulk jobs and runs them one after another in a background task."""

    def __init__(self, sandbox: ZendeskSandbox, *, max_jobs: int = 30, delay: float = 0.0) -> None:
        self.sb = sandbox
        self.max_jobs = max_jobs
        self.delay = delay
        self.statuses: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, tuple[str, str, list[Any]]] = {}
        self._queue: asyncio.Queue[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._whole_failures: list[str] = []  # messages of the next jobs to fail as a whole
        self._holds: list[list[Any]] = []  # [predicate, jobs still to hold]
        self._held: list[str] = []

    def start(self) -> None:
        self._queue = asyncio.Queue()
        for job_id in self._pending:
            self._queue.put_nowait(job_id)
        self._task = asyncio.create_task(self._work(), name="zendesk-sandbox-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def active(self) -> int:
        return sum(1 for s in self.statuses.values() if s["status"] in ("queued", "working"))

    def submit(self, object_key: str, action: str, items: list[Any]) -> dict[str, Any]:
        """Queue a job and return its status; TooManyJobs when the account is at its limit."""
        if self.active() >= self.max_jobs:
            raise TooManyJobs(f"{self.max_jobs} jobs are already queued or running")
        job_id = "V3-" + secrets.token_hex(16)
        status = {"id": job_id, "job_type": "bulk_custom_object_records", "status": "queued", "total": len(items),
                  "progress": None, "message": None, "results": None}  # fmt: skip
        self.statuses[job_id] = status
        self._pending[job_id] = (object_key, action, items)
        if self._queue is not None:
            self._queue.put_nowait(job_id)
        return status

    def hold(self, matches: Callable[[str, str, list[Any]], bool], *, times: int = 1) -> None:
        """Keep the next `times` jobs for which `matches(object_key, action, items)` is true
        queued until `release()`, while later jobs run and complete: the API promises no
        order between jobs, and this makes a later one finish first on purpose."""
        self._holds.append([matches, times])

    def held(self) -> list[str]:
        """Ids of the jobs held now."""
        return list(self._held)

    def release(self) -> None:
        """Run the held jobs (in the order they came) and hold no more."""
        self._holds.clear()
        held, self._held = self._held, []
        for job_id in held:
            if self._queue is not None:
                self._queue.put_nowait(job_id)

    def forget(self, job_ids: list[str]) -> None:
        """Fault: Zendesk no longer knows these jobs (a status is kept for a day): their
        statuses answer 404 and the jobs never run."""
        for job_id in job_ids:
            self.statuses.pop(job_id, None)
            self._pending.pop(job_id, None)
            if job_id in self._held:
                self._held.remove(job_id)

    def _holding(self, job_id: str) -> bool:
        object_key, action, items = self._pending[job_id]
        for hold in self._holds:
            if hold[1] > 0 and hold[0](object_key, action, items):
                hold[1] -= 1
                self._held.append(job_id)
                return True
        return False

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job_id = await self._queue.get()
            if job_id not in self._pending or self._holding(job_id):
                continue
            if self.delay:
                await asyncio.sleep(self.delay)
            await self._run(job_id)

    def fail_jobs(self, times: int, message: str = "Internal Server Error") -> None:
        """Fault: the next `times` jobs fail as a whole, before any item is applied."""
        self._whole_failures.extend([message] * times)

    def _failed_whole(self, status: dict[str, Any]) -> bool:
        if not self._whole_failures:
            return False
        status.update(status="failed", progress=0, results=None, message=self._whole_failures.pop(0))
        return True

    async def _run(self, job_id: str) -> None:
        object_key, action, items = self._pending.pop(job_id)
        status = self.statuses[job_id]
        if self._failed_whole(status):
            return
        status.update(status="working", progress=0)
        results: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            results.append(self._item(object_key, action, index, item))
            status["progress"] = index + 1
            if index % 25 == 24:
                await asyncio.sleep(0)
        status.update(status="completed", results=results, message=f"Completed at {self.sb.clock().strftime('%Y-%m-%d %H:%M:%S +0000')}")

    def _item(self, object_key: str, action: str, index: int, item: Any) -> dict[str, Any]:
        ext = item.get("external_id") if isinstance(item, dict) else (item if action == "delete_by_external_id" else None)
        base: dict[str, Any] = {"index": index, "action": action}
        if ext is not None:
            base["external_id"] = ext
        try:
            if object_key not in self.sb.objects:
                raise ItemFailed("RecordNotFound", f"custom object {object_key!r} does not exist")
            record_id, outcome = self._apply(object_key, action, item)
        except RecordInvalid as exc:
            return {**base, "success": False, "error": "RecordInvalid", "details": str(exc)}
        except ItemFailed as exc:
            return {**base, "success": False, "error": exc.error, "details": exc.details}
        return {**base, "id": record_id, "success": True, "status": outcome}

    def _apply(self, key: str, action: str, item: Any) -> tuple[str, str]:
        sb = self.sb
        if action in ("delete", "delete_by_external_id"):
            if not isinstance(item, str):
                raise ItemFailed("InvalidValue", f"{action} items must be strings")
            found = sb.record(key, item) if action == "delete" else sb.record_by_external_id(key, item)
            if found is None or not sb.delete_record(key, found["id"]):
                raise ItemFailed("RecordNotFound", f"no record {item!r}")
            return found["id"], "Deleted"
        if not isinstance(item, dict):
            raise ItemFailed("InvalidValue", f"{action} items must be objects")
        if action == "create":
            return sb.create_record(key, item)["id"], "Created"
        if action == "update":
            if sb.record(key, str(item.get("id"))) is None:
                raise ItemFailed("RecordNotFound", f"no record with id {item.get('id')!r}")
            return sb.update_record(key, str(item["id"]), item)["id"], "Updated"
        if action == "create_or_update_by_external_id":
            if not isinstance(item.get("external_id"), str) or not item["external_id"]:
                raise ItemFailed("InvalidValue", "external_id is required at the top level of each item")
            rec, created = sb.upsert_by_external_id(key, item["external_id"], item)
            return rec["id"], "Created" if created else "Updated"
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise ItemFailed("InvalidValue", "name is required for create_or_update_by_name")
        rec, created = sb.upsert_by_name(key, item["name"], item)
        return rec["id"], "Created" if created else "Updated"

    def render(self, job_id: str, origin: str) -> dict[str, Any] | None:
        status = self.statuses.get(job_id)
        if status is None:
            return None
        return {**status, "url": f"{origin}/api/v2/job_statuses/{job_id}.json"}
