"""The webhook inbox: deliveries kept in Postgres from before their 2xx until handled.

Storing first is what makes a best-effort sender safe: Outreach never retries, so a delivery
the process accepted must survive a crash between the answer and the sync it triggers. Rows
are claimed with `FOR UPDATE SKIP LOCKED`, so replicas drain one inbox without handing one
delivery to two consumers; a claim is a lease on the row (`next_attempt_at` moves past the
claim's end), so a consumer that dies mid-way gives its rows back when the claim runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.redact import redact_text
from bridge.store.pool import Connection, translated

ADD_SQL = """
INSERT INTO webhook_inbox (digest, resource, action, source_id, event_name, changed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (digest) DO NOTHING
RETURNING id
"""
CLAIM_SQL = """
WITH due AS (
    SELECT id FROM webhook_inbox
    WHERE handled_at IS NULL AND resource = ANY($1::text[]) AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_inbox i
   SET next_attempt_at = now() + make_interval(secs => $3)
  FROM due WHERE i.id = due.id
RETURNING i.id, i.resource, i.action, i.source_id, i.changed_at, i.received_at, i.attempts
"""
HANDLED_SQL = "UPDATE webhook_inbox SET handled_at = now(), error = NULL WHERE id = ANY($1::bigint[])"
FAILED_SQL = """
UPDATE webhook_inbox
   SET error = $2, attempts = attempts + 1,
       next_attempt_at = now() + make_interval(secs => least($3 * power(2, attempts), $4))
 WHERE id = ANY($1::bigint[])
"""
RELEASE_SQL = """
UPDATE webhook_inbox SET next_attempt_at = now() + make_interval(secs => $2)
WHERE id = ANY($1::bigint[])
"""
PRUNE_SQL = "DELETE FROM webhook_inbox WHERE handled_at < now() - make_interval(secs => $1)"
PENDING_SQL = """
SELECT resource, count(*) AS n, min(received_at) AS oldest FROM webhook_inbox
WHERE handled_at IS NULL GROUP BY resource ORDER BY resource
"""
LAST_SQL = "SELECT resource, max(received_at) AS at FROM webhook_inbox GROUP BY resource"
UNREAD_SQL = """
UPDATE webhook_inbox SET handled_at = now(), error = 'no mapping reads this resource'
WHERE handled_at IS NULL AND NOT (resource = ANY($1::text[]))
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted delivery, as the intake read it."""

    digest: bytes
    resource: str
    action: str
    source_id: str
    event_name: str
    changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    resource: str
    action: str
    source_id: str
    changed_at: datetime | None
    received_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class Pending:
    resource: str
    count: int
    oldest: datetime


async def add(conn: Connection, delivery: Delivery) -> bool:
    """Stores a delivery; False when the very same body was stored before."""
    with translated("store a webhook delivery"):
        row = await conn.fetchval(
            ADD_SQL, delivery.digest, delivery.resource, delivery.action, delivery.source_id,
            delivery.event_name, delivery.changed_at,
        )  # fmt: skip
    return row is not None


async def claim(
    conn: Connection, resources: Sequence[str], limit: int, hold: timedelta
) -> list[InboxRow]:
    """Due deliveries for `resources`, held from other consumers for `hold`."""
    with translated("claim webhook deliveries"):
        rows = await conn.fetch(CLAIM_SQL, list(resources), limit, hold.total_seconds())
    return [InboxRow(**dict(row)) for row in rows]


async def handled(conn: Connection, ids: Sequence[int]) -> None:
    with translated("mark webhook deliveries handled"):
        await conn.execute(HANDLED_SQL, list(ids))


async def failed(
    conn: Connection, ids: Sequence[int], error: str, backoff: timedelta, backoff_max: timedelta
) -> None:
    """Keeps the deliveries with their (redacted) error, due again after a growing backoff."""
    with translated("record a failed webhook delivery"):
        await conn.execute(
            FAILED_SQL, list(ids), redact_text(error)[:2000], backoff.total_seconds(),
            backoff_max.total_seconds(),
        )  # fmt: skip


async def release(conn: Connection, ids: Sequence[int], after: timedelta) -> None:
    """Hands claimed deliveries back, due again `after` (no attempt spent: nothing was tried)."""
    with translated("release webhook deliveries"):
        await conn.execute(RELEASE_SQL, list(ids), after.total_seconds())


async def prune(conn: Connection, retention: timedelta) -> int:
    """Deletes handled deliveries older than `retention`; returns how many."""
    with translated("prune the webhook inbox"):
        status = await conn.execute(PRUNE_SQL, retention.total_seconds())
    return int(status.split()[-1])


async def pending(conn: Connection) -> list[Pending]:
    with translated("read the webhook inbox"):
        rows = await conn.fetch(PENDING_SQL)
    return [Pending(row["resource"], int(row["n"]), row["oldest"]) for row in rows]


async def last_received(conn: Connection) -> dict[str, datetime]:
    """Per resource, when its latest delivery was stored (handled or not, until pruned)."""
    with translated("read the webhook inbox"):
        rows = await conn.fetch(LAST_SQL)
    return {row["resource"]: row["at"] for row in rows}


async def drop_unread(conn: Connection, resources: Sequence[str]) -> int:
    """Settles deliveries of resources no mapping reads (a webhook left from an old mapping),
    so they are pruned instead of waiting for ever; returns how many."""
    with translated("settle unread webhook deliveries"):
        status = await conn.execute(UNREAD_SQL, list(resources))
    return int(status.split()[-1])
