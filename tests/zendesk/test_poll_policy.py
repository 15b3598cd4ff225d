"""How many status polls a stream of bulk jobs costs, on a virtual clock.

A backfill submits a job about every 86 ms (700 requests/min) for minutes: every poll spent
is a job not written, so a stream of jobs must share polls, while a lone job is still seen
soon. The client runs with its default `ZendeskConfig`; Zendesk finishes each job `RUN`
seconds after it was submitted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from aioresponses import CallbackResult
from yarl import URL

from bridge.zendesk.client import ZendeskClient, ZendeskConfig
from bridge.zendesk.models import UpsertItem

from .conftest import BASE, FakeClock, make_transport
from .test_jobs import SHOW_MANY, status

JOBS = f"{BASE}/api/v2/custom_objects/car/jobs"
RUN = 0.05  # seconds Zendesk takes to run one job
GAP = 0.086  # seconds between two job submissions at 700 requests/min


class VirtualTime:
    """`sleep` on a virtual clock: the clock jumps to the earliest sleeper's wake-up once the
    loop has nothing else to do, so minutes of traffic run in a moment and exactly."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def __call__(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.clock.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    async def run_until(self, done: asyncio.Future[Any]) -> Any:
        async with asyncio.timeout(10):
            while not done.done():
                for _ in range(50):  # let every ready task run (a mocked request takes a few turns)
                    await asyncio.sleep(0)
                while self._sleepers and self._sleepers[0][2].done():
                    heapq.heappop(self._sleepers)  # a nap cut short by a job arriving
                if self._sleepers and not done.done():
                    at, _, wake = heapq.heappop(self._sleepers)
                    self.clock.now = max(self.clock.now, at)
                    wake.set_result(None)
        return done.result()


class TimedZendesk:
    """Accepts jobs and answers `show_many`: a job is completed `RUN` s after it came."""

    def __init__(self, mock, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self.came: dict[str, float] = {}
        self.polls = 0
        mock.post(JOBS, callback=self.submit, repeat=True)
        mock.get(SHOW_MANY, callback=self.show_many, repeat=True)

    def submit(self, url: Any, **_: Any) -> CallbackResult:
        job_id = f"J{len(self.came)}"
        self.came[job_id] = self.clock.now
        return CallbackResult(payload={"job_status": status(job_id, "queued")})

    def show_many(self, url: Any, **_: Any) -> CallbackResult:
        self.polls += 1
        ids = URL(str(url)).query["ids"].split(",")
        return CallbackResult(payload={"job_statuses": [self.state(i) for i in ids]})

    def state(self, job_id: str) -> dict[str, Any]:
        if self.clock.now - self.came[job_id] < RUN:
            return status(job_id, "working")
        return status(job_id, "completed", [{"index": 0, "id": f"R-{job_id}", "success": True}])


def make_client(session, clock: FakeClock, time: VirtualTime) -> ZendeskClient:  # type: ignore[no-untyped-def]
    transport = make_transport(session, None, time, clock)  # type: ignore[arg-type]
    return ZendeskClient(transport, ZendeskConfig(BASE), sleep=time, clock=clock)


async def stream(client: ZendeskClient, time: VirtualTime, count: int) -> list[Any]:
    """`count` one-item jobs, one submitted every `GAP` s (while a slot is free), all waited for."""
    writes = []
    for n in range(count):
        item = UpsertItem(f"outreach:car:{n}", f"Car {n}")
        writes.append(asyncio.create_task(client.upsert_records("car", [item])))
        await time(GAP)
    return await asyncio.gather(*writes)


async def test_a_stream_of_jobs_costs_about_one_poll_per_job_slot(session, mock, clock) -> None:
    time = VirtualTime(clock)
    zendesk = TimedZendesk(mock, clock)
    client = make_client(session, clock, time)
    jobs = 120
    slots = ZendeskConfig(BASE).max_jobs_in_flight

    results = await time.run_until(asyncio.ensure_future(stream(client, time, jobs)))

    assert all(r[0].ok for r in results)
    assert len(zendesk.came) == jobs
    assert zendesk.polls <= jobs / (slots - 2) + 2  # ≈ one poll per slotful of jobs


async def test_a_lone_job_is_still_seen_soon(session, mock, clock) -> None:
    time = VirtualTime(clock)
    zendesk = TimedZendesk(mock, clock)
    client = make_client(session, clock, time)
    start = clock.now

    results = await time.run_until(asyncio.ensure_future(stream(client, time, 1)))

    assert results[0][0].ok
    assert zendesk.polls == 1
    assert clock.now - start <= 1.0
