"""What the alerts say and when: each mapping's state, watched from Postgres by every replica.

Every `check_seconds` a replica reads, per mapping, its latest sync run, its lag and its
newest dead letter, and swaps each condition's state in `alert_state`. A message is queued
only when the state changes, in the same transaction and under the row's lock
(`store/alerts.py`), so a change makes one message whichever replica sees it first, and a
mapping that keeps failing run after run makes none after the first. Conditions:
- `failing`: the latest sync run failed (critical), or succeeded again (resolved). A run that
  is still going or was interrupted, or a dry run, changes nothing.
- `dead_letters`: a dead letter newer than any alerted on arrived (warning). Letters that
  leave the table change the mark silently.
- `lag`: seconds since the last successful run passed `lag_seconds` (warning), or came back
  under it (resolved). A mapping that never succeeded has no lag yet.
- `webhooks` (under the mapping name `*`: webhooks are per Outreach resource, not per
  mapping): some of bridge's Outreach webhooks are disabled (critical), or none is any more
  (resolved), as the worker's webhook check last counted them (`webhooks_disabled`).
- events without a state: a lease taken over from a holder that stopped renewing (only the
  replica whose acquire won sees it, so it is queued once).
A state never seen before counts as healthy: the first look at a healthy mapping says nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bridge.alerts import AlertConfig, AlertSender, Message, body_of
from bridge.errors import BridgeError
from bridge.logs import get_logger
from bridge.redact import redact_text
from bridge.store import alerts as store_alerts
from bridge.store import runs
from bridge.store.pool import DRIVER_ERRORS, Connection

log = get_logger(__name__)

NO_DEAD_LETTERS = "none"
ALL_MAPPINGS = "*"  # the mapping name of alerts about bridge as a whole


@dataclass(frozen=True, slots=True)
class Observation:
    """One condition of one mapping as seen now, and the message its change would send."""

    mapping: str
    condition: str
    state: str
    details: dict[str, Any]


def observe(
    names: list[str],
    latest: dict[str, runs.RunRow],
    succeeded: dict[str, datetime],
    dead: dict[str, store_alerts.DeadLetterMark],
    lag_seconds: float,
    now: datetime,
) -> list[Observation]:
    """Every condition of every mapping that can be judged now."""
    found: list[Observation] = []
    for name in names:
        run = latest.get(name)
        if run is not None and run.kind != "dry_run" and run.status in ("failed", "succeeded", "partial"):
            state = "failing" if run.status == "failed" else "ok"
            error = redact_text(run.error or "")[:500]
            found.append(Observation(name, "failing", state, {"run_id": run.id, "run_status": run.status,
                                                              "error": error, "actor": run.actor}))  # fmt: skip
        mark = dead.get(name)
        found.append(Observation(
            name, "dead_letters", mark.newest.isoformat() if mark else NO_DEAD_LETTERS,
            {"dead_letters": mark.count if mark else 0},
        ))  # fmt: skip
        if (at := succeeded.get(name)) is not None:
            lag = max(0.0, (now - at).total_seconds())
            state = "lagging" if lag > lag_seconds else "ok"
            found.append(Observation(name, "lag", state, {"lag_seconds": round(lag), "threshold_seconds": lag_seconds}))
    return found


def message_for(seen: Observation, previous: str | None) -> Message | None:
    """What to say about a change from `previous` (None: never observed) to `seen.state`."""
    name, details = seen.mapping, seen.details
    if seen.condition == "failing":
        if seen.state == "failing":
            return Message(name, "mapping_failing", "critical",
                           f"mapping '{name}' is failing: {details['error'] or 'its last run failed'}", details)
        if previous == "failing":
            return Message(name, "mapping_recovered", "resolved",
                           f"mapping '{name}' recovered: its last run {details['run_status']}", details)
        return None
    if seen.condition == "dead_letters":
        if seen.state == NO_DEAD_LETTERS:
            return None
        if previous not in (None, NO_DEAD_LETTERS) and datetime.fromisoformat(previous) >= datetime.fromisoformat(
            seen.state
        ):
            return None
        return Message(name, "dead_letters", "warning",
                       f"mapping '{name}' has new dead letters ({details['dead_letters']} waiting); "
                       f"see `bridge dead-letters list --mapping {name}`", details)  # fmt: skip
    if seen.condition == "lag":
        if seen.state == "lagging":
            return Message(name, "lagging", "warning",
                           f"mapping '{name}' is {details['lag_seconds']} s behind (alert at "
                           f"{details['threshold_seconds']:.0f} s)", details)  # fmt: skip
        if previous == "lagging":
            return Message(name, "lag_recovered", "resolved",
                           f"mapping '{name}' caught up: {details['lag_seconds']} s behind", details)
        return None
    if seen.condition == "webhooks":
        if seen.state == "disabled":
            return Message(name, "webhook_disabled", "critical",
                           f"{details['disabled_webhooks']} of bridge's Outreach webhooks are disabled: changes "
                           "reach Zendesk only on the schedules until you run `bridge webhooks ensure`",
                           details)  # fmt: skip
        if previous == "disabled":
            return Message(name, "webhook_enabled", "resolved", "bridge's Outreach webhooks are all enabled again",
                           details)  # fmt: skip
    return None


class AlertWatch:
    """The alerts of one replica: the watch over the mappings' states, and the sender."""

    def __init__(self, pool: asyncpg.Pool[Any], names: list[str], config: AlertConfig, sender: AlertSender) -> None:
        self.pool, self.names, self.config, self.sender = pool, names, config, sender
        self._events: list[Message] = []
        self._webhooks_disabled: int | None = None  # None: not counted yet (or no webhooks)
        self._wake = asyncio.Event()

    def lease_taken_over(self, mapping: str, previous: str, holder: str) -> None:
        """LeaseKeeper hook: called by the one replica whose acquire took the lease."""
        self._events.append(Message(
            mapping, "lease_taken_over", "warning",
            f"{holder} took over mapping '{mapping}' from {previous}, which stopped renewing its "
            "lease (it died, froze or lost the database)",
            {"holder": holder, "previous_holder": previous},
        ))  # fmt: skip
        self._wake.set()

    def webhooks_disabled(self, count: int) -> None:
        """The worker's webhook check: how many of bridge's Outreach webhooks are disabled now."""
        self._webhooks_disabled = count
        self._wake.set()

    async def check_once(self) -> int:
        """One look at every mapping; returns how many messages this replica queued."""
        queued = 0
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            while self._events:  # taken off only once queued: a database outage loses none
                message = self._events[0]
                await store_alerts.enqueue(conn, message.mapping, message.event, body_of(message, now))
                self._events.pop(0)
                queued += 1
            latest = {row.mapping: row for row in await runs.latest_syncs(conn)}
            seen = observe(self.names, latest, await runs.last_succeeded(conn),
                           await store_alerts.dead_letter_marks(conn), self.config.lag_seconds, now)  # fmt: skip
            if (count := self._webhooks_disabled) is not None:
                seen.append(Observation(ALL_MAPPINGS, "webhooks", "disabled" if count else "enabled",
                                        {"disabled_webhooks": count}))  # fmt: skip
            for one in seen:
                queued += await self._swap(conn, one, now)
        if queued:
            self.sender.wake()
        return queued

    async def _swap(self, conn: Connection, seen: Observation, now: datetime) -> int:
        async with conn.transaction():
            changed, previous = await store_alerts.swap_state(conn, seen.mapping, seen.condition, seen.state)
            message = message_for(seen, previous) if changed else None
            if message is None:
                return 0
            alert_id = await store_alerts.enqueue(conn, seen.mapping, message.event, body_of(message, now))
        log.info("alert_queued", alert_id=alert_id, alert_event=message.event, mapping=seen.mapping)
        return 1

    async def run(self) -> None:
        """Watches every `check_seconds` (sooner after a takeover or a webhook count) until
        cancelled; never raises
        for the database: a look that fails is logged and tried again next tick."""
        while True:
            self._wake.clear()
            try:
                await self.check_once()
            except (BridgeError, *DRIVER_ERRORS) as exc:
                log.warning("alert_check_failed", error=str(exc))
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.check_seconds)
            except TimeoutError:
                pass
