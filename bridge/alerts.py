"""The alert sender: the messages bridge POSTs to BRIDGE_ALERT_WEBHOOK_URL, and their delivery.

What to say and when is decided in `alert_watch.py`; the message is queued in Postgres
(`store/alerts.py`) in the same transaction as the state change it reports. This module
turns a queued message into an HTTP POST. Invariants:
- The body works as a Slack incoming webhook (`text`) and carries the structured fields
  (`event`, `severity`, `mapping`, `occurred_at`, `alert_id`, `details`) for anything else.
- Delivery runs in its own task, never in a run: a receiver that is down or hangs costs
  retries, with doubling backoff up to `max_attempts`, and nothing else (each attempt is
  bounded by `timeout_seconds`).
- Every attempt of one alert carries the same `X-Bridge-Alert-Id`, so a receiver can drop
  the rare repeat (a replica that died after the POST and before recording it).
- Signed when a secret is set: `X-Bridge-Signature: sha256=<hex HMAC-SHA256 of
  "<X-Bridge-Timestamp>.<body>">`.
- Neither the URL (a Slack webhook URL is a credential) nor the secret is ever logged; an
  attempt's failure is logged as its status or the exception's type only.
This is the boundary for aiohttp errors of alert delivery (the API clients have theirs in
`http/transport.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from bridge.errors import BridgeError
from bridge.logs import get_logger
from bridge.store import alerts as store_alerts
from bridge.store.pool import DRIVER_ERRORS

log = get_logger(__name__)

BATCH = 20
RETRY_MAX_SECONDS = 600.0
KEEP_SECONDS = 7 * 86400.0  # delivered or abandoned messages are kept this long for inspection


@dataclass(frozen=True, slots=True)
class AlertConfig:
    url: str
    secret: str | None = None
    lag_seconds: float = 3600.0
    check_seconds: float = 30.0
    retry_seconds: float = 10.0
    max_attempts: int = 10
    timeout_seconds: float = 10.0

    def __repr__(self) -> str:  # the URL and the secret are credentials
        return f"AlertConfig(check_seconds={self.check_seconds}, lag_seconds={self.lag_seconds})"


@dataclass(frozen=True, slots=True)
class Message:
    """One alert, before it is queued: what happened to which mapping."""

    mapping: str
    event: str  # mapping_failing, mapping_recovered, dead_letters, lagging, lag_recovered, ...
    severity: str  # critical, warning or resolved
    text: str
    details: dict[str, Any]


_ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "resolved": ":white_check_mark:"}


def body_of(message: Message, occurred_at: datetime) -> dict[str, Any]:
    """The JSON body as queued; `alert_id` is added when it is sent."""
    return {
        "text": f"{_ICONS.get(message.severity, '')} bridge: {message.text}".strip(),
        "event": message.event,
        "severity": message.severity,
        "mapping": message.mapping,
        "occurred_at": occurred_at.isoformat(),
        "details": message.details,
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Bridge-Signature value of `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def retry_delay(attempts: int, first: float, cap: float = RETRY_MAX_SECONDS) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
    return float(min(first * 2 ** (attempts - 1), cap))


class AlertSender:
    """Delivers the queued alerts of every replica; at most one replica sends each one."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        config: AlertConfig,
        *,
        observe: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool, self.config = pool, config
        self._observe = observe or (lambda outcome: None)
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Sends what is due, every `check_seconds` or when woken, until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wake.clear()
                try:
                    await self.send_due(session)
                except (BridgeError, *DRIVER_ERRORS) as exc:
                    log.warning("alert_send_failed", error=str(exc))
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.check_seconds)
                except TimeoutError:
                    pass

    async def send_due(self, session: aiohttp.ClientSession) -> int:
        """Claims the due alerts and sends each once; returns how many were delivered."""
        claim_for = self.config.timeout_seconds * 3 + 30
        async with self.pool.acquire() as conn:
            due = await store_alerts.claim(conn, BATCH, claim_for)
            if not due:
                await store_alerts.prune(conn, KEEP_SECONDS)
        sent = 0
        for alert in due:
            error = await self._post(session, alert)
            async with self.pool.acquire() as conn:
                if error is None:
                    await store_alerts.delivered(conn, alert.id)
                    sent += 1
                else:
                    await self._failed(conn, alert, error)
        return sent

    async def _post(self, session: aiohttp.ClientSession, alert: store_alerts.Outgoing) -> str | None:
        """One attempt; None when the receiver took it, else why not (no URL, no secret)."""
        raw = json.dumps({**alert.body, "alert_id": alert.id}, separators=(",", ":")).encode()
        stamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json", "User-Agent": "bridge-alerts",
            "X-Bridge-Alert-Id": str(alert.id), "X-Bridge-Event": alert.event, "X-Bridge-Timestamp": stamp,
        }  # fmt: skip
        if self.config.secret:
            headers["X-Bridge-Signature"] = signature(self.config.secret, stamp, raw)
        try:
            async with session.post(self.config.url, data=raw, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    log.info("alert_delivered", alert_id=alert.id, alert_event=alert.event,
                             mapping=alert.mapping, attempt=alert.attempts)  # fmt: skip
                    self._observe("delivered")
                    return None
                return f"the receiver answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"the receiver could not be reached ({type(exc).__name__})"

    async def _failed(self, conn: Any, alert: store_alerts.Outgoing, error: str) -> None:
        give_up = alert.attempts >= self.config.max_attempts
        delay = retry_delay(alert.attempts, self.config.retry_seconds)
        await store_alerts.failed(conn, alert.id, error, delay, give_up=give_up)
        if give_up:
            self._observe("dropped")
            log.error("alert_dropped", alert_id=alert.id, alert_event=alert.event, mapping=alert.mapping,
                      attempts=alert.attempts, error=error)  # fmt: skip
        else:
            self._observe("failed")
            log.warning("alert_delivery_failed", alert_id=alert.id, alert_event=alert.event,
                        mapping=alert.mapping, attempt=alert.attempts, error=error,
                        retry_in_seconds=round(delay, 1))  # fmt: skip
