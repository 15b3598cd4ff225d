"""Client-side pacing from the APIs' rate-limit headers, shared by every request of one API.

Both APIs limit the whole account, not a connection (api/outreach.md and api/zendesk.md, "Rate
limits"), so one `RateLimiter` is shared by every request to one API. It keeps two invariants:

- after `pause_until(t)` (a 429's Retry-After) no request passes `wait()` before `t`;
- once the remaining quota drops below `reserve * limit`, requests are spread evenly over the
  time left until the reset, so the quota is not spent before the window ends. Waiting is
  always a sleep for a computed time, never a poll.

Headers read: Outreach `X-RateLimit-Limit/Remaining/Reset` (Remaining may be "a,b": the first
counts; Reset is epoch seconds or seconds-until), Zendesk `X-Rate-Limit` and
`X-Rate-Limit-Remaining` (per minute, no reset given) and the IETF `ratelimit-limit/remaining/
reset` (seconds-until). When several are present the tightest wins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

_EPOCH_MS = 1e12  # a Reset above this is epoch milliseconds
_EPOCH_S = 1e9  # a Reset above this (and below the above) is epoch seconds
_MAX_RESET = 3600.0  # Outreach's window is an hour; a longer wait is a misread header
_ZENDESK_WINDOW = 60.0  # X-Rate-Limit is per minute and carries no reset


@dataclass(frozen=True, slots=True)
class Quota:
    """What the last response said is left: `remaining` of `limit` until `reset_at` (clock)."""

    limit: int
    remaining: int
    reset_at: float


class RateLimiter:
    """Paces requests before the quota runs out and holds them all during a Retry-After."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reserve: float = 0.05,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self.reserve = reserve
        self.quota: Quota | None = None
        self._paused_until = float("-inf")
        self._next_slot = float("-inf")
        self.waited_seconds = 0.0

    async def wait(self) -> None:
        """Returns when one more request may be sent."""
        await self._wait_out_pause()
        delay = self._take_slot(self._clock())
        if delay > 0:
            await self._sleep_counted(delay)
            await self._wait_out_pause()  # a 429 may have arrived meanwhile

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
        """`pause_until` measured from now, so callers need not share this limiter's clock."""
        self.pause_until(self._clock() + max(0.0, seconds))

    async def _wait_out_pause(self) -> None:
        while (left := self._paused_until - self._clock()) > 0:
            await self._sleep_counted(left)

    async def _sleep_counted(self, seconds: float) -> None:
        self.waited_seconds += seconds
        await self._sleep(seconds)

    def _take_slot(self, now: float) -> float:
        """Reserves a send time for one request and returns how long to wait for it."""
        quota = self.quota
        if quota is None or quota.reset_at <= now:
            self.quota = None  # the window has reset: nothing known until the next response
            self._next_slot = now
            return 0.0
        self.quota = Quota(quota.limit, quota.remaining - 1, quota.reset_at)
        if quota.remaining >= self.reserve * quota.limit and quota.remaining > 0:
            self._next_slot = now
            return 0.0
        if quota.remaining <= 0:
            slot = max(self._next_slot, quota.reset_at)
        else:
            slot = max(self._next_slot, now)
            self._next_slot = slot + max(quota.reset_at - slot, 0.0) / quota.remaining
        return slot - now

    def _read_all(self, headers: Mapping[str, str], now: float) -> list[Quota | None]:
        zendesk_reset = now + _ZENDESK_WINDOW
        return [
            self._read(headers, "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", now),
            self._read(
                headers, "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", now
            ),
            _quota(headers.get("x-rate-limit"), headers.get("x-rate-limit-remaining"), zendesk_reset),
        ]

    def _read(
        self, headers: Mapping[str, str], limit: str, remaining: str, reset: str, now: float
    ) -> Quota | None:
        reset_in = self._reset_in(headers.get(reset))
        if reset_in is None:
            return None
        return _quota(headers.get(limit), headers.get(remaining), now + reset_in)

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


def _quota(limit: str | None, remaining: str | None, reset_at: float) -> Quota | None:
    lim, rem = _number(limit), _number(remaining)
    if lim is None or rem is None or lim <= 0:
        return None
    return Quota(int(lim), max(int(rem), 0), reset_at)


def _number(value: str | None) -> float | None:
    """The first of possibly comma-separated numbers ("9990, 9990" → 9990.0)."""
    if value is None:
        return None
    try:
        return float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
