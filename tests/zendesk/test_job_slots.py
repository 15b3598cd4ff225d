"""Every bulk job of one client shares its slots: Zendesk allows 30 per account."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bridge.http.transport import Response
from bridge.zendesk.client import ZendeskClient, ZendeskConfig
from bridge.zendesk.models import UpsertItem


class SlowJobs:
    """Answers job creation at once and holds each job 'working' until released; one poll
    answers for every job it asks about."""

    def __init__(self) -> None:
        self.running = 0
        self.created = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def request(self, method: str, url: str, **kw: Any) -> Response:
        if method == "POST":
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.created += 1
            job_id = f"j{self.created}"
            return self._answer(201, {"job_status": {"id": job_id, "status": "queued", "total": 1}})
        await self.release.wait()
        ids = kw["params"]["ids"].split(",")
        self.running -= len(ids)
        result = {"index": 0, "id": "01H", "success": True, "status": "Created"}
        return self._answer(200, {"job_statuses": [
            {"id": i, "status": "completed", "total": 1, "results": [result]} for i in ids]})

    def _answer(self, status: int, body: dict[str, Any]) -> Response:
        return Response(status, {"Content-Type": "application/json"}, json.dumps(body).encode(), "u")


async def test_jobs_beyond_the_slots_wait_for_one_to_finish() -> None:
    fake = SlowJobs()
    client = ZendeskClient(fake, ZendeskConfig("https://acme.zendesk.com", poll_initial=0,
                                               max_jobs_in_flight=3))  # type: ignore[arg-type]
    item = [UpsertItem("outreach:vehicles:1", "car")]
    tasks = [asyncio.create_task(client.upsert_records("vehicle", item)) for _ in range(7)]
    while fake.running < 3:
        await asyncio.sleep(0)
    for _ in range(20):  # give the other four every chance to start a job too
        await asyncio.sleep(0)
    assert fake.running == 3
    fake.release.set()
    results = await asyncio.gather(*tasks)
    assert fake.peak == 3
    assert all(r[0].ok for r in results)
