"""Watches bridge's Outreach webhooks: Outreach disables a failing one and tells no one.

A disabled webhook silently turns near-real-time syncs back into scheduled ones, so the
worker reads the webhooks on its upkeep interval, logs `webhook_disabled` for each one that
is, and reports the count (`bridge_webhooks_disabled`); `bridge webhooks ensure` re-enables.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.errors import BridgeError
from bridge.logs import get_logger
from bridge.outreach.webhooks import Webhook, WebhookAdmin
from bridge.webhooks import intake

log = get_logger(__name__)


def is_ours(hook: Webhook, public_url: str | None) -> bool:
    if public_url:
        return hook.url == public_url.rstrip("/") + intake.PATH
    return hook.url.rstrip("/").endswith(intake.PATH)


class WebhookWatch:
    def __init__(self, admin: WebhookAdmin, public_url: str | None, report: Callable[[int], None]) -> None:
        self._admin, self._public_url, self._report = admin, public_url, report

    async def check(self) -> list[Webhook]:
        """The disabled webhooks of bridge's; an API error is logged and reported as unknown."""
        try:
            hooks = [h for h in await self._admin.list() if is_ours(h, self._public_url)]
        except BridgeError as exc:
            log.warning("webhook_check_failed", error=str(exc))
            return []
        disabled = [h for h in hooks if h.disabled]
        for hook in disabled:
            log.warning("webhook_disabled", webhook_id=hook.id, resource=hook.resource,
                        reason=hook.disabled_reason, until=str(hook.disabled_until),
                        fix="run `bridge webhooks ensure`")  # fmt: skip
        self._report(len(disabled))
        return disabled
