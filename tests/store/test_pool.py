from __future__ import annotations

import ssl

import asyncpg
import pytest

from bridge.errors import ConfigError, StoreError
from bridge.store import pool


def test_normalise_dsn_accepts_both_schemes() -> None:
    assert pool.normalise_dsn("postgres://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert pool.normalise_dsn(" postgresql://u@h/db\n") == "postgresql://u@h/db"


def test_normalise_dsn_rejects_other_urls_without_leaking_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        pool.normalise_dsn("mysql://user:hunter2@h/db")
    assert "hunter2" not in str(info.value)
    assert "DATABASE_URL" in str(info.value)


def test_dsn_with_database_keeps_server_and_query() -> None:
    dsn = "postgresql://postgres:@/postgres?host=/tmp/sock"
    assert pool.dsn_with_database(dsn, "other") == "postgresql://postgres:@/other?host=/tmp/sock"
    assert pool.dsn_with_database("postgres://u:p@h:5/a", "b") == "postgresql://u:p@h:5/b"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@localhost/db",
        "postgresql://u@127.0.0.1:5432/db",
        "postgresql://u@[::1]/db",
        "postgresql://postgres:@/postgres?host=/tmp/pg",
    ],
)
def test_local_servers_get_no_tls(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert pool.ssl_for(dsn) is False


def test_remote_server_without_sslmode_gets_unverified_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    context = pool.ssl_for("postgresql://u:p@ec2-1-2-3-4.compute.amazonaws.com:5432/d")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_explicit_sslmode_is_left_to_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert pool.ssl_for("postgresql://u@db.example.com/d?sslmode=verify-full") is None
    monkeypatch.setenv("PGSSLMODE", "disable")
    assert pool.ssl_for("postgresql://u@db.example.com/d") is None


async def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        await pool.create_pool("postgres://bridge:s3cretpw@127.0.0.1:1/bridge")
    message = str(info.value)
    assert "s3cretpw" not in message
    assert "127.0.0.1:1/bridge" in message
    assert "DATABASE_URL" in message


async def test_missing_database_is_a_store_error(pg_server_dsn: str) -> None:
    dsn = pool.dsn_with_database(pg_server_dsn, "bridge_no_such_db_xyz")
    with pytest.raises(StoreError, match="no such database"):
        await pool.create_pool(dsn)


async def test_jsonb_round_trips_as_python_objects(db_pool: asyncpg.Pool) -> None:
    value = {"a": [1, 2, {"b": None}], "s": "ü"}
    assert await db_pool.fetchval("SELECT $1::jsonb", value) == value
    assert await db_pool.fetchval("SELECT '{\"x\": 1}'::jsonb") == {"x": 1}


async def test_unparsable_dsn_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be parsed") as info:
        await pool.create_pool("postgresql://u:pw9@127.0.0.1:notaport/db")
    assert "pw9" not in str(info.value)
    with pytest.raises(ConfigError, match="sslmode"):
        await pool.create_pool("postgresql://u:pw@127.0.0.1:1/db?sslmode=bogus")


@pytest.mark.parametrize(
    ("exc", "expected", "words"),
    [
        (asyncpg.InvalidPasswordError("password authentication failed"), StoreError, "credentials"),
        (asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'), StoreError, "credentials"),
        (asyncpg.InvalidCatalogNameError('database "d" does not exist'), StoreError, "no such database"),
        (asyncpg.ClientConfigurationError("bad sslmode"), ConfigError, "not valid"),
        (ValueError("invalid literal for int()"), ConfigError, "cannot be parsed"),
        (ConnectionRefusedError(111, "Connection refused"), StoreError, "cannot connect"),
        (TimeoutError(), StoreError, "cannot connect"),
        (asyncpg.TooManyConnectionsError("too many clients"), StoreError, "cannot connect"),
        (asyncpg.InterfaceError("connection closed"), StoreError, "cannot connect"),
    ],
)
def test_connect_error_maps_everything_connecting_can_raise(
    exc: Exception, expected: type[Exception], words: str
) -> None:
    error = pool.connect_error("postgresql://me:pw123@db.example.com:5432/prod", exc)
    assert type(error) is expected
    assert words in str(error)
    assert "pw123" not in str(error) and "db.example.com:5432/prod" in str(error)
