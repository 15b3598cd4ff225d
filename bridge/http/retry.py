"""When to try a failed request again, and how long to wait first.

`RetryPolicy` answers two questions. After attempt N failed with this transient error (5xx,
408, timeout, dropped connection), wait how long, or give up? And after a 429, wait how long?
A 429 is flow control, not a failure: the server is fine and says when to come back, so it
spends no attempt; the transport's per-request deadline is what bounds those waits. Backoff is
exponential with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"), so that
many workers failing together do not retry together.

Invariants: never more than `max_attempts` failed attempts; never a delay shorter than the
server's `Retry-After`. `parse_retry_after` reads the three forms the APIs send: seconds, an
HTTP date, and an ISO timestamp (Outreach's 503 `scheduledServerMaintenance`, api/outreach.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bridge.errors import TransientApiError


class RetryPolicy:
    """(attempt, error) → seconds to wait, or None to give up and re-raise."""

    def __init__(
        self,
        max_attempts: int = 6,
        base: float = 0.5,
        cap: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base = base
        self.cap = cap
        self._rand = rand

    def delay(self, attempt: int, error: TransientApiError) -> float | None:
        """Delay before attempt `attempt + 1`; `attempt` counts from 1 (the first send)."""
        if attempt >= self.max_attempts:
            return None
        backoff = self._backoff(attempt)
        if error.retry_after is not None:
            return max(error.retry_after, backoff)
        return backoff

    def is_flow_control(self, error: TransientApiError) -> bool:
        """True for a 429: the server asks for patience, it did not fail."""
        return error.status == 429

    def pause(self, waits: int, error: TransientApiError) -> float:
        """Delay before resending after the `waits`-th flow-control answer in a row (from 1).

        The server's Retry-After when it gave one (exactly: the rate limiter spaces and jitters
        the requests it releases), else the same backoff as a failure. A Retry-After of zero
        (or a moment already past) gets the backoff too, so a server that keeps saying "now"
        is not hammered until the deadline.
        """
        if error.retry_after:
            return error.retry_after
        return self._backoff(waits)

    def _backoff(self, n: int) -> float:
        return self._rand() * min(self.cap, self.base * 2.0 ** (n - 1))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from `now` (epoch seconds); None when absent or unreadable.

    A moment already past gives 0.0: the server asked for a wait, just not a long one.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    when = _parse_moment(text)
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def _parse_moment(text: str) -> datetime | None:
    """An HTTP date (RFC 9110) or an ISO 8601 timestamp, as an aware datetime."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
