"""The asyncpg connection pool: DSN handling, TLS choice and the jsonb codec.

Everything that talks to Postgres gets its connections from the pool made here, so three
things hold everywhere:
- `postgres://` and `postgresql://` DSNs both work (Heroku hands out the former).
- TLS follows the DSN's `sslmode`; a remote host with no `sslmode` (Heroku's DATABASE_URL)
  gets TLS without certificate verification, as Heroku requires; a local host or a unix
  socket gets no TLS.
- jsonb columns read and write plain Python dicts/lists on every connection.

Failures to connect become `StoreError` (or `ConfigError` for a malformed DSN) whose message
names the database by its redacted DSN and says what to do.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bridge.errors import BridgeError, ConfigError, StoreError
from bridge.redact import redact_text, redact_url

_SCHEMES = ("postgres://", "postgresql://")
_LOCAL_HOSTS = frozenset({"", "localhost", "::1", "[::1]"})
CONNECT_TIMEOUT_S = 10.0

# What every store function takes: a plain connection or one acquired from the pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


def normalise_dsn(dsn: str) -> str:
    """Returns the DSN with a `postgresql://` scheme; rejects anything that is not a DSN."""
    dsn = dsn.strip()
    if dsn.startswith("postgres://"):
        dsn = "postgresql://" + dsn[len("postgres://") :]
    if not dsn.startswith("postgresql://"):
        raise ConfigError(
            f"database URL {redacted(dsn)!r} is not a Postgres DSN; set DATABASE_URL to "
            "postgresql://user:password@host:5432/dbname"
        )
    return dsn


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, pointed at another database."""
    parts = urlsplit(normalise_dsn(dsn))
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _is_local(dsn: str) -> bool:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    host = query.get("host", parts.hostname or "")
    return host in _LOCAL_HOSTS or host.startswith("/") or host.startswith("127.")


def ssl_for(dsn: str) -> ssl.SSLContext | bool | None:
    """What to pass as asyncpg's `ssl=`: None lets asyncpg honour an explicit sslmode."""
    query = dict(parse_qsl(urlsplit(dsn).query))
    if "sslmode" in query or os.environ.get("PGSSLMODE"):
        return None
    if _is_local(dsn):
        return False
    # Heroku Postgres requires TLS but presents certificates that do not verify.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[Any]:
    """Opens a pool and proves the database answers; raises StoreError if it does not."""
    dsn = normalise_dsn(dsn)
    try:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            ssl=ssl_for(dsn),
            init=_init_connection,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise connect_error(dsn, exc) from exc
    return pool


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages; never raises."""
    try:
        return redact_url(dsn)
    except ValueError:  # e.g. a non-numeric port, which urlsplit only rejects on access
        return redact_text(dsn)


def connect_error(dsn: str, exc: Exception) -> BridgeError:
    """Maps what asyncpg or the OS raise while connecting to the bridge error to show."""
    where = redacted(dsn)
    reason = redact_text(str(exc)) or type(exc).__name__
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(
            f"Postgres at {where} refused the credentials: {reason}; "
            "check the user and password in DATABASE_URL"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(
            f"Postgres at {where} has no such database: {reason}; create it or fix DATABASE_URL"
        )
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return ConfigError(f"DATABASE_URL {where} is not valid: {reason}; fix DATABASE_URL")
    if isinstance(exc, ValueError):  # the DSN did not parse; its text may hold the password
        return ConfigError(
            f"DATABASE_URL {where} cannot be parsed; fix DATABASE_URL "
            "(percent-encode special characters in the user and password)"
        )
    return StoreError(
        f"cannot connect to Postgres at {where}: {reason}; check DATABASE_URL, "
        "that the server is running and reachable from here, and its TLS settings (sslmode)"
    )
