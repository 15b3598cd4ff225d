"""An embedded Postgres for local runs when DATABASE_URL is unset. For local use only.

It wraps the `pgserver` package (a Postgres build shipped as a wheel): the data directory
is `<data_dir>/pg`, the server listens on a unix socket only (no TCP port, so nothing
else on the machine can reach it and two checkouts never collide), with trust auth.
Never use it in production: there is no password, no TLS, no backup.

- A second process asking for the same data directory reuses the running server; the
  server stops when the last process that asked for it exits (or on `stop_embedded`).
- Run as root, pgserver runs Postgres as a system user `pgserver` (created with `useradd`
  on first use) and opens read/traverse permissions on the parents of the data directory,
  because Postgres refuses to run as root.
- If the data directory's path is too long for a unix socket (~107 bytes), pgserver puts
  the socket in a short runtime directory instead; the DSN returned points at it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from bridge.errors import StoreError
from bridge.store.pool import normalise_dsn

PG_SUBDIR = "pg"


def _pgserver() -> ModuleType:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); its fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def start_embedded(data_dir: Path) -> str:
    """Starts (or reuses) the embedded server under `data_dir` and returns its DSN."""
    pgdata = data_dir / PG_SUBDIR
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server: Any = _pgserver().get_server(str(pgdata), cleanup_mode="stop")
        return normalise_dsn(str(server.get_uri()))
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        raise StoreError(
            f"could not start the embedded Postgres in {pgdata}: {exc!r}; see {pgdata}/log, "
            "or set DATABASE_URL to use your own Postgres"
        ) from exc


def stop_embedded(data_dir: Path) -> None:
    """Stops the embedded server under `data_dir` if it runs, whoever started it."""
    pgdata = (data_dir / PG_SUBDIR).resolve()
    if not (pgdata / "PG_VERSION").exists():
        return
    pgserver = _pgserver()  # first: it imports pgserver with its import-time warning muted
    _forget_handle(pgdata)
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StoreError(
            f"could not stop the embedded Postgres in {pgdata}: {exc!r}; stop its "
            f"postgres process (pid {info.pid}) by hand"
        ) from exc


def _forget_handle(pgdata: Path) -> None:
    """Drops this process's pgserver handle, so a later start in this process starts anew.

    pgserver caches one handle per data directory and stops the server from an atexit hook
    when the last process holding it exits; after an explicit stop both must go.
    """
    from pgserver.postgres_server import PostgresServer

    server = PostgresServer._instances.pop(pgdata, None)
    if server is None:
        return
    atexit.unregister(server._cleanup)
    server.global_process_id_list.get_and_remove(os.getpid())
