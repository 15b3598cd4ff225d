"""Repair commands: reconcile deletions, dead letters, reset (logic in pipeline/*)."""

from __future__ import annotations

import argparse
import json
import sys

from bridge import wiring
from bridge.commands.common import (
    EXIT_CONFIG,
    EXIT_DEAD_LETTERS,
    EXIT_FATAL,
    EXIT_OK,
    confirm,
    leased,
    require_migrated,
    select,
)
from bridge.mapping.load import load_mappings
from bridge.pipeline.reconcile import reconcile_mapping
from bridge.pipeline.redrive import (
    letter_dict,
    purge_dead_letters,
    retry_dead_letters,
)
from bridge.pipeline.reset import reset_mapping
from bridge.settings import Settings
from bridge.store import dead_letters as store_dead_letters
from bridge.store import leases as store_leases


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    options = wiring.reconcile_options(settings, wiring.actor(settings), dry_run=args.dry_run, force=args.force)
    names = select(mappings, args.mappings)
    async with leased(settings, "reconcile", names, enabled=not args.dry_run) as (s, held):
        reports = [await held(n, reconcile_mapping(mappings[n], s, options)) for n in names]
    for r in reports:
        print(r.summary())
    if any(r.status in ("failed", "refused") for r in reports):
        return EXIT_FATAL
    return EXIT_DEAD_LETTERS if any(r.failed for r in reports) else EXIT_OK


async def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    wanted = select(mappings, [args.mapping] if args.mapping else [])
    if args.action == "list":
        async with wiring.open_pool(settings) as pool:
            await require_migrated(settings, pool)
            async with pool.acquire() as conn:
                letters = await store_dead_letters.list_letters(conn, args.mapping, limit=1000)
        _print_letters(letters, as_json=args.json)
        return EXIT_OK
    if args.action == "purge":
        async with wiring.open_pool(settings) as pool:
            await require_migrated(settings, pool)
            for name in wanted:
                print(f"{name}: purged {await purge_dead_letters(pool, name, actor=wiring.actor(settings))}")
        return EXIT_OK
    options = wiring.redrive_options(settings, wiring.actor(settings))
    async with leased(settings, "dead_letter_retry", wanted) as (s, held):
        reports = [await held(n, retry_dead_letters(mappings[n], s, options)) for n in wanted]
    for r in reports:
        print(json.dumps(r.as_dict()) if args.json else r.summary())
    return EXIT_DEAD_LETTERS if any(r.failed for r in reports) else EXIT_OK


def _print_letters(letters: list[store_dead_letters.DeadLetterRow], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([letter_dict(x) for x in letters], indent=2))
        return
    for x in letters:
        print(f"{x.mapping} {x.source_id} attempts={x.attempts} "
              f"last_failed={x.last_failed_at.isoformat()} error={x.error}")
    print(f"{len(letters)} dead letter(s)")


async def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    select(load_mappings(settings.bridge_mappings), [args.mapping])
    if not args.yes and not confirm(f"reset {args.mapping}: its next run reads everything"):
        print("not reset; nothing changed", file=sys.stderr)
        return EXIT_CONFIG
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        async with store_leases.hold_all(pool, store_leases.holder_id("reset"), [args.mapping],
                                         settings.bridge_lease_ttl_seconds):  # not mid-sync
            print((await reset_mapping(pool, args.mapping, actor=wiring.actor(settings))).summary())
    return EXIT_OK
