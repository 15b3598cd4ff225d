"""`bridge worker`: the long-running process, from start to a clean stop.

Lifecycle (`bridge worker` opens the pool and the clients, checks migrations and builds the
config in wiring.py): start the health server, the lease heartbeat and the scheduler, then
wait for a stop signal or for a side task to die.
Invariants:
- A mapping runs here only under its lease (`store/leases.py`); if the lease is lost the
  run is cancelled, and a mapping another process holds is skipped, not waited for.
- Between its syncs each mapping gets upkeep (`upkeep.py`: due dead letters, the daily
  reconcile, parked links), under the same lease and never during its sync or shutdown;
  those run rows name this worker's holder id as their actor, as its syncs do.
- Each sync passes every mapping to `sync_mapping`, so the fill after a run also fills
  other mappings' links that were waiting on this one (how cycles A → B → A settle).
- Side tasks (lease heartbeat, health server, scheduler) are watched: if one ends, the
  worker stops and releases its leases rather than go on holding them as a zombie; the
  CLI then exits 3 so the platform restarts it.
- SIGTERM/SIGINT (installed by `pipeline.run.stop_signals`, which restores the previous
  handlers): take no new work; each run in flight stops fetching, lets the bulk jobs it
  already submitted finish and settles their pages in order (so what Zendesk received is in
  the id map, the checkpoint is exact and the next run resumes after it); runs still going
  after BRIDGE_STOP_TIMEOUT_SECONDS are cancelled (the unsettled page is rolled back and
  rewritten next time, by upsert, never duplicated); leases are released under
  `asyncio.shield`; connections close; the whole stop stays well under 25 s. A second
  signal cancels the runs at once.
- Each run writes behind its lease's fence (`LeaseKeeper.fence`): no bulk job and no commit
  once the lease has gone unrenewed for its TTL.
- With BRIDGE_ALERT_WEBHOOK_URL set, two more side tasks watch the mappings' states and
  deliver alerts (`alert_watch.py`, `alerts.py`); they talk only to Postgres and the
  receiver, so a slow or failing receiver never holds up a run.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.alert_watch import AlertWatch
from bridge.alerts import AlertConfig, AlertSender
from bridge.directory import Directory
from bridge.errors import BridgeError, StoreError
from bridge.http.guard import guarding
from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.metrics import Metrics
from bridge.outreach.webhooks import WebhookAdmin
from bridge.pipeline.report import LogProgress, ProgressSink, RunReport
from bridge.pipeline.run import stop_signals
from bridge.pipeline.services import Services
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.scheduler import MappingScheduler, Outcome, ScheduleConfig
from bridge.server import Handler, Readiness, WorkerServer
from bridge.store import inbox
from bridge.store import migrate as store_migrate
from bridge.store import pool as store_pool
from bridge.store.inbox import Delivery
from bridge.store.leases import LeaseKeeper
from bridge.upkeep import Upkeep, UpkeepConfig
from bridge.webhooks import intake
from bridge.webhooks.consumer import ConsumerOptions, InboxConsumer, Work
from bridge.webhooks.intake import WebhookIntake
from bridge.webhooks.watch import WebhookWatch

log = get_logger(__name__)

# /readyz answers within this, whatever the database does (WorkerServer caps it too).
READY_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    port: int
    webhook_secret: bytes | None  # None: no webhook intake and no inbox consumer
    consumer: ConsumerOptions
    public_url: str | None
    lease_ttl: float
    stop_timeout: float
    sync: SyncOptions
    schedule: ScheduleConfig
    upkeep: UpkeepConfig
    host: str = "0.0.0.0"  # every interface, as a container needs; the demo keeps to loopback
    alerts: AlertConfig | None = None  # None: BRIDGE_ALERT_WEBHOOK_URL unset, no alerts
    directory_refresh_seconds: float = 300.0


async def readiness(pool: asyncpg.Pool[Any], stopping: asyncio.Event) -> Readiness:
    """/readyz for any process that serves it: the database answers and is migrated."""
    if stopping.is_set():
        return Readiness(False, "stopping")
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            pending = await store_migrate.pending(pool, timeout=READY_TIMEOUT_S)
    except TimeoutError:
        return Readiness(False, "the database did not answer in time")
    except BridgeError as exc:  # served short; the detail goes to the log only
        if isinstance(exc.__cause__, TimeoutError):
            return Readiness(False, "the database did not answer in time", detail=str(exc))
        return Readiness(False, "the database is unavailable", detail=str(exc))
    if pending:
        return Readiness(False, f"pending migrations: {', '.join(pending)}")
    return Readiness(True, "database reachable, migrations applied")


class _RunSink:
    """Progress of one run, told to every sink: logs and metrics."""

    def __init__(self, sinks: list[ProgressSink]) -> None:
        self._sinks = sinks

    def page_settled(self, report: RunReport) -> None:
        for sink in self._sinks:
            sink.page_settled(report)

    def run_finished(self, report: RunReport) -> None:
        for sink in self._sinks:
            sink.run_finished(report)


class _LeaseEvents:
    """Lease takeovers and losses, told to the metrics and (when on) the alerts."""

    def __init__(self, metrics: Metrics, holder: str, watch: AlertWatch | None) -> None:
        self.metrics, self.holder, self.watch = metrics, holder, watch

    def taken_over(self, mapping: str, previous: str) -> None:
        self.metrics.lease_taken_over(mapping, previous)
        if self.watch is not None:
            self.watch.lease_taken_over(mapping, previous, self.holder)

    def lost(self, mapping: str) -> None:
        self.metrics.lease_lost(mapping)


class Worker:
    """The scheduler, leases and health server of one process."""

    def __init__(
        self, mappings: dict[str, Mapping], services: Services, metrics: Metrics,
        config: WorkerConfig, holder: str,
    ) -> None:  # fmt: skip
        self.mappings, self.services, self.metrics, self.config = mappings, services, metrics, config
        self.alerts: AlertWatch | None = None
        if config.alerts is not None:
            sender = AlertSender(services.pool, config.alerts,
                                 observe=lambda outcome: metrics.alert_deliveries.labels(outcome).inc())  # fmt: skip
            self.alerts = AlertWatch(services.pool, list(mappings), config.alerts, sender)
        events = _LeaseEvents(metrics, holder, self.alerts)
        self.keeper = LeaseKeeper(services.pool, holder, config.lease_ttl, observer=events)
        self.scheduler = MappingScheduler(
            mappings, self._run_mapping, self._probe, config.schedule, upkeep=self._upkeep_mapping
        )
        self.health = WorkerServer(
            config.port, self._readiness, self._metrics_text, config.host, webhooks=self._webhook_route()
        )
        self._stopping = asyncio.Event()
        self._signals = 0
        # One piece of work per mapping at a time in this process (the lease covers the others).
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in mappings}
        self.consumer = (
            InboxConsumer(mappings, services, self._run_webhook_work, config.consumer,
                          metrics.observe_change_to_write)
            if config.webhook_secret is not None
            else None
        )

    def stop(self) -> None:
        self._stopping.set()

    def _webhooks_disabled(self, count: int) -> None:
        """How many of bridge's Outreach webhooks are disabled: a metric, and an alert on change."""
        self.metrics.webhooks_disabled.set(count)
        if self.alerts is not None:
            self.alerts.webhooks_disabled(count)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        log.info("stop_signal", signal=sig.name, count=self._signals)
        self.stop()
        if self._signals > 1:
            self.scheduler.cancel_in_flight()

    async def run(self) -> None:
        with stop_signals(self._on_signal):
            await self.health.start()
            side = {
                asyncio.create_task(self.keeper.heartbeat(), name="lease_heartbeat"),
                asyncio.create_task(self.health.serve(), name="health_server"),
            }
            if self.alerts is not None:
                side.add(asyncio.create_task(self.alerts.run(), name="alert_watch"))
                side.add(asyncio.create_task(self.alerts.sender.run(), name="alert_sender"))
            self.scheduler.start()
            side.add(asyncio.create_task(self.scheduler.watch(), name="scheduler"))
            if self.consumer is not None:
                watch = WebhookWatch(
                    WebhookAdmin(self.services.outreach.transport, self.services.outreach.config.api_url),
                    self.config.public_url, self._webhooks_disabled,
                )
                side.add(asyncio.create_task(self.consumer.run(self._stopping, watch), name="webhook_consumer"))
            if isinstance(self.services.directory, Directory):  # people directory between runs
                fresh = self.services.directory.keep_fresh(
                    self.mappings.values(), self.config.directory_refresh_seconds, self._stopping
                )
                side.add(asyncio.create_task(fresh, name="directory_refresh"))
            log.info("worker_started", holder=self.keeper.holder, mappings=self.scheduler.order,
                     port=self.health.port)  # fmt: skip
            dead = await self._wait_for_stop(side)
            await self._shutdown(side)
        if dead is not None:
            raise StoreError(
                f"the worker stopped because its {dead} task ended unexpectedly (see the "
                "side_task_died log line); its leases were released; restart it"
            )

    async def _wait_for_stop(self, side: set[asyncio.Task[None]]) -> str | None:
        """Returns None on a stop request, else the name of the side task that ended."""
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({stop, *side}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        for task in side:
            if task.done():
                error = None if task.cancelled() else task.exception()
                log.error("side_task_died", task=task.get_name(), error=repr(error))
                return task.get_name()
        return None

    async def _shutdown(self, side: set[asyncio.Task[None]]) -> None:
        self._stopping.set()
        self.scheduler.stop_taking_work()
        log.info("worker_stopping", in_flight=self.scheduler.in_flight())
        await self.scheduler.drain(self.config.stop_timeout)
        await asyncio.shield(self.keeper.release_all(timeout=2.0))
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        await self.health.stop()
        log.info("worker_stopped")

    async def _run_mapping(self, name: str) -> Outcome:
        """The scheduler's runner: one run of `name` under its lease, or BUSY."""
        async with self._locks[name]:
            return await self._run_mapping_locked(name)

    async def _run_mapping_locked(self, name: str) -> Outcome:
        if not await self.keeper.try_acquire(name):
            log.info("mapping_held_elsewhere", mapping=name)
            return Outcome.BUSY
        sink = _RunSink([LogProgress(), self.metrics.run_metrics(name)])
        try:
            work = sync_mapping(
                self.mappings[name], self.services, self.config.sync, sink, mappings=self.mappings,
                stop=self._stopping, fence=self.keeper.fence(name),
            )  # fmt: skip
            await self.keeper.run_held(name, work)
        finally:
            await asyncio.shield(self.keeper.release(name))
        return Outcome.DONE

    async def _upkeep_mapping(self, name: str) -> Outcome:
        """The scheduler's upkeep runner: `upkeep.Upkeep` of `name` under its lease, or BUSY."""
        if self._stopping.is_set():
            return Outcome.BUSY
        async with self._locks[name]:
            return await self._upkeep_mapping_locked(name)

    async def _upkeep_mapping_locked(self, name: str) -> Outcome:
        if not await self.keeper.try_acquire(name):
            return Outcome.BUSY
        try:
            upkeep = Upkeep(self.mappings[name], self.services, self.config.upkeep, self._stopping)
            with guarding(self.keeper.fence(name).check):  # its writes check the lease too
                await self.keeper.run_held(name, upkeep.run())
        finally:
            await asyncio.shield(self.keeper.release(name))
        return Outcome.DONE

    async def _run_webhook_work(self, name: str, work: Work) -> bool:
        """The consumer's runner: `work` under the lease and lock of `name`; False when busy."""
        if self._stopping.is_set():
            return False
        async with self._locks[name]:
            if not await self.keeper.try_acquire(name):
                return False
            try:
                with guarding(self.keeper.fence(name).check):
                    await self.keeper.run_held(name, work(self.keeper.holder))
            finally:
                await asyncio.shield(self.keeper.release(name))
        return True

    def _webhook_route(self) -> tuple[str, Handler] | None:
        if self.config.webhook_secret is None:
            return None
        handler = WebhookIntake(self.config.webhook_secret, self._store_delivery, self.metrics.observe_delivery)
        return intake.PATH, handler.handle

    async def _store_delivery(self, delivery: Delivery) -> bool:
        async with self.services.pool.acquire() as conn:
            return await inbox.add(conn, delivery)

    async def _probe(self, name: str) -> Hashable | None:
        try:
            with store_pool.translated(f"read the lease on mapping {name!r}"):
                lease = await self.keeper.holder_of(name)
        except BridgeError:
            return None
        return (lease.holder, lease.acquired_at) if lease is not None else None

    async def _readiness(self) -> Readiness:
        return await readiness(self.services.pool, self._stopping)

    async def _metrics_text(self) -> bytes:
        try:
            async with asyncio.timeout(2.0):
                with store_pool.translated("refresh the metrics"):
                    await self.metrics.refresh(self.services.pool, list(self.mappings))
        except (TimeoutError, BridgeError) as exc:
            log.warning("metrics_refresh_failed", error=str(exc))
        return self.metrics.render()
