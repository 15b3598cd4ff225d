"""The webhook watch finds bridge's webhooks that Outreach disabled, and only bridge's."""

from __future__ import annotations

from structlog.testing import capture_logs

from bridge import wiring
from bridge.outreach.webhooks import WebhookAdmin
from bridge.sandbox import outreach_webhooks
from bridge.webhooks.watch import WebhookWatch
from tests.fixtures_sandbox import SandboxWorld

OURS = "https://bridge.example.com"


async def test_a_webhook_disabled_by_failed_deliveries_is_reported_and_ensure_style_update_clears_it(
    world: SandboxWorld,
) -> None:
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        admin = WebhookAdmin(s.outreach.transport, s.outreach.config.api_url)
        dead = "http://127.0.0.1:9/webhooks/outreach"  # nothing listens on the discard port
        ours = await admin.create(url=dead, resource="prospect", action="*", secret="k")
        await admin.create(url="https://elsewhere.example.com/hooks", resource="prospect", action="*", secret="x")
        out = world.sandbox.outreach
        for i in range(outreach_webhooks.DISABLE_AFTER):
            out.update("prospect", out.ids("prospect")[0], title=f"t{i}")
            await out.webhooks.settle()
        reported: list[int] = []
        watch = WebhookWatch(admin, "http://127.0.0.1:9", reported.append)
        with capture_logs() as logs:
            disabled = await watch.check()
        assert [h.id for h in disabled] == [ours.id] and reported == [1]
        assert [e["webhook_id"] for e in logs if e["event"] == "webhook_disabled"] == [ours.id]
        await admin.update(ours.id, secret="k", active=True)
        assert await watch.check() == [] and reported == [1, 0]
        assert len(await WebhookWatch(admin, OURS, reported.append).check()) == 0  # not ours: ignored
