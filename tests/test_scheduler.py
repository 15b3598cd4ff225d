"""The scheduler: crontab weekdays, jitter, no overlap, dependency order, backoff."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

import pytest

from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping, Schedule
from bridge.scheduler import (
    MappingScheduler,
    Outcome,
    ScheduleConfig,
    backoff_delay,
    cron_trigger,
    crontab_weekdays,
    trigger_for,
)  # fmt: skip
from tests.fixtures_sandbox import REPO


def mappings(every: str = "1s") -> dict[str, Mapping]:
    loaded = load_mappings(REPO / "mappings")
    return {n: m.model_copy(update={"schedule": Schedule(every=every)}) for n, m in loaded.items()}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0-3", "sun,mon,tue,wed"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,sun", "sun,sat"),
        ("Mon-Wed", "mon,tue,wed"),
        ("0-7", "*"),
    ],
)
def test_crontab_weekdays_count_from_sunday(field: str, expected: str) -> None:
    assert crontab_weekdays(field) == expected


def test_cron_zero_is_sunday_not_monday() -> None:
    friday = datetime(2024, 1, 5, 13, 0, tzinfo=UTC)
    fire = cron_trigger("0 12 * * 0").get_next_fire_time(None, friday)
    assert fire == datetime(2024, 1, 7, 12, 0, tzinfo=UTC)
    assert fire.strftime("%A") == "Sunday"


def test_cron_day_of_month_or_weekday_as_in_crontab() -> None:
    monday = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)  # the 13th or any Friday, whichever first
    fire = cron_trigger("0 0 13 * 5").get_next_fire_time(None, monday)
    assert fire == datetime(2024, 1, 5, 0, 0, tzinfo=UTC)


def test_interval_jitter_is_at_most_a_tenth_of_the_interval() -> None:
    trigger = trigger_for(Schedule(every="10s"), max_jitter=5.0)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fires = [trigger.get_next_fire_time(start, start + timedelta(seconds=1)) for _ in range(50)]
    offsets = [(f - start).total_seconds() for f in fires]
    assert all(10.0 <= o <= 11.0 for o in offsets) and len(set(offsets)) > 1


def test_backoff_doubles_and_is_capped() -> None:
    config = ScheduleConfig(backoff_seconds=10, backoff_max_seconds=60)
    rng = random.Random(1)
    delays = [backoff_delay(n, config, rng) for n in range(1, 7)]
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24 and 32 <= delays[2] <= 48
    assert all(48 <= d <= 72 for d in delays[3:])


async def idle_probe(name: str) -> Hashable | None:
    return None


async def test_a_failing_mapping_backs_off_and_the_others_go_on() -> None:
    calls: list[str] = []

    async def runner(name: str) -> Outcome:
        calls.append(name)
        if name == "vehicle_brands":
            raise RuntimeError("Outreach is down")
        return Outcome.DONE

    clock = FakeClock()
    config = ScheduleConfig(backoff_seconds=30, backoff_max_seconds=300)
    sched = MappingScheduler(mappings(), runner, idle_probe, config, clock=clock)
    for _ in range(3):
        await sched._fire("vehicle_brands")
        await sched._fire("vehicles")
    assert calls == ["vehicle_brands", "vehicles", "vehicles", "vehicles"]
    clock.now += 40  # past the first backoff (30 s ± 20 %): tried again, fails, waits ~60 s
    await sched._fire("vehicle_brands")
    clock.now += 40
    await sched._fire("vehicle_brands")
    assert calls.count("vehicle_brands") == 2


async def test_runs_of_one_mapping_never_overlap() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def runner(name: str) -> Outcome:
        if name in running:
            overlaps.append(name)
        running.add(name)
        started.set()
        await release.wait()
        running.discard(name)
        return Outcome.DONE

    sched = MappingScheduler(mappings(), runner, idle_probe)
    first = asyncio.create_task(sched._fire("vehicles"))
    await started.wait()
    await sched._fire("vehicles")  # fires while the first run goes on: skipped
    release.set()
    await first
    assert overlaps == []


async def test_a_mapping_waits_while_its_dependency_runs() -> None:
    events: list[str] = []
    busy = {"vehicle_brands": 3}  # the dependency is seen running for three polls

    async def probe(name: str) -> Hashable | None:
        events.append(f"probe:{name}")
        if busy.get(name, 0) > 0:
            busy[name] -= 1
            return ("other-replica", 1)
        return None

    async def runner(name: str) -> Outcome:
        events.append(f"run:{name}")
        return Outcome.DONE

    sched = MappingScheduler(mappings(), runner, probe, ScheduleConfig(poll_seconds=0.01))
    await sched._fire("vehicles")
    assert events == ["probe:vehicle_brands"] * 4 + ["run:vehicles"]


async def test_apscheduler_fires_every_mapping_in_order_and_drains() -> None:
    runs: list[tuple[str, float, float]] = []

    async def runner(name: str) -> Outcome:
        start = time.monotonic()
        await asyncio.sleep(0.3)
        runs.append((name, start, time.monotonic()))
        return Outcome.DONE

    config = ScheduleConfig(jitter_seconds=0.05, startup_stagger_seconds=0.2)
    sched = MappingScheduler(mappings("1s"), runner, idle_probe, config)
    sched.start()
    try:
        deadline = time.monotonic() + 10
        while sum(1 for r in runs if r[0] == "vehicles") < 2:
            assert time.monotonic() < deadline, runs
            await asyncio.sleep(0.05)
    finally:
        sched.stop_taking_work()
        await sched.drain(timeout=2)
    assert [r[0] for r in runs[:2]] == ["vehicle_brands", "vehicles"]
    for name in ("vehicle_brands", "vehicles"):
        mine = sorted((s, e) for n, s, e in runs if n == name)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(mine, mine[1:]))
    count = len(runs)
    await asyncio.sleep(1.2)
    assert len(runs) == count  # nothing starts after stop_taking_work


async def test_upkeep_and_syncs_of_a_mapping_never_overlap_and_a_sync_waits_its_turn() -> None:
    log: list[str] = []
    release = asyncio.Event()
    upkeep_started = asyncio.Event()

    async def runner(name: str) -> Outcome:
        log.append(f"sync:{name}")
        return Outcome.DONE

    async def upkeep(name: str) -> Outcome:
        log.append(f"upkeep:{name}")
        upkeep_started.set()
        await release.wait()
        log.append(f"upkeep_done:{name}")
        return Outcome.DONE

    sched = MappingScheduler(mappings(), runner, idle_probe, upkeep=upkeep)
    tick = asyncio.create_task(sched._fire_upkeep("vehicles"))
    await upkeep_started.wait()
    await sched._fire_upkeep("vehicles")  # a second tick while the first goes on: skipped
    sync = asyncio.create_task(sched._fire("vehicles"))  # fires during upkeep: waits, not skipped
    await sched._fire("vehicle_brands")  # another mapping is not held up
    await asyncio.sleep(0.05)
    assert log == ["upkeep:vehicles", "sync:vehicle_brands"]
    assert sched.in_flight() == ["vehicles"]
    release.set()
    await asyncio.gather(tick, sync)
    assert log == ["upkeep:vehicles", "sync:vehicle_brands", "upkeep_done:vehicles", "sync:vehicles"]

    blocked = asyncio.Event()

    async def slow_runner(name: str) -> Outcome:
        await blocked.wait()
        return Outcome.DONE

    sched = MappingScheduler(mappings(), slow_runner, idle_probe, upkeep=upkeep)
    log.clear()
    running = asyncio.create_task(sched._fire("vehicles"))
    await asyncio.sleep(0.01)
    await sched._fire_upkeep("vehicles")  # a tick while the mapping syncs: skipped
    blocked.set()
    await running
    assert log == []


async def test_upkeep_waits_out_a_sync_backoff_and_its_failures_leave_syncs_alone() -> None:
    calls: list[str] = []
    fail_sync = True

    async def runner(name: str) -> Outcome:
        calls.append("sync")
        if fail_sync:
            raise RuntimeError("Zendesk is down")
        return Outcome.DONE

    async def upkeep(name: str) -> Outcome:
        calls.append("upkeep")
        raise RuntimeError("reconcile listing failed")

    clock = FakeClock()
    config = ScheduleConfig(backoff_seconds=30, backoff_max_seconds=300)
    sched = MappingScheduler(mappings(), runner, idle_probe, config, upkeep=upkeep, clock=clock)
    await sched._fire("vehicles")
    await sched._fire_upkeep("vehicles")  # the mapping backs off: no upkeep either
    assert calls == ["sync"]
    clock.now += 40
    fail_sync = False
    await sched._fire("vehicles")
    for _ in range(3):  # upkeep fails every tick; the sync is not made to back off
        await sched._fire_upkeep("vehicles")
        await sched._fire("vehicles")
    assert calls == ["sync", "sync"] + ["upkeep", "sync"] * 3
    sched.stop_taking_work()
    await sched._fire_upkeep("vehicles")  # nothing starts once stopping
    assert calls[-1] == "sync"


async def test_apscheduler_ticks_upkeep_on_its_own_interval() -> None:
    ticks: list[str] = []

    async def runner(name: str) -> Outcome:
        return Outcome.DONE

    async def upkeep(name: str) -> Outcome:
        ticks.append(name)
        return Outcome.DONE

    config = ScheduleConfig(jitter_seconds=0, upkeep_seconds=0.2)
    sched = MappingScheduler(mappings("1h"), runner, idle_probe, config, upkeep=upkeep)
    sched.start()
    try:
        deadline = time.monotonic() + 5
        while not {"vehicles", "vehicle_brands"} <= set(ticks) or len(ticks) < 4:
            assert time.monotonic() < deadline, ticks
            await asyncio.sleep(0.02)
    finally:
        sched.stop_taking_work()
        await sched.drain(timeout=2)


def test_runs_per_hour_of_intervals_and_crons() -> None:
    from bridge.mapping.model import Schedule
    from bridge.scheduler import runs_per_hour

    assert runs_per_hour(Schedule(every="5m")) == 12
    assert runs_per_hour(Schedule(cron="*/15 * * * *")) == 4
    assert runs_per_hour(Schedule(cron="0 9 * * 1-5")) == 5 / 168  # weekdays at nine
    assert runs_per_hour(Schedule(cron="0 0 1,15 * 0")) > 0  # crontab's OR of day and weekday
