"""The demo's last part: a worker running, and how long a change takes to reach Zendesk.

A worker starts in-process on loopback with the webhook intake on, beside one more mapping
(prospects: a standard Outreach type, so the sandbox sends webhooks for it, as Outreach
does), and an Outreach webhook points at it. One prospect and one vehicle then change in
the sandbox; the demo waits until Zendesk has each change and says how long it took. The
vehicle is a custom object, which sends no webhooks: it arrives by its schedule, shortened
to a few seconds here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bridge import schema, wiring
from bridge.mapping.load import load_mapping
from bridge.mapping.model import Mapping, Schedule
from bridge.metrics import Metrics
from bridge.outreach.webhooks import WebhookAdmin
from bridge.sandbox.server import Sandbox
from bridge.settings import Settings
from bridge.store import leases
from bridge.webhooks import intake
from bridge.worker import Worker

POLL = "5s"
WAIT_S = 90.0  # generous: a loaded machine is slow, and a slow answer beats a failed demo
PROSPECTS = """source: {type: prospects, custom_object: false}
target: {object: prospect_copy, name: "{firstName} {lastName}"}
fields:
  first_name: firstName
  last_name: lastName
  title: title
schedule: {every: 1h}
"""


async def worker_story(sandbox: Sandbox, settings: Settings, pool: Any, mappings: dict[str, Mapping]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prospects.yaml"
        path.write_text(PROSPECTS, encoding="utf-8")
        prospects = load_mapping(path, known=set(mappings))
    live = {**{name: m.model_copy(update={"schedule": Schedule(every=POLL)}) for name, m in mappings.items()},
            "prospects": prospects}  # fmt: skip
    secret = secrets.token_hex(16)
    settings = settings.model_copy(update={"port": 0, "outreach_webhook_secret": SecretStr(secret)})
    holder = leases.holder_id("demo-worker")
    config = dataclasses.replace(wiring.worker_config(settings, holder), host="127.0.0.1")
    metrics = Metrics()
    async with wiring.open_services(settings, pool, metrics=metrics) as services:
        await schema.ensure_objects(services.zendesk, {"prospects": prospects}, ["prospects"])
        worker = Worker(live, services, metrics, config, holder)
        running = asyncio.create_task(worker.run())
        try:
            await _until(lambda: worker.health.port != 0 or running.done(), "the worker to listen")
            admin = WebhookAdmin(services.outreach.transport, settings.outreach_api_url)
            hook = await admin.create(url=f"http://127.0.0.1:{worker.health.port}{intake.PATH}",
                                      resource="prospect", action="*", secret=secret)  # fmt: skip
            total = len(sandbox.outreach.ids("prospect"))
            await _until(lambda: len(sandbox.zendesk.records("prospect_copy")) == total, "the first prospects run")
            by_webhook = await _change(sandbox, "prospect", "prospect_copy", "prospects", title="Fleet Manager")
            by_poll = await _change(sandbox, "vehicles", "vehicle", "vehicles", color="Sunset Orange")
            await admin.delete(hook.id)
        finally:
            worker.stop()
            await asyncio.wait_for(running, WAIT_S)
    print(
        f"worker: a prospect changed in Outreach was in Zendesk {by_webhook:.1f}s later (a webhook); "
        f"a vehicle {by_poll:.1f}s later (custom objects send no webhooks: polled, every {POLL} here)",
        flush=True,
    )


async def _change(sandbox: Sandbox, source_type: str, object_key: str, prefix: str, **attributes: str) -> float:
    """Changes one record in Outreach; seconds until Zendesk holds the change."""
    source_id = sandbox.outreach.ids(source_type)[1]
    [(name, value)] = attributes.items()
    external_id = f"outreach:{prefix}:{source_id}"
    began = time.monotonic()
    sandbox.outreach.update(source_type, source_id, **attributes)

    def landed() -> bool:
        for record in sandbox.zendesk.records(object_key):
            if record["external_id"] == external_id:
                return str(record["custom_object_fields"].get(name, "")).lower() == value.lower()
        return False

    await _until(landed, f"the {source_type} change to reach Zendesk")
    return time.monotonic() - began


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {WAIT_S:.0f}s for {what}; see the log lines above")
        await asyncio.sleep(0.05)
