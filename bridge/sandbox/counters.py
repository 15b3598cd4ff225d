"""Request counters shared by both simulators, so tests and benchmarks can assert on traffic.

Every request the sandbox serves is counted once, by API, method, route name and final
status (0 for a dropped connection), and appended to a request log with its monotonic
time and the Retry-After it carried, so a test can prove that no request came before a
Retry-After had passed. Control-surface requests (`/_sandbox/...`) are not counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One served request."""

    at: float  # monotonic seconds when the response was sent
    api: str
    method: str
    route: str
    path: str
    status: int
    retry_after: float | None


@dataclass(slots=True)
class Counters:
    """Counts and log of served requests; `record` is called by the server middleware."""

    clock: Callable[[], float] = time.monotonic
    log: list[LogEntry] = field(default_factory=list)
    _counts: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)

    def record(self, api: str, method: str, route: str, path: str, status: int, retry_after: float | None) -> None:
        """Count one request and log it."""
        self._counts[(api, method.upper(), route, status)] += 1
        self.log.append(LogEntry(self.clock(), api, method.upper(), route, path, status, retry_after))

    def total(self, api: str) -> int:
        """How many requests `api` served."""
        return self.count(api)

    def count(self, api: str, method: str | None = None, route: str | None = None, status: int | None = None) -> int:
        """How many requests of `api` matched every given criterion."""
        wanted_method = method.upper() if method else None
        return sum(
            n
            for (a, m, r, s), n in self._counts.items()
            if a == api
            and (wanted_method is None or m == wanted_method)
            and (route is None or r == route)
            and (status is None or s == status)
        )

    def entries(self, api: str | None = None) -> list[LogEntry]:
        """The request log, optionally for one API, oldest first."""
        return [e for e in self.log if api is None or e.api == api]

    def reset(self) -> None:
        """Forget every count and log entry."""
        self._counts.clear()
        self.log.clear()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable view for `GET /_sandbox/counters`."""
        by_route: dict[str, dict[str, int]] = {}
        by_status: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for (api, method, route, status), n in self._counts.items():
            key = f"{method} {route}"
            by_route.setdefault(api, {})[key] = by_route.get(api, {}).get(key, 0) + n
            by_status.setdefault(api, {})[str(status)] = by_status.get(api, {}).get(str(status), 0) + n
            totals[api] = totals.get(api, 0) + n
        return {
            "totals": totals,
            "by_route": by_route,
            "by_status": by_status,
            "log": [asdict(e) for e in self.log],
        }
