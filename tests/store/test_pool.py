from __future__ import annotations

import asyncio
import inspect
import json
import socket
import ssl

import asyncpg
import pytest

from bridge.errors import BridgeError, ConfigError, StoreError
from bridge.settings import load_settings
from bridge.store import pool
from tests.e2e.worker_proc import wait_for
from tests.fixtures_sandbox import REPO


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
def test_local_servers_get_no_tls(dsn: str) -> None:
    assert pool.ssl_for(dsn) is False


def test_remote_server_without_sslmode_gets_verified_tls() -> None:
    context = pool.ssl_for("postgresql://u:p@ec2-1-2-3-4.compute.amazonaws.com:5432/d")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_herokus_setting_turns_verification_off_through_asyncpg() -> None:
    """Heroku Postgres certificates do not verify: PGSSLMODE=require (or ?sslmode=require)
    hands the choice to asyncpg, which then encrypts without verifying."""
    remote = "postgresql://u:p@ec2-1-2-3-4.compute.amazonaws.com:5432/d"
    assert pool.ssl_for(remote, pgsslmode="require") is None
    assert pool.ssl_for(remote + "?sslmode=require") is None


def test_the_heroku_app_sets_the_tls_mode_its_postgres_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    app = json.loads((REPO / "deploy" / "heroku" / "app.json").read_text())
    assert app["env"]["PGSSLMODE"]["value"] == "require"
    monkeypatch.setenv("PGSSLMODE", app["env"]["PGSSLMODE"]["value"])
    pgsslmode = load_settings().pgsslmode  # the setting wiring hands to the pool
    assert pool.ssl_for("postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d", pgsslmode) is None


def test_explicit_sslmode_is_left_to_asyncpg() -> None:
    assert pool.ssl_for("postgresql://u@db.example.com/d?sslmode=verify-full") is None
    assert pool.ssl_for("postgresql://u@db.example.com/d", pgsslmode="disable") is None


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
        (ConnectionRefusedError(111, "Connection refused"), StoreError, "unreachable"),
        (TimeoutError(), StoreError, "did not answer in time"),
        (asyncpg.TooManyConnectionsError("too many clients"), StoreError, "unreachable"),
        (asyncpg.InterfaceError("connection closed"), StoreError, "driver failed"),
    ],
)
def test_connect_error_maps_everything_connecting_can_raise(
    exc: Exception, expected: type[Exception], words: str
) -> None:
    error = pool.connect_error("postgresql://me:pw123@db.example.com:5432/prod", exc)
    assert type(error) is expected
    assert words in str(error)
    assert "pw123" not in str(error) and "db.example.com:5432/prod" in str(error)


def _driver_error_classes() -> list[type[Exception]]:
    """Every exception class asyncpg defines, and the OSErrors its sockets raise."""
    found = {
        cls
        for module in (asyncpg.exceptions, asyncpg.exceptions._base)
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, pool.DRIVER_ERRORS) and not issubclass(cls, Warning)
    }
    found |= {OSError, TimeoutError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
              socket.gaierror, ssl.SSLError, ssl.SSLCertVerificationError}  # fmt: skip
    return sorted(found, key=lambda c: c.__qualname__)


@pytest.mark.parametrize("cls", _driver_error_classes(), ids=lambda c: c.__qualname__)
def test_store_error_maps_everything_the_driver_can_raise(cls: type[Exception]) -> None:
    exc = cls("failed for postgresql://me:pw123@db.example.com/prod password=pw123")
    error = pool.store_error(exc, "renew the leases", database="Postgres at db.example.com:5432/prod")
    assert isinstance(error, StoreError | ConfigError)
    message = str(error)
    assert message.startswith("could not renew the leases: ")
    assert "db.example.com:5432/prod" in message and "pw123" not in message
    assert any(todo in message for todo in ("rerun", "DATABASE_URL", "bridge migrate", "PGSSLMODE"))


@pytest.mark.parametrize("cls", [c for c in _driver_error_classes() if not issubclass(c, OSError)],
                         ids=lambda c: c.__qualname__)  # fmt: skip
def test_the_boundary_maps_every_asyncpg_error(cls: type[Exception]) -> None:
    with pytest.raises(BridgeError) as info, pool.boundary("Postgres at db.example.com:5432/prod"):
        raise cls("boom")
    assert isinstance(info.value.__cause__, cls)
    assert "db.example.com:5432/prod" in str(info.value)


async def test_the_boundary_maps_an_oserror_from_the_driver_but_not_others() -> None:
    with pytest.raises(StoreError, match="unreachable") as info, pool.boundary("Postgres at 127.0.0.1:1"):
        await asyncpg.connect("postgresql://u@127.0.0.1:1/db", ssl=False)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(PermissionError), pool.boundary("Postgres at 127.0.0.1:1"):
        raise PermissionError(13, "Permission denied", "out.yaml")  # a file, not the database
    with pytest.raises(StoreError, match="could not save the file: .*did not answer in time"):
        with pool.translated("save the file"):
            raise TimeoutError  # inside `translated`, every OSError is the database's


async def test_real_database_errors_are_mapped(empty_db_dsn: str, pg_server_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        with pytest.raises(ConfigError, match="run `bridge migrate` first"), pool.boundary("db"):
            await conn.fetch("SELECT * FROM checkpoints")
        with pytest.raises(StoreError, match="SQLSTATE 22012"), pool.translated("divide"):
            await conn.fetchval("SELECT 1 / 0")
        pid = conn.get_server_pid()
        killer = await asyncpg.connect(pg_server_dsn)
        try:
            with pool.boundary("db"):
                query = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
                await wait_for(lambda: _sleeping(killer, pid), "the query to start")
                await killer.execute("SELECT pg_terminate_backend($1)", pid)  # the server goes away
                with pytest.raises(StoreError, match="could not read: db is unreachable or closed"):
                    with pool.translated("read"):
                        await query
        finally:
            await killer.close()
    finally:
        conn.terminate()


async def _sleeping(conn: asyncpg.Connection, pid: int) -> bool:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
    return bool(await conn.fetchval(sql, pid))
