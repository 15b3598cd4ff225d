"""When each mapping runs in the worker: triggers, jitter, no overlap, order, backoff.

APScheduler's AsyncIOScheduler fires one job per mapping, on its `schedule` (`every` or
`cron`), with a little jitter so replicas started together do not hit the APIs in step.
The scheduler decides only *when*; *whether this process may run it* (the lease) and the
run itself belong to the `Runner` the worker hands in. Invariants:
- A mapping's runs never overlap in this process (`max_instances=1`, `coalesce`); across
  processes the runner's lease sees to it.
- Dependencies go first: a mapping whose `mapping:` relationships point at one earlier in
  `sync_order` waits (bounded) while that one is running anywhere, and first runs at start
  are staggered in that order. Cycles are never waited on (only earlier mappings count).
- A failed run backs off exponentially (with jitter) and touches no other mapping: fires
  before its `not_before` are skipped, the next success resets it.
- Mapping cron uses crontab weekday numbers (0 and 7 = Sunday); APScheduler 3 counts from
  Monday, so the weekday field is rewritten into names (`cron_trigger`). As in cron, when
  both day-of-month and day-of-week are restricted, either one matching fires the job.
- Upkeep (dead letters, reconcile, parked links: `upkeep.py`) is a second job per mapping, on
  its own interval, sharing the mapping's no-overlap rule: a tick while the mapping syncs (or
  backs off) is skipped, and a sync that fires during an upkeep waits for it to end (upkeep
  never costs a sync its turn).
- After `stop_taking_work` no run starts; `drain` waits for those in flight, then cancels.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from bridge.logs import get_logger
from bridge.mapping.model import Mapping, Schedule
from bridge.mapping.order import sync_order

log = get_logger(__name__)

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering, 0 = Sunday


class Outcome(enum.Enum):
    DONE = "done"  # ran (and finished, or stopped cleanly at a page boundary)
    BUSY = "busy"  # another process holds the mapping; not a failure


Runner = Callable[[str], Awaitable[Outcome]]
# Returns a token naming the run of `mapping` in progress anywhere, or None when idle.
Probe = Callable[[str], Awaitable[Hashable | None]]


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    jitter_seconds: float = 5.0  # at most; never more than a tenth of the interval
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 900.0
    startup_stagger_seconds: float = 1.0
    dependency_wait_seconds: float = 300.0
    poll_seconds: float = 0.25
    upkeep_seconds: float | None = None  # None: no upkeep job


@dataclass(slots=True)
class _State:
    failures: int = 0
    not_before: float = 0.0
    task: asyncio.Task[Any] | None = None
    upkeep: asyncio.Task[Any] | None = None
    deps: list[str] = field(default_factory=list)


class MappingScheduler:
    """One APScheduler job per mapping, each calling `runner(name)` when due."""

    def __init__(
        self,
        mappings: dict[str, Mapping],
        runner: Runner,
        probe: Probe,
        config: ScheduleConfig = ScheduleConfig(),
        *,
        upkeep: Runner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mappings, self._runner, self._probe, self.config = mappings, runner, probe, config
        self._upkeep = upkeep
        self._clock = clock
        self.order = sync_order(mappings)
        self._state = {name: _State(deps=self._earlier_deps(name)) for name in self.order}
        self._aps = AsyncIOScheduler(timezone=UTC)
        # Its "maximum number of running instances reached" warnings are the no-overlap rule
        # working; they would be plain-text lines among the JSON ones.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._stopping = False

    def _earlier_deps(self, name: str) -> list[str]:
        before = self.order[: self.order.index(name)]
        return [d for d in before if d in self.mappings[name].depends_on()]

    def start(self) -> None:
        now = datetime.now(UTC)
        for index, name in enumerate(self.order):
            schedule = self.mappings[name].schedule
            first = None
            if schedule.every is not None:  # interval mappings run at start, in order
                first = now + timedelta(seconds=index * self.config.startup_stagger_seconds)
            self._aps.add_job(
                self._fire, trigger_for(schedule, self.config.jitter_seconds), args=[name],
                id=name, name=name, max_instances=1, coalesce=True, misfire_grace_time=None,
                **({"next_run_time": first} if first is not None else {}),
            )  # fmt: skip
        self._add_upkeep_jobs()
        self._aps.start()
        log.info("scheduler_started", order=self.order)

    def _add_upkeep_jobs(self) -> None:
        every = self.config.upkeep_seconds
        if self._upkeep is None or every is None:
            return
        jitter = min(self.config.jitter_seconds, every / 10) or None
        for name in self.order:  # first tick one interval after start, after the first syncs
            self._aps.add_job(
                self._fire_upkeep, IntervalTrigger(seconds=every, jitter=jitter, timezone=UTC),
                args=[name], id=f"{name}:upkeep", name=f"{name}:upkeep", max_instances=1,
                coalesce=True, misfire_grace_time=None,
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return bool(self._aps.running) and not self._stopping

    def in_flight(self) -> list[str]:
        return [n for n, s in self._state.items() if _live(s.task) or _live(s.upkeep)]

    def _tasks(self) -> list[asyncio.Task[Any]]:
        return [t for s in self._state.values() for t in (s.task, s.upkeep) if t is not None and _live(t)]

    def stop_taking_work(self) -> None:
        self._stopping = True
        if self._aps.running:
            self._aps.pause()

    def cancel_in_flight(self) -> None:
        for task in self._tasks():
            task.cancel()

    async def drain(self, timeout: float, cancel_wait: float = 4.0) -> None:
        """Waits up to `timeout` for runs in flight, then cancels what is left."""
        tasks = self._tasks()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("runs_cancelled_at_stop", mappings=self.in_flight())
                await asyncio.wait(pending, timeout=cancel_wait)
        if self._aps.running:
            self._aps.shutdown(wait=False)

    async def watch(self) -> None:
        """A side task: returns if the scheduler stopped while it should be running."""
        while self._aps.running or self._stopping:
            await asyncio.sleep(1.0)
        log.error("scheduler_stopped_unexpectedly")

    async def _fire(self, name: str) -> None:
        state = self._state[name]
        if self._stopping or self._clock() < state.not_before:
            return
        if state.task is not None and not state.task.done():  # APScheduler's max_instances too
            log.info("run_still_going", mapping=name)
            return
        state.task = asyncio.current_task()
        try:
            if _live(state.upkeep):
                log.info("waiting_for_upkeep", mapping=name)
                assert state.upkeep is not None
                await asyncio.wait({state.upkeep})
            await self._wait_for_dependencies(name)
            if self._stopping:
                return
            outcome = await self._runner(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one mapping's failure must not stop the others
            self._failed(name, exc)
        else:
            if outcome is Outcome.DONE:
                state.failures, state.not_before = 0, 0.0
        finally:
            state.task = None

    async def _fire_upkeep(self, name: str) -> None:
        """One upkeep tick of `name`, unless it is syncing, backing off, or already in upkeep."""
        state = self._state[name]
        if self._upkeep is None or self._stopping or self._clock() < state.not_before:
            return
        if _live(state.task) or _live(state.upkeep):
            return
        state.upkeep = asyncio.current_task()
        try:
            await self._upkeep(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - next tick tries again; syncs are not touched
            log.error("upkeep_failed", mapping=name, error_type=type(exc).__name__, error=str(exc))
        finally:
            state.upkeep = None

    def _failed(self, name: str, exc: Exception) -> None:
        state = self._state[name]
        state.failures += 1
        delay = backoff_delay(state.failures, self.config)
        state.not_before = self._clock() + delay
        log.error(
            "run_failed", mapping=name, error_type=type(exc).__name__, error=str(exc),
            failures=state.failures, backoff_seconds=round(delay, 1),
        )  # fmt: skip

    async def _wait_for_dependencies(self, name: str) -> None:
        deadline = self._clock() + self.config.dependency_wait_seconds
        for dep in self._state[name].deps:
            token = await self._probe(dep)
            if token is None:
                continue
            log.info("waiting_for_dependency", mapping=name, dependency=dep)
            while not self._stopping and self._clock() < deadline and await self._probe(dep) == token:
                await asyncio.sleep(self.config.poll_seconds)


def _live(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and not task.done()


def backoff_delay(failures: int, config: ScheduleConfig, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row: doubling, capped, ±20 %."""
    base = min(config.backoff_seconds * 2 ** (failures - 1), config.backoff_max_seconds)
    return float(base * (rng or random).uniform(0.8, 1.2))


def trigger_for(schedule: Schedule, max_jitter: float) -> BaseTrigger:
    """The APScheduler trigger of a mapping's schedule, with jitter (≤ 10 % of an interval)."""
    seconds = schedule.seconds()
    if seconds is not None:
        return IntervalTrigger(seconds=seconds, jitter=min(max_jitter, seconds / 10) or None, timezone=UTC)
    assert schedule.cron is not None
    return cron_trigger(schedule.cron, jitter=max_jitter)


def cron_trigger(expression: str, *, jitter: float = 0.0) -> BaseTrigger:
    """A crontab line as an APScheduler trigger, with crontab's weekday numbers and OR rule."""
    minute, hour, dom, month, dow = expression.split()
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": UTC}
    if jitter:
        common["jitter"] = jitter
    days = crontab_weekdays(dow)
    if dom != "*" and dow != "*":
        return OrTrigger([CronTrigger(day=dom, **common), CronTrigger(day_of_week=days, **common)])
    return CronTrigger(day=dom, day_of_week=days, **common)


def crontab_weekdays(field_text: str) -> str:
    """A crontab day-of-week field (0-7, 0 and 7 = Sunday, names, ranges, steps) as day names."""
    if field_text == "*":
        return "*"
    days: set[int] = set()
    for item in field_text.lower().split(","):
        base, _, step = item.partition("/")
        if base == "*":
            low, high = 0, 7
        else:
            start, _, end = base.partition("-")
            low = _day_number(start)
            high = _day_number(end) if end else (7 if step else low)
        days.update(d % 7 for d in range(low, high + 1, int(step or 1)))
    if len(days) == 7:
        return "*"
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day_number(text: str) -> int:
    return _DAY_NAMES.index(text[:3]) if text[:3] in _DAY_NAMES else int(text)


def runs_per_hour(schedule: Schedule) -> float:
    """How often a schedule fires, averaged over a week (cron fires unevenly)."""
    seconds = schedule.seconds()
    if seconds is not None:
        return 3600 / seconds
    assert schedule.cron is not None
    trigger = cron_trigger(schedule.cron)
    start = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday; a week covers every weekday rule
    end, fires, previous = start + timedelta(days=7), 0, None
    at = trigger.get_next_fire_time(None, start)
    while at is not None and at < end and fires < 7 * 24 * 60 + 1:
        fires += 1
        previous = at
        at = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
    return fires / (7 * 24)
