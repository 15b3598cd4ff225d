"""The asyncpg connection pool: DSN handling, TLS choice, the jsonb codec, and the one
boundary where database driver errors become bridge errors.

Everything that talks to Postgres gets its connections from the pool made here, so three
things hold everywhere:
- `postgres://` and `postgresql://` DSNs both work (Heroku hands out the former).
- TLS follows the DSN's `sslmode` or `PGSSLMODE` when either is set; otherwise a remote host
  gets TLS with the certificate chain and host name verified, and a local host or a unix
  socket gets no TLS. Heroku Postgres presents certificates that do not verify: its apps set
  `PGSSLMODE=require` (encrypted, unverified), as Heroku documents.
- jsonb columns read and write plain Python dicts/lists on every connection.

The error boundary (`boundary` around a whole command, `translated` around one store
operation that has its own message) turns what the driver raises (asyncpg's errors, and
OSError or TimeoutError from its sockets) into `StoreError`, or `ConfigError` for what the
user must fix first (a malformed DSN, a database without bridge's tables). Each message says
what happened, to which database (its redacted DSN) and what to do; `store_error` holds that
mapping in one place, as httpx maps transport errors in one place.
"""

from __future__ import annotations

import json
import ssl
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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

# Everything the driver raises: its own errors, and OSError (TimeoutError, ConnectionError,
# ssl.SSLError, socket.gaierror) from its sockets.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
# Errors that say "the server cannot be reached or went away", whatever the statement was.
_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError among them
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: stopped or restarted
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)
_RERUN = "the state is consistent, so rerun once it is fixed and the run resumes"
# The database the current command works on, as its messages name it.
_DATABASE: ContextVar[str] = ContextVar("bridge_database", default="the Postgres database")


def normalise_dsn(dsn: str) -> str:
    """Returns the DSN with a `postgresql://` scheme; rejects anything that is not a DSN."""
    dsn = dsn.strip()
    if dsn.startswith("postgres://"):
        dsn = "postgresql://" + dsn[len("postgres://") :]
    if not dsn.startswith("postgresql://"):
        raise ConfigError(
            "the database URL is not a Postgres DSN (it must start with postgresql://); set "
            "DATABASE_URL to postgresql://user:password@host:5432/dbname"
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


def ssl_for(dsn: str, pgsslmode: str | None = None) -> ssl.SSLContext | bool | None:
    """What to pass as asyncpg's `ssl=`: None lets asyncpg honour an explicit sslmode (in the
    DSN, or PGSSLMODE, which asyncpg reads itself and wiring passes here as `pgsslmode`)."""
    query = dict(parse_qsl(urlsplit(dsn).query))
    if "sslmode" in query or pgsslmode:
        return None
    if _is_local(dsn):
        return False
    return ssl.create_default_context()  # verifies the chain and the host name


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, pgsslmode: str | None = None
) -> asyncpg.Pool[Any]:
    """Opens a pool and proves the database answers; raises StoreError if it does not."""
    dsn = normalise_dsn(dsn)
    try:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            ssl=ssl_for(dsn, pgsslmode),
            init=_init_connection,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (ValueError, *DRIVER_ERRORS) as exc:
        raise connect_error(dsn, exc) from exc
    return pool


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages; never raises."""
    try:
        return redact_url(dsn)
    except ValueError:  # e.g. a non-numeric port, which urlsplit only rejects on access
        return redact_text(dsn)


def describe(dsn: str) -> str:
    """How messages name the database at `dsn`."""
    return f"Postgres at {redacted(dsn)}"


@contextmanager
def boundary(database: str) -> Iterator[None]:
    """Runs a whole command: what the driver raises inside leaves as a bridge error.

    `database` names the database in every message raised inside, `translated` ones too.
    An OSError counts only when it comes out of the driver (its traceback passes through
    asyncpg): a file or terminal error is not a database error.
    """
    token = _DATABASE.set(database)
    try:
        yield
    except DRIVER_ERRORS as exc:
        if isinstance(exc, OSError) and not _from_driver(exc):
            raise
        raise store_error(exc) from exc
    finally:
        _DATABASE.reset(token)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Runs one store operation: what the driver raises becomes a bridge error that says
    which `action` failed (e.g. "renew the leases")."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise store_error(exc, action) from exc


def current_database() -> str:
    """How messages name the database the current command works on."""
    return _DATABASE.get()


def _from_driver(exc: BaseException) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith("asyncpg")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def connect_error(dsn: str, exc: Exception) -> BridgeError:
    """Maps what asyncpg or the OS raise while connecting to the bridge error to show."""
    if isinstance(exc, ValueError) and not isinstance(exc, asyncpg.InterfaceError):
        # The DSN did not parse; its text may hold the password, so it is not shown.
        return ConfigError(
            f"DATABASE_URL {redacted(dsn)} cannot be parsed; fix DATABASE_URL "
            "(percent-encode special characters in the user and password)"
        )
    return store_error(exc, "connect", database=describe(dsn))


def store_error(exc: BaseException, action: str = "", *, database: str = "") -> BridgeError:
    """The bridge error for one driver error: what happened, to which database, what to do."""
    where = database or _DATABASE.get()
    reason = redact_text(str(exc)) or type(exc).__name__
    failed = f"could not {action}: " if action else ""
    if isinstance(exc, asyncpg.UndefinedTableError):
        return ConfigError(
            f"{failed}{where} lacks a table bridge needs ({reason}); run `bridge migrate` "
            "first (if it finds nothing to apply, the table was dropped by hand: restore it)"
        )
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return ConfigError(f"{failed}DATABASE_URL for {where} is not valid: {reason}; fix DATABASE_URL")
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(
            f"{failed}{where} refused the credentials ({reason}); check the user and password "
            "in DATABASE_URL"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(
            f"{failed}{where} has no such database ({reason}); create it or fix DATABASE_URL"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return StoreError(
            f"{failed}the TLS certificate of {where} did not verify ({reason}); give the "
            "server a certificate that verifies, or point sslrootcert at its CA; for Heroku "
            "Postgres, whose certificates do not verify, set PGSSLMODE=require"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StoreError(
            f"{failed}{where} denied access ({reason}); let the DATABASE_URL user use bridge's "
            f"tables (the user that ran `bridge migrate` owns them); {_RERUN}"
        )
    if isinstance(exc, TimeoutError):
        return StoreError(
            f"{failed}{where} did not answer in time; check that it is running and reachable "
            f"from here and not overloaded; {_RERUN}"
        )
    if isinstance(exc, _UNREACHABLE):
        return StoreError(
            f"{failed}{where} is unreachable or closed the connection ({reason}); check "
            f"DATABASE_URL, that the server is running and reachable from here, and its TLS "
            f"settings (sslmode, PGSSLMODE); {_RERUN}"
        )
    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", None) or "?"
        return StoreError(
            f"{failed}{where} refused a statement (SQLSTATE {code}: {reason}); check the "
            f"database (disk space, read-only mode, locks); {_RERUN}"
        )
    return StoreError(
        f"{failed}the Postgres driver failed talking to {where} ({type(exc).__name__}: "
        f"{reason}); {_RERUN}"
    )
