"""The check every write request passes just before it is sent, set by whoever owns the writes.

A process that lost its lease (frozen past its TTL, then woken) must send nothing more, and that
includes the retry of a bulk-job POST already inside the request loop and the link fills after a
run. The pipeline knows the lease; only the request loop knows the moment a write leaves. A
context variable joins the two without the clients knowing of leases: tasks started inside
`guarding(check)` inherit it. Reads (GET, HEAD) are never guarded: they change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_GUARD: ContextVar[Callable[[], None] | None] = ContextVar("bridge_write_guard", default=None)


@contextmanager
def guarding(check: Callable[[], None]) -> Iterator[None]:
    """Within this block (and the tasks started in it) `check` runs before every write and
    stops it by raising."""
    token = _GUARD.set(check)
    try:
        yield
    finally:
        _GUARD.reset(token)


def check_write(method: str) -> None:
    """Raises whatever the current guard raises when `method` would change something."""
    guard = _GUARD.get()
    if guard is not None and method.upper() not in _READS:
        guard()
