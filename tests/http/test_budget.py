"""SharedBudget and SharedSlots, this process's side of the shared budget, over in-memory stores."""

from __future__ import annotations

import asyncio

import pytest

from bridge.http.budget import BudgetPolicy, Grant, SharedBudget, SharedSlots, send_offsets
from bridge.http.ratelimit import RateLimiter
from tests.http.fakes import FakeTime


class MemoryBudget:
    """The GCRA clock of store/budget.py in memory, on the fake clock."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.tat = 0.0
        self.paused_until = 0.0
        self.claims: list[int] = []
        self.pauses: list[float] = []

    async def claim(self, scope: str, count: int, interval: float, tolerance: float) -> Grant:
        await asyncio.sleep(0)  # the round trip, during which more callers come
        now = self.time.now
        start = max(self.tat, now, self.paused_until + tolerance)
        self.tat = start + count * interval
        self.claims.append(count)
        return Grant(count, start - now)

    async def pause(self, scope: str, seconds: float) -> None:
        self.pauses.append(seconds)
        self.paused_until = max(self.paused_until, self.time.now + seconds)


POLICY = BudgetPolicy("zendesk:acme", limit=61, window=60.0, burst=0, validity=1.0, batch=10)


def test_the_interval_leaves_room_for_the_validity_and_the_burst() -> None:
    assert POLICY.interval == pytest.approx(61 / 60)
    policy = BudgetPolicy("z", limit=700, window=60.0, burst=14)
    assert policy.interval == pytest.approx(61 / 685) and policy.tolerance == pytest.approx(14 * 61 / 685)
    with pytest.raises(ValueError, match="no room for a burst"):
        BudgetPolicy("z", limit=10, window=60.0, burst=9)


def test_send_offsets_never_precede_the_claim() -> None:
    assert send_offsets(Grant(3, 0.0), 1.0, 1.5) == [0.0, 0.0, 0.5]
    assert send_offsets(Grant(2, 4.0), 1.0, 0.0) == [4.0, 5.0]


async def test_many_waiters_claim_in_batches_and_leave_one_interval_apart() -> None:
    time = FakeTime(start=0.0)
    store = MemoryBudget(time)
    budget = SharedBudget(store, POLICY, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []

    async def request() -> None:
        await budget.acquire()
        sent.append(time.now)

    await asyncio.gather(*(request() for _ in range(25)))
    assert store.claims == [1, 10, 10, 4]  # the first caller claims alone, then whole batches
    assert sent == pytest.approx([i * POLICY.interval for i in range(25)])
    assert budget.dropped == 0


async def test_a_lone_request_claims_one_send_time() -> None:
    time = FakeTime(start=0.0)
    store = MemoryBudget(time)
    budget = SharedBudget(store, POLICY, clock=time.clock, sleep=time.sleep)
    await budget.acquire()
    assert store.claims == [1]


class SlowBudget(MemoryBudget):
    """A store whose claims take `round_trip` seconds (a commit on a busy database)."""

    round_trip = 0.03

    async def claim(self, scope: str, count: int, interval: float, tolerance: float) -> Grant:
        await self.time.sleep(self.round_trip)
        return await super().claim(scope, count, interval, tolerance)


BURSTY = BudgetPolicy("outreach:acme", limit=10_000, window=3600.0, burst=500, validity=1.0, batch=10)


async def test_requests_one_after_another_find_their_send_time_already_claimed() -> None:
    """A listing asks for page after page, each as soon as the last one's answer is read: the
    next send time is claimed while this request is out: once two requests have followed each
    other, none waits for the store."""
    time = FakeTime(start=1000.0)  # long after any earlier send: the burst is free
    store = SlowBudget(time)
    budget = SharedBudget(store, BURSTY, clock=time.clock, sleep=time.sleep)
    waits = []
    for _ in range(5):
        before = time.now
        await budget.acquire()
        waits.append(time.now - before)
        await time.sleep(0.05)  # the request, then the page's work
    assert waits[:2] == pytest.approx([SlowBudget.round_trip] * 2)
    assert waits[2:] == [0.0] * 3
    assert budget.dropped == 0


async def test_requests_far_apart_claim_nothing_ahead() -> None:
    """A poll every few seconds would only waste the send time claimed ahead of it."""
    time = FakeTime(start=0.0)
    store = MemoryBudget(time)
    budget = SharedBudget(store, POLICY, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        await budget.acquire()
        await time.sleep(5.0)
    await budget.aclose()
    assert store.claims == [1, 1, 1] and budget.dropped == 0


async def test_a_claim_ahead_that_fails_is_claimed_again_by_the_next_request() -> None:
    time = FakeTime(start=1000.0)

    class Flaky(MemoryBudget):
        async def claim(self, scope: str, count: int, interval: float, tolerance: float) -> Grant:
            if len(self.claims) == 2:
                self.claims.append(0)
                raise OSError("database unreachable")
            return await super().claim(scope, count, interval, tolerance)

    store = Flaky(time)
    budget = SharedBudget(store, BURSTY, clock=time.clock, sleep=time.sleep)
    for _ in range(4):
        await budget.acquire()
        await time.sleep(0.05)
    await budget.aclose()
    assert store.claims[:3] == [1, 1, 0] and len(store.claims) >= 4


async def test_a_send_time_left_unused_past_its_validity_is_dropped() -> None:
    time = FakeTime(start=0.0)
    store = MemoryBudget(time)
    budget = SharedBudget(store, POLICY, clock=time.clock, sleep=time.sleep)
    await budget.acquire()
    budget._slots.append(time.now)  # a held send time, then the process stalls
    time.now += 5.0
    await budget.acquire()
    assert budget.dropped == 1 and store.claims == [1, 1]


async def test_a_retry_after_is_shared_and_nothing_leaves_before_it_ends() -> None:
    time = FakeTime(start=0.0)
    store = MemoryBudget(time)
    budget = SharedBudget(store, POLICY, clock=time.clock, sleep=time.sleep)
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep, budget=budget)
    await asyncio.gather(*(limiter.wait() for _ in range(3)))
    budget._slots.extend([time.now + 1.0, time.now + 2.0])  # held from an earlier claim
    limiter.pause_for(30.0)  # a 429's Retry-After
    await budget.aclose()
    assert store.pauses == [30.0] and budget.dropped == 2
    before = time.now
    await limiter.wait()
    assert time.now >= before + 30.0
    assert limiter.waited_seconds >= 30.0


async def test_a_pause_that_cannot_be_stored_still_holds_this_process() -> None:
    time = FakeTime(start=0.0)

    class Down(MemoryBudget):
        async def pause(self, scope: str, seconds: float) -> None:
            raise OSError("database unreachable")

    budget = SharedBudget(Down(time), POLICY, clock=time.clock, sleep=time.sleep)
    budget.pause_for(10.0)
    await budget.aclose()
    await budget.acquire()
    assert time.now >= 10.0


class MemorySlots:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.holders: dict[int, str] = {}
        self.renewals = 0

    async def acquire(self, scope: str, holder: str, cap: int, ttl: float) -> int | None:
        free = [slot for slot in range(1, cap + 1) if slot not in self.holders]
        if not free:
            return None
        self.holders[free[0]] = holder
        return free[0]

    async def renew(self, scope: str, holder: str, ttl: float) -> None:
        self.renewals += 1

    async def release(self, scope: str, holder: str, slot: int) -> None:
        if self.holders.get(slot) == holder:
            del self.holders[slot]


async def test_two_processes_share_the_accounts_job_slots() -> None:
    store = MemorySlots(cap=3)
    processes = [SharedSlots(store, "zendesk:acme", f"p{i}", cap=3, local_cap=3, ttl=0.3) for i in range(2)]
    running, most = 0, 0

    async def job(slots: SharedSlots) -> None:
        nonlocal running, most
        async with slots:
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(job(processes[i % 2]) for i in range(12)))
    for slots in processes:
        await slots.aclose()
    assert most == 3 and store.holders == {}


async def test_held_slots_are_renewed_while_their_job_runs() -> None:
    time = FakeTime(start=0.0)
    store = MemorySlots(cap=2)
    slots = SharedSlots(store, "zendesk:acme", "p", ttl=3.0, sleep=time.sleep)
    async with slots:
        for _ in range(3):
            await asyncio.sleep(0)
    await slots.aclose()
    assert store.renewals >= 1 and slots.held == 0
