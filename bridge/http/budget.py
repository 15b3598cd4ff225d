"""One request budget per API account, and one pool of bulk-job slots, shared by every process.

Worker replicas, a backfill and a `dead-letters retry` use the same credentials, so they spend
the same account-wide limits (api/zendesk.md and api/outreach.md, "Rate limits"). Each process
reading the limit headers on its own cannot keep their sum under the limit, so the budget lives
in a shared store (Postgres, `store/budget.py`), declared here as `BudgetStore` and `SlotStore`
because `http` knows no store.

The budget is a GCRA clock ("virtual scheduling"): every request gets a send time, claimed in
batches of up to `BudgetPolicy.batch` per round trip, globally spaced `interval` apart, with a
burst of `burst` requests allowed after a quiet spell. Invariants:
- In any window of `window` seconds at most `limit` requests leave, over all processes: a send
  time is used within `validity` seconds or dropped, so sends in a window come from send times
  in a span of `window + validity`, and `interval` is chosen so that span holds at most `limit`
  (see `BudgetPolicy.interval`).
- A Retry-After seen by one process is stored in the shared row; no process is handed a send
  time before it, and the send times a process already held from before it are dropped.
- Send times come back as delays from the store's clock, so hosts with skewed clocks agree.
- Requests that follow one another closely (a listing's pages, each asked for once the last
  one is read) find their send time already claimed: the next one is claimed while this one
  goes, so the store's round trip is not on every request's path. A stream that ends leaves at
  most one claimed send time unused; requests further apart than half the validity (polls)
  claim nothing ahead.

Job slots are leases with an expiry, renewed while their job runs: at most `cap` bulk jobs are
queued or running per account, and a process that dies holding slots frees them at expiry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """One account's budget: `limit` requests per `window` seconds for all processes together."""

    scope: str  # the account: "zendesk:acme.zendesk.com"
    limit: int
    window: float
    burst: int = 0  # requests that may leave at once after a quiet spell
    validity: float = 1.0  # seconds a claimed send time stays usable
    batch: int = 10  # the most send times claimed in one round trip

    def __post_init__(self) -> None:
        if self.limit - 1 - self.burst < 1:
            raise ValueError(
                f"rate budget {self.scope}: a limit of {self.limit} leaves no room for a burst "
                f"of {self.burst}; raise the limit"
            )

    @property
    def interval(self) -> float:
        """Seconds between send times. Send times `interval` apart with a tolerance of `burst`
        intervals put at most (span + tolerance) / interval + 1 in any span; the span is
        `window + validity`, so this keeps every window at `limit` or under."""
        return (self.window + self.validity) / (self.limit - 1 - self.burst)

    @property
    def tolerance(self) -> float:
        return self.burst * self.interval


@dataclass(frozen=True, slots=True)
class Grant:
    """`count` send times: the k-th is `lead - tolerance + k * interval` seconds after the
    store's clock read them (never before it)."""

    count: int
    lead: float


class BudgetStore(Protocol):
    async def claim(self, scope: str, count: int, interval: float, tolerance: float) -> Grant:
        """Moves the account's clock `count` intervals on and returns where it started."""
        ...

    async def pause(self, scope: str, seconds: float) -> None:
        """No send time before `seconds` from now is handed out to anyone."""
        ...


def send_offsets(grant: Grant, interval: float, tolerance: float) -> list[float]:
    """Seconds from the claim to each granted send time, in order."""
    return [max(0.0, grant.lead - tolerance + k * interval) for k in range(grant.count)]


class SharedBudget:
    """This process's side of a shared budget: waits for a send time, claiming them in batches."""

    def __init__(
        self,
        store: BudgetStore,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque()  # claimed send times on `clock`, in order
        self._claiming = asyncio.Lock()
        self._wanting = 0  # callers of `acquire` without a send time yet
        self._paused_until = float("-inf")
        self._pushes: set[asyncio.Task[None]] = set()
        self._last_acquired = float("-inf")
        self._ahead: asyncio.Task[None] | None = None
        self.claims = 0  # round trips to the store
        self.dropped = 0  # send times that expired unused or fell inside a pause
        self.waited_seconds = 0.0

    async def acquire(self) -> None:
        """Returns at a send time this process owns: the request may go now."""
        while True:
            slot = await self._next_slot()
            delay = slot - self._clock()
            if delay > 0:
                self.waited_seconds += delay
                await self._sleep(delay)
            now = self._clock()
            if self._usable(slot, now):
                self._claim_ahead(now)
                return
            self.dropped += 1  # a pause came while waiting, or the loop was late

    def _claim_ahead(self, now: float) -> None:
        """Claims the next send time now when this request closely follows the last one and
        none is held or being claimed: the next request of the stream will not wait for it."""
        follows = now - self._last_acquired <= self.policy.validity / 2
        self._last_acquired = now
        if not follows or self._slots or self._claiming.locked() or self._wanting:
            return
        self._ahead = asyncio.get_running_loop().create_task(self._claim_quietly())

    async def _claim_quietly(self) -> None:
        try:
            await self._claim()
        except Exception as exc:  # the next request claims again, and fails loudly if it must
            log.debug("rate_budget_claim_ahead_failed", scope=self.policy.scope, error=str(exc))

    async def _next_slot(self) -> float:
        """The next held send time, claiming more when none is held. `_wanting` counts the
        callers in here, so a claim asks for as many as are waiting (up to a batch)."""
        self._wanting += 1
        try:
            while True:
                slot = self._take()
                if slot is not None:
                    return slot
                await self._claim()
        finally:
            self._wanting -= 1

    def pause_for(self, seconds: float) -> None:
        """A Retry-After: holds this process now and every other one from its next claim."""
        until = self._clock() + max(0.0, seconds)
        if until <= self._paused_until:
            return
        self._paused_until = until
        held = len(self._slots)
        self._slots = deque(s for s in self._slots if s >= until)
        self.dropped += held - len(self._slots)
        task = asyncio.get_running_loop().create_task(self._push_pause(seconds))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def aclose(self) -> None:
        """Waits for pauses still being stored, so a Retry-After is not lost at exit."""
        if self._ahead is not None:
            await asyncio.gather(self._ahead, return_exceptions=True)
        if self._pushes:
            await asyncio.gather(*self._pushes, return_exceptions=True)

    def _take(self) -> float | None:
        now = self._clock()
        while self._slots:
            slot = self._slots.popleft()
            if self._usable(slot, now):
                return slot
            self.dropped += 1
        return None

    def _usable(self, slot: float, now: float) -> bool:
        """Half the validity locally: the rest covers the claim's round trip and the send."""
        return slot >= self._paused_until and now <= slot + self.policy.validity / 2

    async def _claim(self) -> None:
        async with self._claiming:
            if self._slots:
                return  # another caller claimed while this one waited for the lock
            if self._paused_until > self._clock():
                # the store may not know yet: wait here rather than claim times to drop
                await self._sleep(self._paused_until - self._clock())
            policy = self.policy
            count = min(policy.batch, max(self._wanting, 1))
            grant = await self.store.claim(policy.scope, count, policy.interval, policy.tolerance)
            self.claims += 1
            received = self._clock()  # later than the store's read: the local times err late
            offsets = send_offsets(grant, policy.interval, policy.tolerance)
            self._slots.extend(received + offset for offset in offsets)

    async def _push_pause(self, seconds: float) -> None:
        try:
            await self.store.pause(self.policy.scope, seconds)
        except Exception as exc:  # this process still pauses; the others find out by 429
            log.warning("rate_budget_pause_not_shared", scope=self.policy.scope, error=str(exc))


class SlotStore(Protocol):
    async def acquire(self, scope: str, holder: str, cap: int, ttl: float) -> int | None:
        """One free slot of the `cap` (leased to `holder` for `ttl` seconds), or None."""
        ...

    async def renew(self, scope: str, holder: str, ttl: float) -> None: ...

    async def release(self, scope: str, holder: str, slot: int) -> None: ...


class SharedSlots:
    """`async with slots:` holds one of an account's `cap` job slots (and one of this process's
    `local_cap`) while a bulk job is queued or running. Slots are interchangeable, so leaving
    releases any one this process holds."""

    def __init__(
        self,
        store: SlotStore,
        scope: str,
        holder: str,
        *,
        cap: int = 30,
        local_cap: int = 12,
        ttl: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self.scope = scope
        self.holder = holder
        self.cap = cap
        self.ttl = ttl
        self._local = asyncio.Semaphore(local_cap)
        self._sleep = sleep
        self._rand = rand
        self._held: list[int] = []
        self._renewer: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    async def __aenter__(self) -> None:
        await self._local.acquire()
        try:
            self._held.append(await self._wait_for_slot())
        except BaseException:
            self._local.release()
            raise
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def __aexit__(self, *exc: object) -> None:
        slot = self._held.pop()
        self._local.release()
        try:
            await asyncio.shield(self._store.release(self.scope, self.holder, slot))
        except Exception as err:  # the slot expires on its own
            log.warning("job_slot_not_released", scope=self.scope, slot=slot, error=str(err))

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)

    async def _wait_for_slot(self) -> int:
        """Every slot busy: asks again after a short, growing, jittered wait (a job takes
        seconds, so polling a few times a second costs little)."""
        delay = 0.05
        waited = False
        while True:
            slot = await self._store.acquire(self.scope, self.holder, self.cap, self.ttl)
            if slot is not None:
                return slot
            if not waited:
                log.info("job_slots_full", scope=self.scope, cap=self.cap)
                waited = True
            await self._sleep(delay * (0.5 + self._rand()))
            delay = min(delay * 2, 1.0)

    async def _renew(self) -> None:
        while self._held:
            await self._sleep(self.ttl / 3)
            if not self._held:
                return
            try:
                await self._store.renew(self.scope, self.holder, self.ttl)
            except Exception as err:  # a slot that lapses may be taken: Zendesk then says so
                log.warning("job_slots_not_renewed", scope=self.scope, error=str(err))
