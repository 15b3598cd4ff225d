"""Commands that move records: migrate, backfill, worker, status, demo, local validate."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from bridge import wiring
from bridge.commands.common import EXIT_DEAD_LETTERS, EXIT_FATAL, EXIT_OK, require_migrated, select
from bridge.errors import ConfigError
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.pipeline.backfill import backfill
from bridge.pipeline.report import RunReport
from bridge.pipeline.run import StopRequest, settle_or_cancel, stop_signals
from bridge.pipeline.sync import SyncOptions
from bridge.settings import Settings
from bridge.store import leases as store_leases
from bridge.store import migrate as store_migrate

if TYPE_CHECKING:
    from bridge import status


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with wiring.open_pool(settings) as pool:
        applied = await store_migrate.migrate(pool)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return EXIT_OK


async def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "diff", False) or getattr(args, "json", False) or getattr(args, "limit", None) is not None:
        from bridge.commands import preview

        return await preview.cmd_backfill_diff(args, settings)
    mappings = load_mappings(settings.bridge_mappings)
    names = select(mappings, args.mappings)
    options = wiring.sync_options(
        settings, "dry_run" if args.dry_run else "backfill", wiring.actor(settings, "backfill"),
        full=args.full, since=args.since, dry_run=args.dry_run,
    )  # fmt: skip
    request = StopRequest()
    with stop_signals(request):
        try:
            work = run_backfill(settings, mappings, names, options, stop=request.stop)
            reports = await settle_or_cancel(work, request, settings.bridge_stop_timeout_seconds)
        except asyncio.CancelledError:
            if not request.requested:
                raise
            reports = []
    _print_summary(reports, dry_run=args.dry_run)
    if request.requested:
        name = request.signal.name if request.signal is not None else "a signal"
        print(
            f"bridge: backfill stopped by {name} before it finished; the pages in flight were "
            "settled, so the state is consistent: rerun the same `bridge backfill` to resume "
            "after the last settled page", file=sys.stderr,
        )  # fmt: skip
        return EXIT_FATAL
    return EXIT_DEAD_LETTERS if any(r.failed for r in reports) else EXIT_OK


async def run_backfill(
    settings: Settings,
    mappings: dict[str, Mapping],
    names: list[str],
    options: SyncOptions,
    *,
    stop: asyncio.Event | None = None,
) -> list[RunReport]:
    """`pipeline.backfill` wired from settings (the leases are the worker's: one writer each)."""
    from bridge.progress import progress_for
    lease = wiring.lease_config(settings, store_leases.holder_id("backfill"))
    wiring.check_api_settings(settings)
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        async with wiring.open_services(settings, pool) as services:
            return await backfill(services, mappings, names, options, lease,
                                  progress=lambda: progress_for(sys.stderr), stop=stop)  # fmt: skip


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the worker until a stop signal; raises BridgeError if it had to stop on its own."""
    from bridge.metrics import Metrics
    from bridge.worker import Worker
    mappings = load_mappings(settings.bridge_mappings)
    holder = store_leases.holder_id("worker")
    config = wiring.worker_config(settings, holder)
    wiring.check_api_settings(settings)
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        metrics = Metrics()
        async with wiring.open_services(settings, pool, metrics=metrics) as services:
            await Worker(mappings, services, metrics, config, holder).run()
    return EXIT_OK


async def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import web

    secret = settings.webhook_secret()
    if secret is None:
        raise ConfigError(
            "OUTREACH_WEBHOOK_SECRET is not set; `bridge web` only serves the webhook intake, "
            "so set it (the same value as for `bridge webhooks ensure`) or run no web process"
        )
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        await web.serve(pool, settings.port, secret)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import status
    try:
        mappings = load_mappings(settings.bridge_mappings)
    except ConfigError:
        mappings = {}
    webhooks = frozenset(
        name for name, m in mappings.items() if settings.webhook_secret() and not m.source.custom_object
    )
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        rows = await status.collect(pool, list(mappings), webhooks)
    if getattr(args, "check", False):
        return _check(rows, args, settings)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return EXIT_OK
    for r in rows:
        counts = " ".join(f"{k}={v}" for k, v in r.last_run_counts.items())
        lag = f"{r.lag_seconds:.0f}s" if r.lag_seconds is not None else "never synced"
        print(
            f"{r.mapping}: records={r.records} dead_letters={r.dead_letters} "
            f"watermark={r.watermark or '-'}{' (resuming)' if r.resuming else ''} "
            f"last_run={r.last_run_status or '-'} {counts} lag={lag} held_by={r.held_by or '-'}"
        )
        fresh = (f"; last change reached Zendesk {r.change_to_write_seconds:.1f}s after it was made "
                 f"({r.change_to_write_by})" if r.change_to_write_seconds is not None else "")  # fmt: skip
        print(f"  trigger: {r.trigger}{fresh}")
        if r.parked_links:
            age = f"{r.oldest_parked_seconds:.0f}s" if r.oldest_parked_seconds is not None else "-"
            print(f"  parked links: {r.parked_links}, oldest waiting {age}")
        if r.last_repair:
            fix = r.last_repair
            print(f"  last repair: {fix['kind']} {fix['status']} by {fix['actor'] or '-'} at "
                  f"{fix['started_at']}: {fix['note'] or fix['error'] or ''}")
        if r.last_verify:
            print(f"  last verify: {_verify_line(r.last_verify)}")
    return EXIT_OK


def _verify_line(last: dict[str, object]) -> str:
    kinds = ", ".join(f"{last.get(k, 0)} {k}" for k in ("edited", "deleted", "unknown", "stale"))
    found = sum(int(str(last.get(k) or 0)) for k in ("edited", "deleted", "unknown", "stale"))
    repaired = f", {last['repaired']} repaired" if last.get("repaired") else ""
    verdict = "clean" if found == 0 else f"{found} difference(s): {kinds}{repaired}"
    return f"{last.get('finished_at') or '-'} via the {last.get('source')}: {verdict}"


def _check(rows: list[status.MappingStatus], args: argparse.Namespace, settings: Settings) -> int:
    """`status --check`: exit 0 when every mapping is healthy, else 1 with one line per reason."""
    from bridge import status_check
    limits = wiring.status_thresholds(settings)
    if args.max_dead_letters is not None:
        limits = replace(limits, max_dead_letters=args.max_dead_letters)
    if args.max_lag_seconds is not None:
        limits = replace(limits, max_lag_seconds=args.max_lag_seconds)
    found = status_check.problems(rows, limits)
    if not rows:
        found.append("no mappings found; check BRIDGE_MAPPINGS")
    for line in found:
        print(f"UNHEALTHY {line}")
    if found:
        return EXIT_DEAD_LETTERS
    print(f"OK {len(rows)} mapping(s) healthy (dead letters <= {limits.max_dead_letters}, "
          f"lag <= {limits.max_lag_seconds:.0f}s)")  # fmt: skip
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import demo

    return await demo.run(settings, vehicles=args.vehicles)


def _print_summary(reports: list[RunReport], *, dry_run: bool) -> None:
    verb = "would write" if dry_run else "written"
    for r in reports:
        print(
            f"{r.mapping}: {r.status}; fetched {r.fetched}, {verb} {r.written}, "
            f"skipped {r.skipped}, failed {r.failed} in {r.seconds:.1f}s"
        )
