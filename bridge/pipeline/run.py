"""The run lifecycle: the frame every run shares (`run_lifecycle`), how a process asks its runs
to stop, and how long it lets them settle before it cancels them.

Every kind of run (scheduled sync, backfill, targeted webhook sync, dead-letter retry,
reconcile) is framed the same way by `run_lifecycle`: its log context bound, its status set
to `interrupted` (cancelled) or `failed` (anything else, with a message safe to store) when
it raises, and its run row finished under `asyncio.shield`, so a cancellation can never
leave a row `running`.

A stop is a request, not a cancellation: `sync_mapping(stop=...)` stops fetching, lets the
pages already loading finish (their bulk jobs were submitted, so cancelling them would leave
records written in Zendesk that no checkpoint knows), settles them in order, and ends the
run as `interrupted` with the checkpoint right after the last settled page. Invariants:
- Signal handlers (`stop_signals`) are installed on the running loop only inside the block
  and the previous handlers come back afterwards.
- `StopRequest`: the first SIGTERM/SIGINT asks the runs to stop; a second one means "now".
- `settle_or_cancel`: once a stop is asked for, the work gets a bounded budget
  (BRIDGE_STOP_TIMEOUT_SECONDS) to settle, then is cancelled: the page still unsettled is
  rolled back and rewritten by the next run, by upsert, never duplicated.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar

import structlog

from bridge.errors import BridgeError
from bridge.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Ending(Protocol):
    """What a run's report must carry for its frame to end it."""

    status: str
    error: str | None


def failure(exc: BaseException) -> tuple[str, str]:
    """How a run that raised `exc` ends: its status, and an error text safe to store."""
    status = "interrupted" if isinstance(exc, asyncio.CancelledError) else "failed"
    return status, str(exc) if isinstance(exc, BridgeError) else type(exc).__name__


@asynccontextmanager
async def run_lifecycle(
    report: Ending, finish: Callable[[], Awaitable[None]], **context: object
) -> AsyncIterator[None]:
    """The frame of one run: `context` bound to the log lines (and `run_id`, when the body
    binds it), `report` ended by `failure` if the body raises, then `finish` under shield."""
    structlog.contextvars.bind_contextvars(**context)
    try:
        yield
    except BaseException as exc:
        report.status, report.error = failure(exc)
        raise
    finally:
        try:
            await asyncio.shield(finish())
        finally:
            structlog.contextvars.unbind_contextvars(*context, "run_id")


@contextmanager
def stop_signals(callback: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Routes SIGTERM and SIGINT to `callback` on the running loop; restores the old handlers.

    Off the main thread (bridge embedded in another program) it installs nothing: Python
    delivers signals to the main thread only, so that program owns them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class StopRequest:
    """What the stop signals asked for: `stop` after the first one, `now` after the second."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()
        self.signal: signal.Signals | None = None

    def __call__(self, sig: signal.Signals) -> None:
        log.info("stop_signal", signal=sig.name, again=self.stop.is_set())
        if self.stop.is_set():
            self.now.set()
        self.signal = self.signal or sig
        self.stop.set()

    @property
    def requested(self) -> bool:
        return self.stop.is_set()


async def settle_or_cancel(work: Awaitable[T], request: StopRequest, budget: float) -> T:
    """Awaits `work`; once a stop is requested, gives it `budget` seconds to settle what is in
    flight (or none after a second signal), then cancels it and lets the cancellation out."""
    task = asyncio.ensure_future(work)
    waiters: set[asyncio.Future[Any]] = set()
    try:
        stopping = asyncio.ensure_future(request.stop.wait())
        waiters.add(stopping)
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.info("settling_before_stop", budget_seconds=budget)
            hurry = asyncio.ensure_future(request.now.wait())
            waiters.add(hurry)
            await asyncio.wait({task, hurry}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.warning("run_cancelled_at_stop", budget_seconds=budget)
            task.cancel()
    finally:
        for waiter in waiters:
            waiter.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task})
    return task.result()
