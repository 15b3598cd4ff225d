"""Fault injection shared by both simulators: latency, error statuses, drops, bad bodies.

Tests and benchmarks use it to prove that clients survive what real APIs do under load.
Invariants: rules are matched in the order they were added and the first rule that fires
wins; a rule that fires is consumed once (`times=-1` never runs out). A rule with `every=N`
is a pattern rather than a queue: it counts every request it matches (whether or not an
earlier rule took it) and fires on the `offset`-th, then every N-th after (offset defaults
to N), so "a 429 on every 5th request and a 5xx on every 9th" is two rules that stay
deterministic however the requests interleave. The per-API base latency applies to every
request, before any rule. A "timeout" waits on the stop event so that stopping the sandbox
never hangs on a sleeping handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Api = Literal["outreach", "zendesk"]
Kind = Literal["latency", "status", "drop", "malformed", "timeout"]
KINDS: tuple[str, ...] = ("latency", "status", "drop", "malformed", "timeout")
APIS: tuple[str, ...] = ("outreach", "zendesk")
DEFAULT_TIMEOUT_DELAY = 30.0
DROPPED = 599  # status recorded for a dropped connection; no response is actually sent


@dataclass(slots=True)
class FaultRule:
    """One injected fault; `times` counts down as requests consume it (-1: forever).

    With `every` > 0 it fires only on the matching requests numbered `offset`, `offset +
    every`, ... (counting from 1; `offset` 0 means `every`); `seen` is that count so far.
    """

    api: str
    kind: str
    times: int = 1
    path_contains: str = ""
    method: str | None = None
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    every: int = 0
    offset: int = 0
    seen: int = 0

    def matches(self, api: str, method: str, path: str) -> bool:
        if self.api != api or self.times == 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains in path

    def fires(self) -> bool:
        """Counts one matching request; True when this one is in the rule's pattern."""
        if self.every <= 0:
            return True
        self.seen += 1
        first = self.offset or self.every
        return self.seen >= first and (self.seen - first) % self.every == 0


@dataclass(slots=True)
class Faults:
    """The fault controls; `apply` is called by the server middleware for each request."""

    rules: list[FaultRule] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def add(
        self,
        api: Api | str,
        kind: Kind | str,
        *,
        times: int | None = None,
        path_contains: str = "",
        method: str | None = None,
        status: int = 500,
        retry_after: float | None = None,
        delay: float = 0.0,
        every: int = 0,
        offset: int = 0,
    ) -> FaultRule:
        """Queue a fault for the next matching requests of `api` (with `every`: for every
        `every`-th of them, from the `offset`-th). `times` defaults to 1, or to -1 (forever)
        for a pattern."""
        if api not in APIS:
            raise ValueError(f"unknown api {api!r}; expected one of {', '.join(APIS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        if every < 0 or offset < 0:
            raise ValueError(f"every ({every}) and offset ({offset}) must not be negative")
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after ({retry_after}) must not be negative")
        if kind == "timeout" and delay <= 0:
            delay = DEFAULT_TIMEOUT_DELAY
        if times is None:
            times = -1 if every > 0 else 1
        rule = FaultRule(api, kind, times, path_contains, method, status, retry_after, delay, every, offset)
        self.rules.append(rule)
        return rule

    def add_from_json(self, data: dict[str, object]) -> FaultRule:
        """Build a rule from the control surface's JSON body (same names as `add`)."""
        ints = {"times", "status", "every", "offset"}
        floats = {"retry_after", "delay"}
        texts = {"path_contains", "method"}
        unknown = set(data) - ints - floats - texts - {"api", "kind"}
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in ints:
                extra[key] = _number(key, value, int)
            elif key in floats:
                extra[key] = None if value is None else _number(key, value, float)
            elif key in texts:
                extra[key] = None if value is None else str(value)
        return self.add(str(data["api"]), str(data["kind"]), **extra)

    def set_latency(self, api: Api | str, seconds: float) -> None:
        """Delay every request of `api` by `seconds` (0 turns it off)."""
        self.latency[api] = seconds

    def clear(self) -> None:
        """Forget every rule and every base latency."""
        self.rules.clear()
        self.latency.clear()

    def take(self, api: str, method: str, path: str) -> FaultRule | None:
        """The first rule that fires for this request, consumed once; None when none does.

        Every pattern rule that matches counts the request, even after another rule fired,
        so each pattern keeps its own rhythm."""
        chosen: FaultRule | None = None
        for rule in self.rules:
            if rule.matches(api, method, path) and rule.fires() and chosen is None:
                chosen = rule
        if chosen is not None and chosen.times > 0:
            chosen.times -= 1
        return chosen

    async def wait(self, seconds: float) -> None:
        """Sleep `seconds`, cut short when the sandbox stops."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


def _number(key: str, value: object, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number, not {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{key} must be a number, not {value!r}") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def apply(faults: Faults, api: str, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run `handler` under the faults configured for `api`."""
    await faults.wait(faults.latency.get(api, 0.0))
    rule = faults.take(api, request.method, request.path_qs)
    if rule is None:
        return await handler(request)
    if rule.kind == "latency":
        await faults.wait(rule.delay)
        return await handler(request)
    if rule.kind == "timeout":
        await faults.wait(rule.delay)
        return await handler(request)
    if rule.kind == "status":
        return _status_response(rule)
    if rule.kind == "drop":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=DROPPED)  # never reaches the client: the socket is closed
    return _malformed_response()


def _status_response(rule: FaultRule) -> web.Response:
    headers: dict[str, str] = {}
    if rule.retry_after is not None:
        headers["Retry-After"] = _seconds_text(rule.retry_after)
    elif rule.status == 429:
        headers["Retry-After"] = "1"
    body = {"errors": [{"id": "injectedFault", "title": "Injected fault", "detail": f"sandbox fault {rule.status}"}]}
    return web.json_response(body, status=rule.status, headers=headers)


def _malformed_response() -> web.Response:
    text = json.dumps({"data": [{"type": "broken", "id": 1, "attributes": {"x": "y"}}]})
    return web.Response(text=text[: len(text) // 2], status=200, content_type="application/json")


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
