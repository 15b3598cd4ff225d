"""The people directory's tables: Zendesk users and organizations, their emails, the cursors.

Invariants:
- a page of the export and the cursor after it are saved in ONE transaction (`save_page`), so
  a first load killed between pages resumes after the last saved page and loses nothing;
- emails are stored lower-cased, every identity of a user, so an email matches whatever case
  Outreach or Zendesk spelled it in and whichever of a user's identities it is;
- a deleted user or organization stays as a row marked `deleted` (the export says so) and is
  never an answer; a later export page that shows it alive again unmarks it.
Answers to `find` are keyed by the lower-cased value for `email` and `name`, as given for
`external_id`; when several match, the lowest Zendesk id wins, so the answer is stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bridge.store.pool import Connection

Kind = Literal["users", "organizations"]
Match = Literal["email", "name", "external_id"]

UPSERT_SQL = """
INSERT INTO directory_people (kind, id, external_id, email, name, deleted, updated_at)
SELECT $1, e.id, e.external_id, e.email, e.name, e.deleted, now()
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[])
     AS e(id, external_id, email, name, deleted)
ON CONFLICT (kind, id) DO UPDATE SET
    external_id = EXCLUDED.external_id, email = EXCLUDED.email, name = EXCLUDED.name,
    deleted = EXCLUDED.deleted, updated_at = now()
"""
DROP_EMAILS_SQL = "DELETE FROM directory_emails WHERE user_id = ANY($1::text[])"
ADD_EMAILS_SQL = """
INSERT INTO directory_emails (user_id, email)
SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING
"""
SAVE_CURSOR_SQL = """
INSERT INTO directory_cursors (kind, cursor, complete, pages, updated_at)
VALUES ($1, $2, $3, 1, now())
ON CONFLICT (kind) DO UPDATE SET
    cursor = EXCLUDED.cursor, complete = directory_cursors.complete OR EXCLUDED.complete,
    pages = directory_cursors.pages + 1, updated_at = now()
"""
LOAD_CURSOR_SQL = """
SELECT kind, cursor, complete, pages, extract(epoch FROM now() - updated_at)::float8 AS age
FROM directory_cursors WHERE kind = $1
"""
FIND_BY_EMAIL_SQL = """
SELECT e.email AS value, min(p.id::numeric)::text AS id
FROM directory_emails e JOIN directory_people p ON p.kind = 'users' AND p.id = e.user_id
WHERE e.email = ANY($1::text[]) AND NOT p.deleted
GROUP BY e.email
"""
FIND_BY_NAME_SQL = """
SELECT lower(name) AS value, min(id::numeric)::text AS id FROM directory_people
WHERE kind = $1 AND lower(name) = ANY($2::text[]) AND NOT deleted GROUP BY lower(name)
"""
FIND_BY_EXTERNAL_ID_SQL = """
SELECT external_id AS value, min(id::numeric)::text AS id FROM directory_people
WHERE kind = $1 AND external_id = ANY($2::text[]) AND NOT deleted GROUP BY external_id
"""
# One refresher per kind across processes: a session advisory lock, keyed per kind.
LOCK_KEYS = {"users": 0x64697201, "organizations": 0x64697202}
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock($1)"
LOCK_SQL = "SELECT pg_advisory_lock($1)"
UNLOCK_SQL = "SELECT pg_advisory_unlock($1)"
COUNT_SQL = "SELECT count(*) FROM directory_people WHERE kind = $1 AND NOT deleted"


@dataclass(frozen=True, slots=True)
class Person:
    """A row to store: `emails` as the export gave them (stored lower-cased)."""

    id: str
    external_id: str | None
    emails: tuple[str, ...]
    name: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class StoredCursor:
    kind: str
    cursor: str | None
    complete: bool
    pages: int
    age: float = 0.0  # seconds since the last page was saved (by any process)


async def save_page(
    conn: Connection, kind: Kind, people: Sequence[Person], cursor: str | None, *, end: bool
) -> None:
    """Stores one export page and the cursor after it, together."""
    async with conn.transaction():
        if people:
            await conn.execute(
                UPSERT_SQL, kind, [p.id for p in people], [p.external_id for p in people],
                [p.emails[0].lower() if p.emails else None for p in people],
                [p.name for p in people], [p.deleted for p in people],
            )  # fmt: skip
        if kind == "users" and people:
            await conn.execute(DROP_EMAILS_SQL, [p.id for p in people])
            pairs = {(p.id, e.lower()) for p in people for e in p.emails}
            await conn.execute(ADD_EMAILS_SQL, [u for u, _ in pairs], [e for _, e in pairs])
        await conn.execute(SAVE_CURSOR_SQL, kind, cursor, end)


async def load_cursor(conn: Connection, kind: Kind) -> StoredCursor | None:
    row = await conn.fetchrow(LOAD_CURSOR_SQL, kind)
    return None if row is None else StoredCursor(row["kind"], row["cursor"], row["complete"], row["pages"], row["age"])


async def find(conn: Connection, kind: Kind, match: Match, values: Iterable[str]) -> dict[str, str]:
    """Zendesk ids by value (lower-cased for email and name) of the live people matching."""
    if match == "external_id":
        wanted = sorted(set(values))
        rows = await conn.fetch(FIND_BY_EXTERNAL_ID_SQL, kind, wanted)
    else:
        wanted = sorted({v.lower() for v in values})
        if match == "email":
            rows = await conn.fetch(FIND_BY_EMAIL_SQL, wanted) if kind == "users" else []
        else:
            rows = await conn.fetch(FIND_BY_NAME_SQL, kind, wanted)
    return {row["value"]: row["id"] for row in rows}


async def count(conn: Connection, kind: Kind) -> int:
    return int(await conn.fetchval(COUNT_SQL, kind))


async def try_lock(conn: Connection, kind: Kind) -> bool:
    """Takes the kind's refresh lock for this session if no other session holds it."""
    return bool(await conn.fetchval(TRY_LOCK_SQL, LOCK_KEYS[kind]))


async def wait_for_lock(conn: Connection, kind: Kind) -> None:
    """Waits until the session holding the kind's refresh lock lets go (it is not kept)."""
    await conn.execute(LOCK_SQL, LOCK_KEYS[kind])
    await conn.execute(UNLOCK_SQL, LOCK_KEYS[kind])


async def unlock(conn: Connection, kind: Kind) -> None:
    await conn.execute(UNLOCK_SQL, LOCK_KEYS[kind])
