"""Alert state and the alert outbox (migration 0008): one message per change, across replicas.

Invariants:
- `swap_state` runs inside the caller's transaction and locks the (mapping, condition) row
  first, so replicas that observe the same change are serialised: the first one swaps the
  state and enqueues the message in that same transaction; the others then find the state
  already equal and enqueue nothing.
- A message is delivered by the replica that `claim`s it (`FOR UPDATE SKIP LOCKED`, then a
  claim that expires), so two replicas never send it at the same time; a replica that dies
  mid-delivery leaves it to another once its claim has expired.
- Bodies hold no secrets: they are built from mapping names, counts and redacted errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.store.pool import Connection, translated

ENSURE_SQL = """
INSERT INTO alert_state (mapping, condition, state) VALUES ($1, $2, NULL)
ON CONFLICT (mapping, condition) DO NOTHING
"""
LOCK_SQL = "SELECT state FROM alert_state WHERE mapping = $1 AND condition = $2 FOR UPDATE"
SET_SQL = "UPDATE alert_state SET state = $3, changed_at = now() WHERE mapping = $1 AND condition = $2"
STATES_SQL = "SELECT mapping, condition, state FROM alert_state"
ENQUEUE_SQL = """
INSERT INTO alert_outbox (mapping, event, body) VALUES ($1, $2, $3::jsonb) RETURNING id, created_at
"""
CLAIM_SQL = """
UPDATE alert_outbox SET claimed_until = now() + make_interval(secs => $1), attempts = attempts + 1
WHERE id IN (
    SELECT id FROM alert_outbox
    WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, mapping, event, body, attempts, created_at
"""
DELIVERED_SQL = "UPDATE alert_outbox SET delivered_at = now(), claimed_until = NULL WHERE id = $1"
FAILED_SQL = """
UPDATE alert_outbox
SET claimed_until = NULL, last_error = $2,
    next_attempt_at = now() + make_interval(secs => $3),
    gave_up_at = CASE WHEN $4 THEN now() END
WHERE id = $1
"""
PRUNE_SQL = """
DELETE FROM alert_outbox
WHERE created_at < now() - make_interval(secs => $1) AND (delivered_at IS NOT NULL OR gave_up_at IS NOT NULL)
"""
NEWEST_DEAD_LETTERS_SQL = """
SELECT mapping, max(first_failed_at) AS newest, count(*) AS n FROM dead_letters GROUP BY mapping
"""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message claimed for delivery; `attempts` counts this one."""

    id: int
    mapping: str
    event: str
    body: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetterMark:
    """When the newest dead letter of a mapping arrived, and how many are waiting."""

    newest: datetime
    count: int


async def swap_state(conn: Connection, mapping: str, condition: str, state: str) -> tuple[bool, str | None]:
    """Sets the condition's state; returns (changed, previous). Call inside a transaction:
    the row stays locked until it ends, so enqueue the change's message in the same one."""
    with translated(f"update the alert state of mapping {mapping!r}"):
        await conn.execute(ENSURE_SQL, mapping, condition)
        previous: str | None = await conn.fetchval(LOCK_SQL, mapping, condition)
        if previous == state:
            return False, previous
        await conn.execute(SET_SQL, mapping, condition, state)
    return True, previous


async def states(conn: Connection) -> dict[tuple[str, str], str | None]:
    """Every condition's last state, by (mapping, condition)."""
    with translated("read the alert states"):
        rows = await conn.fetch(STATES_SQL)
    return {(row["mapping"], row["condition"]): row["state"] for row in rows}


async def enqueue(conn: Connection, mapping: str, event: str, body: dict[str, Any]) -> int:
    """Adds a message to the outbox; returns its id (the alert id receivers see)."""
    with translated(f"queue an alert for mapping {mapping!r}"):
        row = await conn.fetchrow(ENQUEUE_SQL, mapping, event, json.dumps(body))
    assert row is not None
    return int(row["id"])


async def claim(conn: Connection, limit: int, claim_seconds: float) -> list[Outgoing]:
    """Takes up to `limit` due messages for this process for `claim_seconds`."""
    with translated("claim alerts to send"):
        rows = await conn.fetch(CLAIM_SQL, claim_seconds, limit)
    return [
        Outgoing(row["id"], row["mapping"], row["event"], json.loads(row["body"]), row["attempts"],
                 row["created_at"])  # fmt: skip
        for row in sorted(rows, key=lambda r: int(r["id"]))
    ]


async def delivered(conn: Connection, alert_id: int) -> None:
    with translated("record an alert as delivered"):
        await conn.execute(DELIVERED_SQL, alert_id)


async def failed(conn: Connection, alert_id: int, error: str, retry_in: float, *, give_up: bool) -> None:
    """Records a failed attempt: due again in `retry_in` seconds, or never (`give_up`)."""
    with translated("record a failed alert delivery"):
        await conn.execute(FAILED_SQL, alert_id, error, retry_in, give_up)


async def prune(conn: Connection, older_than_seconds: float) -> int:
    """Drops delivered or abandoned messages older than that; returns how many."""
    with translated("prune the alert outbox"):
        status = await conn.execute(PRUNE_SQL, older_than_seconds)
    return int(status.split()[-1])


async def dead_letter_marks(conn: Connection) -> dict[str, DeadLetterMark]:
    with translated("read the dead letters for alerts"):
        rows = await conn.fetch(NEWEST_DEAD_LETTERS_SQL)
    return {row["mapping"]: DeadLetterMark(row["newest"], int(row["n"])) for row in rows}
