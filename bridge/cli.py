"""The `bridge` command: parse arguments, build Settings, wire objects, map errors to exits.

Exit codes (DESIGN.md): 0 done; 1 finished but some records were dead-lettered; 2 bad
configuration or input, nothing changed; 3 fatal runtime error, state consistent, a rerun
resumes. This module alone maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge import logs, status, wiring
from bridge.errors import BridgeError, ConfigError
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import cycles, sync_order
from bridge.pipeline.report import RunReport
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.progress import progress_for
from bridge.settings import Settings, load_settings
from bridge.store import migrate as store_migrate

EXIT_OK, EXIT_DEAD_LETTERS, EXIT_CONFIG, EXIT_FATAL = 0, 1, 2, 3

log = logs.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_format, settings.log_level)
        handler: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.handler
        return asyncio.run(handler(args, settings))
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        log.error("fatal_error", error_type=type(exc).__name__, error=str(exc))
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("bridge: interrupted; state is consistent, rerun to resume", file=sys.stderr)
        return EXIT_FATAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)
    sub.add_parser("validate", help="check every mapping file").set_defaults(handler=cmd_validate)
    backfill = sub.add_parser("backfill", help="sync mappings once, then exit")
    backfill.add_argument("mappings", nargs="*", metavar="MAPPING")
    backfill.add_argument("--full", action="store_true", help="ignore checkpoints, read everything")
    backfill.add_argument("--since", type=_iso_time, help="read records updated since ISO8601")
    backfill.add_argument("--dry-run", action="store_true", help="translate and count, write nothing")
    backfill.set_defaults(handler=cmd_backfill)
    st = sub.add_parser("status", help="where each mapping stands")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=cmd_status)
    demo = sub.add_parser("demo", help="run the whole story against the sandbox, locally")
    demo.add_argument("--vehicles", type=int, default=500)
    demo.set_defaults(handler=cmd_demo)
    return parser


def _iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r} is not an ISO8601 time; use e.g. 2024-07-25T13:18:30Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with wiring.open_pool(settings) as pool:
        applied = await store_migrate.migrate(pool)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return EXIT_OK


async def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    print(f"{len(mappings)} mapping(s) OK in {settings.bridge_mappings}")
    print("sync order: " + " → ".join(sync_order(mappings)))
    for cycle in cycles(mappings):
        print("cycle (settled by parked links): " + " → ".join(cycle))
    return EXIT_OK


async def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    names = _select(mappings, args.mappings)
    options = SyncOptions(
        full=args.full,
        since=args.since,
        dry_run=args.dry_run,
        kind="dry_run" if args.dry_run else "backfill",
        actor=os.environ.get("USER") or "backfill",
        overlap=_overlap(settings),
        batch_size=settings.bridge_batch_size,
        job_concurrency=settings.bridge_job_concurrency,
        queue_pages=settings.bridge_queue_pages,
        pages_in_flight=settings.bridge_pages_in_flight,
    )
    reports = await run_backfill(settings, mappings, names, options)
    _print_summary(reports, dry_run=args.dry_run)
    return EXIT_DEAD_LETTERS if any(r.failed for r in reports) else EXIT_OK


async def run_backfill(
    settings: Settings, mappings: dict[str, Mapping], names: list[str], options: SyncOptions
) -> list[RunReport]:
    """One pass over the named mappings in dependency order (also used by the demo)."""
    reports = []
    async with wiring.open_pool(settings) as pool:
        await _require_migrated(settings, pool)
        async with wiring.open_services(settings, pool) as services:
            for name in names:
                progress = progress_for(sys.stderr)
                reports.append(await sync_mapping(mappings[name], services, options, progress))
    return reports


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    try:
        names = list(load_mappings(settings.bridge_mappings))
    except ConfigError:
        names = []
    async with wiring.open_pool(settings) as pool:
        rows = await status.collect(pool, names)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return EXIT_OK
    for r in rows:
        counts = " ".join(f"{k}={v}" for k, v in r.last_run_counts.items())
        lag = f"{r.lag_seconds:.0f}s" if r.lag_seconds is not None else "never synced"
        print(
            f"{r.mapping}: records={r.records} dead_letters={r.dead_letters} "
            f"watermark={r.watermark or '-'}{' (resuming)' if r.resuming else ''} "
            f"last_run={r.last_run_status or '-'} {counts} lag={lag}"
        )
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import demo

    return await demo.run(settings, vehicles=args.vehicles)


async def _require_migrated(settings: Settings, pool: Any) -> None:
    pending = await store_migrate.pending(pool)
    if not pending:
        return
    if settings.database_url is None:  # the embedded, local database: just bring it up to date
        await store_migrate.migrate(pool)
        return
    raise ConfigError(
        f"the database has {len(pending)} pending migration(s) ({', '.join(pending)}); "
        "run `bridge migrate` first"
    )


def _select(mappings: dict[str, Mapping], wanted: list[str]) -> list[str]:
    unknown = sorted(set(wanted) - set(mappings))
    if unknown:
        raise ConfigError(
            f"unknown mapping(s): {', '.join(unknown)}; known: {', '.join(sorted(mappings))}"
        )
    order = sync_order(mappings)
    return [n for n in order if n in wanted] if wanted else order


def _overlap(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.bridge_overlap_seconds)


def _print_summary(reports: list[RunReport], *, dry_run: bool) -> None:
    verb = "would write" if dry_run else "written"
    for r in reports:
        print(
            f"{r.mapping}: {r.status}; fetched {r.fetched}, {verb} {r.written}, "
            f"skipped {r.skipped}, failed {r.failed} in {r.seconds:.1f}s"
        )
