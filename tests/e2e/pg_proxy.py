"""A TCP proxy on loopback in front of the test Postgres that can stop the database.

`cut()` is what a stopped Postgres looks like from a client: every open connection is
dropped and new ones are refused (accepted, then reset) until `restore()`. `hang()` is a
frozen server or a network that drops packets: nothing is relayed either way, and nothing
is closed, until `restore()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CHUNK = 65536


class PgProxy:
    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or ""
        port = int(query.get("port") or parts.port or 5432)
        # The embedded server listens on a unix socket only: the proxy turns it into TCP.
        self._socket = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._target = (host, port)
        self._dsn = dsn
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.refusing = False
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def dsn(self) -> str:
        """The same DSN, through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(self._dsn)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self._open):
            writer.transport.abort()

    def hang(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self.refusing = False
        self._flowing.set()

    async def close(self) -> None:
        self.cut()
        self._flowing.set()  # held pipes wake up, find their connections dropped, and end
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        await self._flowing.wait()
        try:
            if self._socket is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._socket)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer, self._flowing),
                                 _pipe(up_reader, writer, self._flowing))  # fmt: skip
        finally:
            self._open -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    """Copies one direction until EOF or an error, then drops the connection both ways."""
    try:
        while data := await reader.read(CHUNK):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


@asynccontextmanager
async def pg_proxy(dsn: str) -> AsyncIterator[PgProxy]:
    proxy = PgProxy(dsn)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
