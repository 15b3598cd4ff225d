"""A backfill killed (SIGKILL) while its bulk jobs are in flight: the next run polls those jobs
(Zendesk keeps their statuses for a day) instead of writing their records again."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from bridge.sandbox.server import Sandbox
from tests.e2e.test_backfill_cli import ready, run_bridge, start_bridge  # noqa: F401 - fixture
from tests.e2e.worker_proc import wait_for
from tests.fixtures_sandbox import SandboxWorld
from tests.pipeline.test_sync import assert_exact

pytestmark = pytest.mark.timeout(90)

HELD = 2  # vehicle jobs the sandbox keeps queued (later ones run, but their pages cannot settle)


def count_posted(sandbox: Sandbox, object_key: str = "vehicle") -> Counter[str]:
    """Counts, per external id, the items of `object_key` sent in bulk-job POSTs."""
    posted: Counter[str] = Counter()
    submit = sandbox.zendesk.jobs.submit

    def counting(key: str, action: str, items: list[Any]) -> dict[str, Any]:
        if key == object_key:
            posted.update(i.get("external_id") for i in items if isinstance(i, dict))
        return submit(key, action, items)

    sandbox.zendesk.jobs.submit = counting  # type: ignore[method-assign]
    return posted


def polled_since(sandbox: Sandbox, job_ids: list[str], since: float) -> bool:
    """Every one of `job_ids` was asked about in a status poll answered after `since`."""
    polls = [e.path for e in sandbox.counters.entries("zendesk") if "job_statuses" in e.path and e.at >= since]
    return all(any(job_id in path for path in polls) for job_id in job_ids)


async def test_a_killed_backfill_polls_its_jobs_after_restart_and_writes_none_of_them_again(
    ready: SandboxWorld,  # noqa: F811
) -> None:
    sandbox = ready.sandbox
    jobs = sandbox.zendesk.jobs
    posted = count_posted(sandbox)
    jobs.hold(lambda key, action, items: key == "vehicle", times=HELD)
    first = await start_bridge(ready, "backfill", env={"BRIDGE_PAGE_SIZE": "20"})

    async def held_and_polled() -> bool:
        held = jobs.held()
        return len(held) == HELD and polled_since(sandbox, held, 0.0)

    await wait_for(held_and_polled, "two vehicle jobs held in Zendesk and polled by the backfill")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    held = jobs.held()
    assert len(posted) >= 40, "two vehicle pages were in flight"

    restarted = time.monotonic()
    second = await start_bridge(ready, "backfill", env={"BRIDGE_PAGE_SIZE": "20"})

    async def polled_or_sent_again() -> bool:
        return polled_since(sandbox, held, restarted) or max(posted.values()) > 1

    await wait_for(polled_or_sent_again, "the restarted backfill to poll the jobs from before the kill")
    jobs.release()  # the jobs from before the crash finish only now, while they are polled
    _, err = await second.communicate()
    assert second.returncode == 0, err.decode()

    again = {e: n for e, n in posted.items() if n > 1}
    assert again == {}, f"{len(again)} records were sent again after the restart"
    writes = Counter(w.external_id for w in sandbox.counters.writes if w.object_key == "vehicle")
    assert {e: n for e, n in writes.items() if n > 1} == {}, "records were written twice"
    assert_exact(sandbox)


async def test_jobs_zendesk_forgot_are_submitted_again_after_a_restart(
    ready: SandboxWorld,  # noqa: F811
) -> None:
    sandbox = ready.sandbox
    jobs = sandbox.zendesk.jobs
    jobs.hold(lambda key, action, items: key == "vehicle", times=HELD)
    first = await start_bridge(ready, "backfill", env={"BRIDGE_PAGE_SIZE": "20"})

    async def held_and_polled() -> bool:
        held = jobs.held()
        return len(held) == HELD and polled_since(sandbox, held, 0.0)

    await wait_for(held_and_polled, "two vehicle jobs held in Zendesk and polled by the backfill")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    jobs.forget(jobs.held())  # a day later: Zendesk no longer knows them, nor ran them
    jobs.release()

    code, _, err = await run_bridge(ready, "backfill", env={"BRIDGE_PAGE_SIZE": "20"})
    assert code == 0, err
    assert_exact(sandbox)
