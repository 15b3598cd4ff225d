"""`bridge webhooks ensure|status|remove`: the Outreach webhooks that trigger targeted syncs.

One webhook per standard resource type some mapping reads, all pointing at
`BRIDGE_PUBLIC_URL` + `/webhooks/outreach` with `OUTREACH_WEBHOOK_SECRET`. bridge's own
webhooks are the ones with that url; others in the Outreach organization are never touched.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge import settings_checks
from bridge.commands.common import EXIT_FATAL, EXIT_OK, open_apis
from bridge.errors import ConfigError
from bridge.mapping.load import load_mappings
from bridge.outreach.webhooks import Webhook, WebhookAdmin
from bridge.settings import Settings
from bridge.store import inbox
from bridge.webhooks import intake
from bridge.webhooks.consumer import readers


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secret: str


def target(settings: Settings) -> Target:
    """Where bridge's webhooks point, from BRIDGE_PUBLIC_URL; a ConfigError names the fix."""
    base = (settings.bridge_public_url or "").rstrip("/")
    if not base:
        raise ConfigError(
            "BRIDGE_PUBLIC_URL is not set; set it to the worker's public https base URL, "
            "e.g. https://bridge.example.com (Outreach posts to <it>/webhooks/outreach)"
        )
    parts = urlsplit(base)
    if not settings_checks.secure_or_loopback(parts):
        raise ConfigError(
            f"BRIDGE_PUBLIC_URL must be an https URL (Outreach refuses others), got "
            f"{parts.scheme or 'no scheme'}://{parts.hostname or ''}; e.g. https://bridge.example.com"
        )
    if parts.query or parts.fragment:
        raise ConfigError("BRIDGE_PUBLIC_URL must be a base URL without ?query or #fragment")
    secret = settings.webhook_secret()
    if secret is None:
        raise ConfigError(
            "OUTREACH_WEBHOOK_SECRET is not set; set it to a long random string (e.g. "
            "`openssl rand -hex 32`) in the worker's and this command's environment"
        )
    return Target(base + intake.PATH, secret.decode())


def wanted_resources(settings: Settings) -> list[str]:
    return sorted(readers(load_mappings(settings.bridge_mappings)))


async def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    goal = target(settings) if args.action in ("ensure", "remove") else None
    async with open_apis(settings) as services:
        admin = WebhookAdmin(services.outreach.transport, services.outreach.config.api_url)
        if args.action == "ensure":
            assert goal is not None
            for line in await ensure(admin, goal, wanted_resources(settings)):
                print(line)
            return EXIT_OK
        if args.action == "remove":
            assert goal is not None
            for line in await remove(admin, goal.url):
                print(line)
            return EXIT_OK
        async with services.pool.acquire() as conn:
            last = await inbox.last_received(conn)
        hooks = await admin.list()
    url = _our_url(settings)
    ours = [h for h in hooks if url is None or h.url == url]
    rows = [_status_row(h, last.get(h.resource)) for h in ours]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_status_table(rows) if rows else "no bridge webhooks in Outreach; run `bridge webhooks ensure`")
    return EXIT_FATAL if any(not row["active"] or row["disabledReason"] for row in rows) else EXIT_OK


async def ensure(admin: WebhookAdmin, goal: Target, resources: list[str]) -> list[str]:
    """Creates or updates one webhook per resource; removes bridge's webhooks for resources no
    mapping reads. Updating re-sends the secret and clears Outreach's disabled state."""
    if not resources:
        return ["no mapping reads a standard Outreach type (custom objects send no webhook events); nothing to do"]
    ours = {h.resource: h for h in await admin.list() if h.url == goal.url}
    lines = []
    for resource in resources:
        hook = ours.pop(resource, None)
        if hook is None:
            made = await admin.create(url=goal.url, resource=resource, action="*", secret=goal.secret)
            lines.append(f"{resource}: created webhook {made.id}")
            continue
        was = f" (was disabled: {hook.disabled_reason or 'inactive'})" if hook.disabled else ""
        await admin.update(hook.id, url=goal.url, resource=resource, action="*", secret=goal.secret, active=True)
        lines.append(f"{resource}: webhook {hook.id} up to date, secret re-sent{was}")
    for resource, hook in sorted(ours.items()):
        await admin.delete(hook.id)
        lines.append(f"{resource}: removed webhook {hook.id} (no mapping reads {resource})")
    return lines


async def remove(admin: WebhookAdmin, url: str) -> list[str]:
    lines = []
    for hook in await admin.list():
        if hook.url == url:
            await admin.delete(hook.id)
            lines.append(f"{hook.resource}: removed webhook {hook.id}")
    return lines or [f"no webhook points at {url}; nothing to remove"]


def _our_url(settings: Settings) -> str | None:
    base = (settings.bridge_public_url or "").rstrip("/")
    return base + intake.PATH if base else None


def _status_row(hook: Webhook, last: object) -> dict[str, object]:
    return {
        "id": hook.id, "resource": hook.resource, "action": hook.action, "url": hook.url,
        "active": hook.active, "disabledReason": hook.disabled_reason,
        "disabledUntil": hook.disabled_until.isoformat() if hook.disabled_until else None,
        "lastDelivery": last.isoformat() if hasattr(last, "isoformat") else None,
    }  # fmt: skip


def _status_table(rows: list[dict[str, object]]) -> str:
    head = f"{'resource':<24} {'id':>6}  {'state':<10} {'last delivery':<26} disabled"
    lines = [head]
    for row in rows:
        state = "active" if row["active"] and not row["disabledReason"] else "DISABLED"
        disabled = f"{row['disabledReason']} until {row['disabledUntil']}" if row["disabledReason"] else ""
        lines.append(f"{row['resource']!s:<24} {row['id']!s:>6}  {state:<10} {row['lastDelivery'] or '-'!s:<26} {disabled}")
    return "\n".join(lines)
