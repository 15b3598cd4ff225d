"""Request counters shared by both simulators, so tests and benchmarks can assert on traffic.

Every request the sandbox serves is counted once, by API, method, route name and final
status (0 for a dropped connection), and appended to a request log with its arrival and
response times, its connection and the Retry-After it carried. Control-surface requests
(`/_sandbox/...`) are neither counted nor logged.

From the log, `early_requests` proves that clients respect flow control: each 429 with a
Retry-After opens a window on its API, from when the 429 was sent until Retry-After later,
and a request of that API arriving inside a window is early. A request that was already on
its way when the 429 went out cannot have known about it, so arrivals within `grace` seconds
of the 429 are forgiven, except on the 429's own connection: a client sends the next request
on a connection only after reading the previous response, so that one is always early.

The write log keeps every record Zendesk stored (created or updated, by any route or bulk
job) with the fields of that write, so a test can count writes per external id and prove
that nothing was written twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

UNMATCHED = "unmatched"
# Seconds after a 429 during which arrivals on other connections are forgiven: requests the
# client had already sent, delayed by connection set-up and a busy event loop (50 ms was
# measured on a loaded two-core machine).
IN_FLIGHT_GRACE = 0.1


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
    arrived: float = 0.0  # monotonic seconds when the request reached the sandbox
    connection: str = ""  # the client's address and port: one value per connection


@dataclass(frozen=True, slots=True)
class Write:
    """One record stored by the Zendesk simulator."""

    seq: int  # position among every write, from 0
    at: float  # monotonic seconds
    object_key: str
    action: str  # "create" or "update"
    record_id: str
    external_id: str | None
    name: str | None
    fields: dict[str, Any]  # the custom object fields this write sent


@dataclass(frozen=True, slots=True)
class EarlyRequest:
    """A request that arrived inside a Retry-After window of its API."""

    request: LogEntry
    after: LogEntry  # the 429 whose window it fell in

    @property
    def too_early_by(self) -> float:
        assert self.after.retry_after is not None
        return self.after.at + self.after.retry_after - self.request.arrived


@dataclass(slots=True)
class Counters:
    """Counts and log of served requests; `record` is called by the server middleware and
    `record_write` by the Zendesk simulator."""

    clock: Callable[[], float] = time.monotonic
    log: list[LogEntry] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    _counts: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)

    def record(
        self,
        api: str,
        method: str,
        route: str,
        path: str,
        status: int,
        retry_after: float | None,
        *,
        arrived: float | None = None,
        connection: str = "",
    ) -> None:
        """Count one request and log it (`arrived` defaults to now)."""
        now = self.clock()
        self._counts[(api, method.upper(), route, status)] += 1
        self.log.append(LogEntry(now, api, method.upper(), route, path, status, retry_after,
                                 now if arrived is None else arrived, connection))  # fmt: skip

    def record_write(self, object_key: str, action: str, record: dict[str, Any], fields: dict[str, Any]) -> None:
        """Log one stored record: `record` as stored, `fields` as this write sent them."""
        self.writes.append(Write(len(self.writes), self.clock(), object_key, action, str(record["id"]),
                                 record.get("external_id"), record.get("name"), dict(fields)))  # fmt: skip

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

    def early(self, api: str | None = None, *, grace: float = IN_FLIGHT_GRACE) -> list[EarlyRequest]:
        """Requests that arrived inside a Retry-After window of their API (see the module)."""
        found: list[EarlyRequest] = []
        for name in sorted({e.api for e in self.log} if api is None else {api}):
            entries = self.entries(name)
            windows = [e for e in entries if e.status == 429 and e.retry_after]
            for request in entries:
                for limit in windows:
                    assert limit.retry_after is not None
                    if request is limit or not limit.at <= request.arrived < limit.at + limit.retry_after:
                        continue
                    if request.arrived >= limit.at + grace or (request.connection and request.connection == limit.connection):
                        found.append(EarlyRequest(request, limit))
                        break
        return found

    def early_requests(self, api: str | None = None, *, grace: float = IN_FLIGHT_GRACE) -> int:
        """How many requests (of `api`, or of both) arrived inside a Retry-After window."""
        return len(self.early(api, grace=grace))

    def write_counts(self, object_key: str, action: str | None = None) -> Counter[str]:
        """Writes per external id of `object_key` (records without one count under their id)."""
        return Counter(
            w.external_id or w.record_id
            for w in self.writes
            if w.object_key == object_key and (action is None or w.action == action)
        )

    def writes_of(self, object_key: str, external_id: str) -> list[Write]:
        return [w for w in self.writes if w.object_key == object_key and w.external_id == external_id]

    def reset(self) -> None:
        """Forget every count, log entry and write."""
        self._counts.clear()
        self.log.clear()
        self.writes.clear()

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
        writes: dict[str, dict[str, int]] = {}
        for w in self.writes:
            per = writes.setdefault(w.object_key, {"create": 0, "update": 0, "records": 0})
            per[w.action] += 1
        for key in writes:
            writes[key]["records"] = len(self.write_counts(key))
        early = {api: 0 for api in totals}
        details = []
        for item in self.early():
            early[item.request.api] += 1
            details.append({
                "api": item.request.api, "method": item.request.method, "route": item.request.route,
                "path": item.request.path, "after": f"{item.after.method} {item.after.route}",
                "arrived_after_429": round(item.request.arrived - item.after.at, 4),
                "too_early_by": round(item.too_early_by, 4),
                "same_connection": item.request.connection == item.after.connection,
            })  # fmt: skip
        return {
            "totals": totals,
            "by_route": by_route,
            "by_status": by_status,
            "early_requests": early,
            "early": details,
            "writes": writes,
            "log": [asdict(e) for e in self.log],
        }


def busiest_window(times: list[float], window: float) -> int:
    """The most of `times` inside any closed span of `window` seconds: how a rate limit that
    counts a rolling window would see them (used to check a budget from the outside)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most
