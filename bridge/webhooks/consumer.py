"""Drains the webhook inbox into targeted syncs, one mapping at a time, under its lease.

A tick claims the due deliveries of every resource some mapping reads (custom objects send
no events, so their mappings are never drained here), coalesced: up to `batch` deliveries
per resource, however many events they repeat. Every mapping reading the resource then gets
one targeted sync of the distinct ids (`pipeline/targeted.py`): records are fetched afresh,
never taken from the delivery. An id with a `destroyed` event that Outreach no longer lists
and answers 404 for gets the mapping's `on_delete`, audited as reconcile does.

Exclusivity comes from the caller's `MappingRunner`: the worker runs the work under the
mapping's lease and its own per-mapping lock, so a targeted sync never overlaps the
scheduled run of the same mapping, here or in another process. A mapping held elsewhere
hands the deliveries back untouched; a failure keeps them with their error, due again after
a growing backoff. Only deliveries every matching mapping handled are marked handled.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from datetime import timedelta

from bridge.errors import BridgeError
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.pipeline import reconcile, targeted
from bridge.pipeline.load import PageLoader
from bridge.pipeline.run import run_lifecycle
from bridge.pipeline.services import Services
from bridge.store import inbox, runs
from bridge.store.inbox import InboxRow
from bridge.webhooks.watch import WebhookWatch

log = get_logger(__name__)

Work = Callable[[str], Awaitable[None]]  # given the lease holder, does the mapping's work
MappingRunner = Callable[[str, Work], Awaitable[bool]]  # False: the mapping is busy elsewhere
Observe = Callable[[str, str, list[float]], None]  # mapping, trigger, change-to-write seconds


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    actor: str
    batch: int = 1000  # deliveries per resource per tick
    tick: timedelta = timedelta(seconds=1)  # how long deliveries coalesce
    # A claim keeps other consumers off this long: about as long as a dead holder keeps its
    # lease. Work that outlasts it is still safe: the mapping's lease makes a second claimer
    # hand the rows back, and a repeat of a finished sync only finds its records unchanged.
    hold: timedelta = timedelta(seconds=60)
    busy_retry: timedelta = timedelta(seconds=2)
    backoff: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(minutes=30)
    retention: timedelta = timedelta(days=7)
    watch_every: timedelta = timedelta(minutes=5)
    batch_size: int = 100
    job_concurrency: int = 4


def readers(mappings: AbcMapping[str, Mapping]) -> dict[str, list[Mapping]]:
    """Event resource (`prospect`) → the mappings that read that Outreach type."""
    out: dict[str, list[Mapping]] = {}
    for mapping in mappings.values():
        if not mapping.source.custom_object:
            out.setdefault(reconcile.json_api_type(mapping), []).append(mapping)
    return out


@dataclass(slots=True)
class _Ending:
    status: str = "failed"
    error: str | None = None


class InboxConsumer:
    def __init__(
        self, mappings: AbcMapping[str, Mapping], services: Services, run: MappingRunner,
        options: ConsumerOptions, observe: Observe | None = None,
    ) -> None:  # fmt: skip
        self._readers = readers(mappings)
        self._services, self._run, self.options = services, run, options
        self._observe = observe or (lambda mapping, trigger, seconds: None)

    async def run(self, stop: asyncio.Event, watch: WebhookWatch | None = None) -> None:
        """Ticks until `stop`; a tick that fails (database down) is logged and retried. Every
        `options.watch_every` it also prunes handled deliveries and checks the webhooks."""
        watched_at = -math.inf
        while not stop.is_set():
            try:
                await self.tick()
                if time.monotonic() - watched_at >= self.options.watch_every.total_seconds():
                    watched_at = time.monotonic()
                    await self.prune()
                    if watch is not None:
                        await watch.check()
            except BridgeError as exc:
                log.warning("webhook_consumer_failed", error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), self.options.tick.total_seconds())
            except TimeoutError:
                pass

    async def tick(self) -> int:
        """Claims and handles one batch per resource; returns the deliveries handled."""
        handled = 0
        async with self._services.pool.acquire() as conn:
            if dropped := await inbox.drop_unread(conn, list(self._readers)):
                log.warning("webhook_deliveries_unread", deliveries=dropped,
                            hint="no mapping reads their resource; run `bridge webhooks ensure`")  # fmt: skip
        for resource, mappings in sorted(self._readers.items()):
            async with self._services.pool.acquire() as conn:
                rows = await inbox.claim(conn, [resource], self.options.batch, self.options.hold)
            if rows:
                handled += await self._handle(resource, mappings, rows)
        return handled

    async def _handle(self, resource: str, mappings: Sequence[Mapping], rows: list[InboxRow]) -> int:
        ids = [row.id for row in rows]
        try:
            for mapping in mappings:
                if not await self._run(mapping.name, functools.partial(self._sync, mapping, rows)):
                    async with self._services.pool.acquire() as conn:
                        await inbox.release(conn, ids, self.options.busy_retry)
                    return 0
        except BridgeError as exc:
            log.warning("webhook_deliveries_failed", resource=resource, deliveries=len(rows), error=str(exc))
            async with self._services.pool.acquire() as conn:
                await inbox.failed(conn, ids, str(exc), self.options.backoff, self.options.backoff_max)
            return 0
        async with self._services.pool.acquire() as conn:
            await inbox.handled(conn, ids)
        return len(rows)

    async def _sync(self, mapping: Mapping, rows: Sequence[InboxRow], holder: str) -> None:
        """One targeted sync of the rows' distinct ids, then `on_delete` for the destroyed."""
        wanted = list(dict.fromkeys(row.source_id for row in rows))
        destroyed = {row.source_id for row in rows if row.action == "destroyed"}
        async with self._services.pool.acquire() as conn:
            run_id = await runs.start(conn, mapping.name, "webhook", actor=self.options.actor)
        ending = _Ending()

        async def finish() -> None:
            async with self._services.pool.acquire() as conn:
                await runs.finish(conn, run_id, ending.status, error=ending.error)

        async with run_lifecycle(ending, finish, mapping=mapping.name, run_id=run_id):
            loader = PageLoader(
                self._services.zendesk, mapping.target.object, batch_size=self.options.batch_size,
                concurrency=asyncio.Semaphore(self.options.job_concurrency),
            )  # fmt: skip
            outcome = await targeted.sync_ids(mapping, self._services, loader, wanted, run_id, holder=holder)
            ending.status = "partial" if outcome.failed else "succeeded"
            self._observe(mapping.name, "webhook", outcome.change_to_write)
            log.info("webhook_sync", ids=len(wanted), written=len(outcome.written),
                     unchanged=len(outcome.unchanged), vanished=len(outcome.vanished),
                     failed=len(outcome.failed))  # fmt: skip
        if gone := await self._confirmed_gone(mapping, sorted(destroyed & outcome.vanished)):
            await reconcile.remove_confirmed_gone(mapping, self._services, gone, actor=self.options.actor)

    async def _confirmed_gone(self, mapping: Mapping, source_ids: list[str]) -> list[str]:
        """The ids Outreach answers 404 for: no longer listed may only mean outside the
        mapping's filter, and a delivery is never trusted to say a record is gone."""
        outreach = self._services.outreach
        return [
            source_id for source_id in source_ids
            if await outreach.get(mapping.source.type, source_id, custom_object=mapping.source.custom_object) is None
        ]  # fmt: skip

    async def prune(self) -> int:
        async with self._services.pool.acquire() as conn:
            return await inbox.prune(conn, self.options.retention)
