"""Client-side pacing from the APIs' rate-limit headers, shared by every request of one API.

Both APIs limit the whole account, not a connection (api/outreach.md and api/zendesk.md, "Rate
limits"), so one `RateLimiter` is shared by every request to one API. It keeps two invariants:

- after `pause_until(t)` (a 429's Retry-After) no request passes `wait()` before `t`, and the
  requests held by it leave one at a time, not together: each takes the next free slot, a
  spacing apart (the quota's even spread, `window / limit`, when known, else `min_spacing`)
  plus a random jitter of up to one spacing, so a burst released at `t` does not earn the
  next 429. A spent quota (remaining 0) holds requests until its reset in the same way;
- once the remaining quota drops below `reserve * limit`, requests are spread evenly over the
  time left until the reset, so the quota is not spent before the window ends; not with a
  shared budget, which already spreads every process's requests under the limit (Zendesk's
  Remaining counts a fixed minute and names no reset: spread over a guessed minute, the last
  seconds of every minute would hold each request for seconds). Waiting is always a sleep for
  a computed time, never a poll.

Headers read: Outreach `X-RateLimit-Limit/Remaining/Reset` (Remaining may be "a,b": the first
counts; Reset is epoch seconds or seconds-until), Zendesk `X-Rate-Limit` and
`X-Rate-Limit-Remaining` (per minute, no reset given) and the IETF `ratelimit-limit/remaining/
reset` (seconds-until). When several are present the tightest wins.

With a `SharedBudget` (http/budget.py), a request that this limiter lets go then waits for a
send time of the account's budget shared with every other process, and a Retry-After
(`pause_for`) is passed on to it, so it holds the other processes too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bridge.http.budget import SharedBudget

_EPOCH_MS = 1e12  # a Reset above this is epoch milliseconds
_EPOCH_S = 1e9  # a Reset above this (and below the above) is epoch seconds
_MAX_RESET = 3600.0  # Outreach's window is an hour; a longer wait is a misread header
_ZENDESK_WINDOW = 60.0  # X-Rate-Limit is per minute and carries no reset


@dataclass(frozen=True, slots=True)
class Quota:
    """What the last response said is left: `remaining` of `limit` until `reset_at` (clock).

    `window` is the length of the quota's window in seconds as far as known (Zendesk's minute;
    for the other headers the time to the reset when read, which is no longer than it).
    """

    limit: int
    remaining: int
    reset_at: float
    window: float = 0.0


class RateLimiter:
    """Paces requests before the quota runs out and holds them all during a Retry-After."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reserve: float = 0.05,
        wall: Callable[[], float] = time.time,
        min_spacing: float = 0.05,
        rand: Callable[[], float] = random.random,
        budget: SharedBudget | None = None,
    ) -> None:
        if min_spacing <= 0:
            raise ValueError("min_spacing must be positive, or a pause would release a burst")
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._rand = rand
        self.reserve = reserve
        self.min_spacing = min_spacing
        self.quota: Quota | None = None
        self._paused_until = float("-inf")
        self._next_slot = float("-inf")  # the even spread's next send time, below the reserve
        self._next_release = float("-inf")  # the next free slot for requests a pause held
        self.waited_seconds = 0.0  # here and for the shared budget (for /metrics)
        self.budget = budget

    async def wait(self) -> None:
        """Returns when one more request may be sent."""
        await self._wait_here()
        if self.budget is not None:
            started = self._clock()
            await self.budget.acquire()
            self.waited_seconds += self._clock() - started

    async def _wait_here(self) -> None:
        first = True
        while True:
            now = self._clock()
            delay = self._take_slot(now, spend=first)
            if delay <= 0:
                return
            await self._sleep_counted(delay)
            if self._paused_until <= self._clock():
                return
            first = False  # a longer pause (a new 429) came meanwhile: queue again behind it

    def update(self, headers: Mapping[str, str]) -> None:
        """Takes the quota from a response's headers; responses without them change nothing."""
        now = self._clock()
        lowered = {key.lower(): value for key, value in headers.items()}
        quotas = [q for q in self._read_all(lowered, now) if q is not None]
        if quotas:
            self.quota = min(quotas, key=lambda q: q.remaining / max(q.limit, 1))

    def pause_until(self, when: float) -> None:
        """Holds every request until `when` (on this limiter's clock); never shortens a pause."""
        self._paused_until = max(self._paused_until, when)

    def pause_for(self, seconds: float) -> None:
        """`pause_until` measured from now, so callers need not share this limiter's clock.

        This is the API's own word (a Retry-After), so a shared budget passes it on to every
        process; a pause this limiter infers from a spent quota's guessed reset stays here."""
        if self.budget is not None:
            self.budget.pause_for(seconds)
        self.pause_until(self._clock() + max(0.0, seconds))

    async def _sleep_counted(self, seconds: float) -> None:
        self.waited_seconds += seconds
        await self._sleep(seconds)

    def _take_slot(self, now: float, *, spend: bool) -> float:
        """Reserves a send time for one request and returns how long to wait for it.

        `spend` counts the request against the quota: once per request, not per re-queue.
        """
        quota = self.quota
        if quota is not None and quota.reset_at <= now:
            quota = self.quota = None  # the window has reset: nothing known until the next response
        if quota is not None and spend:
            self.quota = Quota(quota.limit, quota.remaining - 1, quota.reset_at, quota.window)
            if quota.remaining <= 0:
                self.pause_until(quota.reset_at)  # spent: hold everything until the reset
        if self._paused_until > now or self._next_release > now:
            return self._take_release(now)
        if quota is None or self.budget is not None or quota.remaining >= self.reserve * quota.limit:
            self._next_slot = now
            return 0.0
        slot = max(self._next_slot, now)
        self._next_slot = slot + max(quota.reset_at - slot, 0.0) / quota.remaining
        return slot - now

    def _take_release(self, now: float) -> float:
        """The next free slot after a pause: one spacing after the previous one, plus jitter.

        The jitter goes on top of the slot, never before it, so no request leaves before the
        pause ends; each slot follows the previous one by at least a spacing, so they are
        distinct and in order whatever the random draws.
        """
        spacing = self._spacing()
        release = max(self._paused_until, self._next_release, now) + self._rand() * spacing
        self._next_release = release + spacing
        return release - now

    def _spacing(self) -> float:
        quota = self.quota
        even = quota.window / quota.limit if quota is not None and quota.limit > 0 else 0.0
        return max(self.min_spacing, even)

    def _read_all(self, headers: Mapping[str, str], now: float) -> list[Quota | None]:
        zendesk_reset = now + _ZENDESK_WINDOW
        return [
            self._read(headers, "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", now),
            self._read(
                headers, "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", now
            ),
            _quota(
                headers.get("x-rate-limit"), headers.get("x-rate-limit-remaining"), zendesk_reset,
                _ZENDESK_WINDOW,
            ),
        ]

    def _read(
        self, headers: Mapping[str, str], limit: str, remaining: str, reset: str, now: float
    ) -> Quota | None:
        reset_in = self._reset_in(headers.get(reset))
        if reset_in is None:
            return None
        return _quota(headers.get(limit), headers.get(remaining), now + reset_in, reset_in)

    def _reset_in(self, value: str | None) -> float | None:
        """Seconds until the window resets, whether the header gave an epoch or a delta."""
        number = _number(value)
        if number is None:
            return None
        if number > _EPOCH_MS:
            number = number / 1000.0 - self._wall()
        elif number > _EPOCH_S:
            number = number - self._wall()
        return min(max(number, 0.0), _MAX_RESET)


def _quota(
    limit: str | None, remaining: str | None, reset_at: float, window: float
) -> Quota | None:
    lim, rem = _number(limit), _number(remaining)
    if lim is None or rem is None or lim <= 0:
        return None
    return Quota(int(lim), max(int(rem), 0), reset_at, window)


def _number(value: str | None) -> float | None:
    """The first of possibly comma-separated numbers ("9990, 9990" → 9990.0)."""
    if value is None:
        return None
    try:
        return float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
