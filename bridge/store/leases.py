"""Leases: a mapping runs on at most one process at a time, coordinated through Postgres.

A lease is a row in `leases` (migration 0002): mapping, holder, heartbeat and expiry, all
on the database clock, so replicas with skewed clocks still agree. Invariants:
- `acquire` takes a lease only when there is none, it has expired, or the caller already
  holds it; concurrent callers are serialised by the row lock of INSERT … ON CONFLICT, so
  exactly one wins.
- A holder renews all its leases on one heartbeat (`LeaseKeeper.heartbeat`, every TTL/3).
  A lease renewed by nobody (a SIGKILLed replica) expires after its TTL and is free again;
  an expired lease is never renewed, only taken again.
- Locally a lease counts as held for one TTL from when its last SUCCESSFUL renewal (or the
  acquire) was sent, on the monotonic clock: the database's expiry is counted from a later
  moment, so the local view always ends first. A renewal that hangs or fails extends
  nothing. Past that TTL the lease is lost: the work under it is cancelled
  (`LeaseKeeper.run_held` raises `LeaseLost`), and `Fence.check`, asked before every Zendesk
  write, refuses, so a process that wakes from a long pause (SIGSTOP, a VM freeze) never
  writes stale data.
- Every commit of a run is fenced too: `assert_held` locks the lease row inside the commit's
  transaction and checks holder and expiry, so a commit and a takeover never interleave.
- Release deletes only the caller's own row; a failed release is harmless (the row expires).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg

from bridge.errors import LeaseLost, StoreError
from bridge.logs import get_logger
from bridge.store.pool import DRIVER_ERRORS, Connection, translated

log = get_logger(__name__)
T = TypeVar("T")

# `previous` is the holder the row had when the statement began: someone else's means this
# acquire took over an expired lease (its holder stopped renewing), which is worth an alert.
ACQUIRE_SQL = """
WITH before AS (SELECT holder FROM leases WHERE mapping = $1)
INSERT INTO leases AS l (mapping, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (mapping) DO UPDATE
   SET holder = EXCLUDED.holder, acquired_at = now(), heartbeat_at = now(),
       expires_at = EXCLUDED.expires_at
 WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
RETURNING mapping, (SELECT holder FROM before) AS previous
"""
RENEW_SQL = """
UPDATE leases SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $3)
WHERE holder = $1 AND mapping = ANY($2::text[]) AND expires_at > now()
RETURNING mapping
"""
# Locks the row until the caller's transaction ends, so no takeover can slip in before it commits.
# A holder that freezes inside that transaction would keep the row locked, and so the lease, for
# ever: its session is ended once it has sat idle for one lease TTL, which frees the row and
# rolls back whatever it had not committed.
FENCE_SQL = """
SELECT set_config(
    'idle_in_transaction_session_timeout',
    ceil(extract(epoch FROM expires_at - heartbeat_at) * 1000)::bigint::text,
    true)
FROM leases
WHERE mapping = $1 AND holder = $2 AND expires_at > clock_timestamp()
FOR UPDATE
"""
STEAL_SQL = """
UPDATE leases SET holder = $3, acquired_at = now(), heartbeat_at = now(),
                  expires_at = now() + make_interval(secs => $4)
WHERE mapping = $1 AND holder = $2
RETURNING mapping
"""
RELEASE_SQL = "DELETE FROM leases WHERE mapping = $1 AND holder = $2"
RELEASE_ALL_SQL = "DELETE FROM leases WHERE holder = $1"
LIST_SQL = """
SELECT mapping, holder, acquired_at, heartbeat_at, expires_at, expires_at < now() AS expired
FROM leases WHERE $1::text IS NULL OR mapping = $1 ORDER BY mapping
"""


@dataclass(frozen=True, slots=True)
class Lease:
    mapping: str
    holder: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    expired: bool


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"  # unknown: never judge another holder dead (see holder_is_dead_here)


def holder_id(kind: str) -> str:
    """`<kind>:<host>:<pid>:<pid namespace>:<random>`, unique across replicas and restarts."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}:{secrets.token_hex(3)}"


def holder_is_dead_here(holder: str) -> bool:
    """True only for a holder on this host, in this PID namespace, whose process is gone.

    Such a lease (a SIGKILLed local backfill, say) is taken at once rather than after its TTL.
    Anything else (another host, another container, an unknown format) is never judged dead.
    """
    parts = holder.split(":")
    if len(parts) != 5 or not parts[2].isdigit():
        return False
    _, host, pid, namespace, _ = parts
    if host != socket.gethostname() or namespace != _pid_namespace() or namespace == "0":
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (e.g. EPERM: another user's process)
    return False


async def acquire(conn: Connection, mapping: str, holder: str, ttl: float) -> bool:
    """Takes (or re-takes) the lease on `mapping`; False when another holder has it."""
    return (await acquire_noting(conn, mapping, holder, ttl))[0]


async def acquire_noting(conn: Connection, mapping: str, holder: str, ttl: float) -> tuple[bool, str | None]:
    """`acquire`, also returning the holder it took the lease over from (None: it was free
    or already ours)."""
    with translated(f"take the lease on mapping {mapping!r}"):
        row = await conn.fetchrow(ACQUIRE_SQL, mapping, holder, ttl)
    if row is None:
        return False, None
    previous = row["previous"]
    return True, previous if previous is not None and previous != holder else None


async def take_from(conn: Connection, mapping: str, dead: str, holder: str, ttl: float) -> bool:
    """Takes the lease on `mapping` from `dead` (only if `dead` still holds it)."""
    with translated(f"take over the lease on mapping {mapping!r}"):
        return await conn.fetchval(STEAL_SQL, mapping, dead, holder, ttl) is not None


async def renew(conn: Connection, holder: str, mappings: list[str], ttl: float) -> set[str]:
    """Extends the holder's leases on `mappings`; returns those it still held."""
    with translated("renew the leases"):
        rows = await conn.fetch(RENEW_SQL, holder, mappings, ttl)
    return {row["mapping"] for row in rows}


async def assert_held(conn: Connection, mapping: str, holder: str) -> None:
    """Raises LeaseLost unless `holder` holds an unexpired lease on `mapping`; call it first in
    a transaction, whose commit it then fences (the row stays locked until the transaction ends)."""
    with translated(f"check the lease on mapping {mapping!r}"):
        held = await conn.fetchval(FENCE_SQL, mapping, holder)
    if held is None:
        raise LeaseLost(
            f"{holder} no longer holds the lease on mapping {mapping!r} (it expired or another "
            "process took it); nothing was committed and the holder's next run resumes"
        )


@dataclass(frozen=True, slots=True)
class Fence:
    """How work under a lease proves, before each write, that the lease is still held."""

    mapping: str
    holder: str
    held: Callable[[], bool]  # the local view: renewed within its TTL

    def check(self) -> None:
        """Raises LeaseLost when the lease is no longer held here."""
        if not self.held():
            raise LeaseLost(
                f"the lease on mapping {self.mapping!r} was not renewed within its TTL, so "
                f"{self.holder} may no longer write for it; the run stopped and the next one resumes"
            )


async def release(conn: Connection, mapping: str, holder: str) -> None:
    with translated(f"release the lease on mapping {mapping!r}"):
        await conn.execute(RELEASE_SQL, mapping, holder)


async def release_all(conn: Connection, holder: str) -> None:
    with translated("release the leases"):
        await conn.execute(RELEASE_ALL_SQL, holder)


async def current(conn: Connection, mapping: str | None = None) -> list[Lease]:
    """Lease rows (of one mapping, or all), expired ones included and marked."""
    with translated("read the leases"):
        rows = await conn.fetch(LIST_SQL, mapping)
    return [Lease(**dict(row)) for row in rows]


def busy_message(mapping: str, lease: Lease | None) -> str:
    """Why `mapping` cannot run here now, and what to do."""
    who = f"by {lease.holder} (lease expires {lease.expires_at.isoformat()})" if lease else "elsewhere"
    return (
        f"mapping {mapping!r} is being synced {who}; wait for that run to finish or stop "
        "that process, then try again"
    )


class HeldLeases:
    """What `hold_all` yields: call it to await work under a mapping's lease; `fence` proves it."""

    def __init__(self, keeper: LeaseKeeper | None) -> None:
        self._keeper = keeper

    async def __call__(self, mapping: str, work: Awaitable[T]) -> T:
        if self._keeper is None:
            return await work
        return await self._keeper.run_held(mapping, work)

    def fence(self, mapping: str) -> Fence | None:
        """None when nothing is leased (a dry run writes nothing)."""
        return None if self._keeper is None else self._keeper.fence(mapping)


@asynccontextmanager
async def hold_all(
    pool: asyncpg.Pool[Any],
    holder: str,
    mappings: list[str],
    ttl: float,
    *,
    wait: float = 0.0,
    enabled: bool = True,
) -> AsyncIterator[HeldLeases]:
    """Leases every one of `mappings` for a one-off run (a backfill), or raises LeaseLost.

    Yields `run(mapping, work)`, which awaits `work` under that mapping's lease. All leases are
    taken up front, so a backfill never stops halfway because a worker holds a later mapping;
    a lease held elsewhere is waited for up to `wait` seconds (a worker's run ends, a dead
    holder's lease expires). They are renewed until the block ends, then released.
    `enabled=False` (a dry run, which writes nothing) takes none.
    """
    if not enabled:
        yield HeldLeases(None)
        return
    keeper = LeaseKeeper(pool, holder, ttl)
    heartbeat: asyncio.Task[None] | None = None
    try:
        for mapping in mappings:
            if not await keeper.acquire_waiting(mapping, wait):
                raise LeaseLost(busy_message(mapping, await keeper.holder_of(mapping)))
        heartbeat = asyncio.create_task(keeper.heartbeat(), name="lease_heartbeat")
        yield HeldLeases(keeper)
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        await asyncio.shield(keeper.release_all(timeout=ttl / 3))


class LeaseObserver(Protocol):
    """Who hears of a lease taken over from a holder that stopped renewing, or lost here
    (the worker's metrics and alerts)."""

    def taken_over(self, mapping: str, previous: str) -> None: ...

    def lost(self, mapping: str) -> None: ...


class LeaseKeeper:
    """The leases one process holds, renewed together on one heartbeat."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        holder: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        observer: LeaseObserver | None = None,
    ) -> None:
        self.pool, self.holder, self.ttl = pool, holder, ttl
        self._clock = clock
        self._observer = observer
        # mapping -> monotonic time the last successful renewal (or the acquire) was sent
        self._sent: dict[str, float] = {}
        self._lost: dict[str, asyncio.Event] = {}

    @property
    def held(self) -> list[str]:
        return sorted(self._sent)

    def holds(self, mapping: str) -> bool:
        """True while the lease on `mapping` is within one TTL of its last successful renewal."""
        sent = self._sent.get(mapping)
        return sent is not None and self._clock() - sent < self.ttl

    def fence(self, mapping: str) -> Fence:
        return Fence(mapping, self.holder, lambda: self.holds(mapping))

    async def try_acquire(self, mapping: str) -> bool:
        sent = self._clock()
        async with self.pool.acquire() as conn:
            taken, previous = await acquire_noting(conn, mapping, self.holder, self.ttl)
            if not taken:
                previous = await self._take_from_dead(conn, mapping)
                if previous is None:
                    return False
        if previous is not None:
            log.warning("lease_taken_over", lease_mapping=mapping, previous=previous, holder=self.holder)
            if self._observer is not None:
                self._observer.taken_over(mapping, previous)
        self._sent[mapping] = sent
        self._lost[mapping] = asyncio.Event()
        return True

    async def _take_from_dead(self, conn: Connection, mapping: str) -> str | None:
        """Takes the lease from a dead process on this host; returns that holder, or None."""
        found = await current(conn, mapping)
        if not found or not holder_is_dead_here(found[0].holder):
            return None
        log.info("lease_taken_from_dead_process", lease_mapping=mapping, dead=found[0].holder)
        if await take_from(conn, mapping, found[0].holder, self.holder, self.ttl):
            return found[0].holder
        return None

    async def acquire_waiting(self, mapping: str, wait: float, poll: float = 0.5) -> bool:
        """`try_acquire`, retried for up to `wait` seconds while another process holds it."""
        deadline = self._clock() + wait
        while not await self.try_acquire(mapping):
            if self._clock() >= deadline:
                return False
            lease = await self.holder_of(mapping)
            log.info("waiting_for_lease", lease_mapping=mapping, holder=lease.holder if lease else None)
            await asyncio.sleep(poll)
        return True

    async def holder_of(self, mapping: str) -> Lease | None:
        async with self.pool.acquire() as conn:
            found = await current(conn, mapping)
        return found[0] if found and not found[0].expired else None

    async def release(self, mapping: str) -> None:
        """Gives the lease back; never raises (an unreleased lease simply expires)."""
        self._sent.pop(mapping, None)
        self._lost.pop(mapping, None)
        try:
            async with asyncio.timeout(self.ttl / 3):
                async with self.pool.acquire() as conn:
                    await release(conn, mapping, self.holder)
        except (StoreError, *DRIVER_ERRORS) as exc:
            log.warning("lease_release_failed", lease_mapping=mapping, error=str(exc))

    async def release_all(self, timeout: float) -> None:
        """Gives every lease of this holder back, in the database too; never raises."""
        self._sent.clear()
        for event in self._lost.values():
            event.set()
        self._lost.clear()
        try:
            async with asyncio.timeout(timeout):
                async with self.pool.acquire() as conn:
                    await release_all(conn, self.holder)
        except (StoreError, *DRIVER_ERRORS) as exc:
            log.warning("lease_release_failed", error=str(exc))

    async def heartbeat(self) -> None:
        """Renews every TTL/3, forever; database outages are survived, not raised."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self.renew_once()

    async def renew_once(self) -> None:
        """One renewal of every lease still held; a lease past its TTL is lost first."""
        for name in self.held:
            if not self.holds(name):
                self._mark_lost(name)
        names = self.held
        if not names:
            return
        sent = self._clock()
        try:
            async with asyncio.timeout(self.ttl / 3):
                async with self.pool.acquire() as conn:
                    kept = await renew(conn, self.holder, names, self.ttl)
        except (StoreError, *DRIVER_ERRORS) as exc:
            log.warning("lease_renew_failed", error=str(exc), mappings=names)
            for name in names:  # nothing was extended; keep what is still within its TTL
                if name in self._sent and not self.holds(name):
                    self._mark_lost(name)
            return
        for name in names:
            if name not in self._sent:
                continue  # released while the renewal was on its way
            if name in kept:
                self._sent[name] = sent
            else:
                self._mark_lost(name)

    def _mark_lost(self, mapping: str) -> None:
        log.warning("lease_lost", lease_mapping=mapping, holder=self.holder)
        if self._observer is not None and mapping in self._sent:
            self._observer.lost(mapping)
        self._sent.pop(mapping, None)
        if (event := self._lost.get(mapping)) is not None:
            event.set()

    async def run_held(self, mapping: str, work: Awaitable[T]) -> T:
        """Awaits `work` while the lease on `mapping` holds; cancels it if the lease is lost,
        which includes its TTL passing without a successful renewal."""
        lost = self._lost.get(mapping)
        if lost is None:
            raise LeaseLost(f"mapping {mapping!r} is not leased by {self.holder}; take the lease first")
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(lost.wait())
        try:
            while not task.done() and not lost.is_set():
                sent = self._sent.get(mapping)
                if sent is None or self._clock() - sent >= self.ttl:
                    self._mark_lost(mapping)
                    lost.set()
                    break
                left = sent + self.ttl - self._clock()
                await asyncio.wait({task, watch}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled() and lost.is_set():
            raise LeaseLost(
                f"the lease on mapping {mapping!r} was lost (another process took it, or it was "
                "not renewed within its TTL); the run was stopped and the next one resumes"
            )
        return task.result()
