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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge import logs, schema, status, wiring
from bridge.errors import BridgeError, ConfigError, MappingError
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import cycles, sync_order
from bridge.outreach.schema import is_standard
from bridge.pipeline.park import fill_all
from bridge.pipeline.report import RunReport
from bridge.pipeline.reconcile import ReconcileOptions, reconcile_mapping
from bridge.pipeline.redrive import (
    RedriveOptions, letter_dict, purge_dead_letters, retry_dead_letters,
)
from bridge.pipeline.reset import reset_mapping
from bridge.pipeline.sync import Services, SyncOptions, sync_mapping
from bridge.progress import progress_for
from bridge.schema import plan as schema_plan
from bridge.schema import remote as schema_remote
from bridge.schema import report as schema_report
from bridge.schema import scaffold as schema_scaffold
from bridge.schema.desired import wanted_objects
from bridge.settings import Settings, load_settings
from bridge.store import dead_letters as store_dead_letters
from bridge.store import leases as store_leases
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
    validate = sub.add_parser("validate", help="check every mapping file")
    validate.add_argument("--remote", action="store_true",
                          help="also check against the live Outreach schema and Zendesk fields")
    validate.set_defaults(handler=cmd_validate)
    schema_cmd = sub.add_parser("schema", help="Zendesk custom objects and fields for the mappings")
    schema_sub = schema_cmd.add_subparsers(dest="schema_command", required=True)
    plan = schema_sub.add_parser("plan", help="show what is missing or differs; changes nothing")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(handler=cmd_schema_plan)
    schema_sub.add_parser("apply", help="create what is missing (never deletes or retypes)").set_defaults(
        handler=cmd_schema_apply)
    mappings_cmd = sub.add_parser("mappings", help="work with mapping files")
    mappings_sub = mappings_cmd.add_subparsers(dest="mappings_command", required=True)
    scaffold = mappings_sub.add_parser("scaffold", help="a starter mapping from the Outreach schema")
    scaffold.add_argument("type", metavar="OUTREACH_TYPE", help="custom object internal name, or e.g. prospects")
    scaffold.add_argument("--object", metavar="KEY", help="Zendesk object key (default: the type, singular)")
    scaffold.add_argument("--out", metavar="FILE", type=Path, help="write here (default: print)")
    scaffold.set_defaults(handler=cmd_mappings_scaffold)
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
    sub.add_parser("worker", help="run the schedules until SIGTERM; /healthz /readyz /metrics on $PORT").set_defaults(
        handler=cmd_worker)
    _add_repair_commands(sub)
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
    if args.remote:
        files = schema_remote.mapping_files(settings.bridge_mappings)
        async with _open_apis(settings) as services:
            problems = await schema_remote.remote_problems(
                services.outreach, services.zendesk, mappings, files, sync_order(mappings))
        if problems:
            raise MappingError(problems)
        print("remote: every mapping matches the Outreach schema and the Zendesk fields")
    return EXIT_OK


async def cmd_schema_plan(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    order = sync_order(mappings)
    async with _open_apis(settings) as services:
        drift = schema_plan.source_drift(mappings, order, await services.outreach.source_types())
        plan = await schema_plan.make_plan(services.zendesk, wanted_objects(mappings, order), drift)
    print(json.dumps(plan.as_dict(), indent=2) if args.json else schema_report.plan_table(plan))
    return EXIT_OK


async def cmd_schema_apply(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    async with _open_apis(settings) as services:
        changes = await schema.ensure_objects(services.zendesk, mappings, sync_order(mappings))
    print(schema_report.changes_text(changes))
    return EXIT_OK


async def cmd_mappings_scaffold(args: argparse.Namespace, settings: Settings) -> int:
    readers = schema_scaffold.readers_in(settings.bridge_mappings)
    name = args.out.stem if args.out else args.type
    async with _open_apis(settings) as services:
        types = await services.outreach.source_types()
        source = await schema_remote.locate_type(
            services.outreach, types, args.type, custom_object=not is_standard(args.type))
    options = schema_scaffold.ScaffoldOptions(name, args.object, readers)
    command = " ".join(["bridge mappings scaffold", args.type, *(["--object", args.object] if args.object else [])])
    text = schema_scaffold.scaffold(source, options, command)
    if args.out is None:
        print(text, end="")
        return EXIT_OK
    if args.out.exists():
        raise ConfigError(f"{args.out} already exists; choose another --out or remove it first")
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}; review it, then run `bridge schema plan`")
    return EXIT_OK


@asynccontextmanager
async def _open_apis(settings: Settings) -> AsyncIterator[Services]:
    """Both API clients (the pool holds the Outreach OAuth token store)."""
    async with wiring.open_pool(settings) as pool:
        await _require_migrated(settings, pool)
        async with wiring.open_services(settings, pool) as services:
            yield services


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
        async with wiring.open_services(settings, pool) as services, store_leases.hold_all(
            pool, store_leases.holder_id("backfill"), names, settings.bridge_lease_ttl_seconds,
            wait=settings.bridge_lease_wait_seconds, enabled=not options.dry_run,
        ) as run_held:  # the same per-mapping leases as the worker: never two writers at once
            for name in names:
                progress = progress_for(sys.stderr)
                work = sync_mapping(mappings[name], services, options, progress, mappings=mappings)
                reports.append(await run_held(name, work))
            if not options.dry_run:  # settles cycles: links parked before their target ran
                await fill_all(mappings, services.zendesk, pool, batch_size=options.batch_size,
                               concurrency=options.job_concurrency)  # fmt: skip
    return reports


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import worker

    await worker.run(settings)
    return EXIT_OK


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
            f"last_run={r.last_run_status or '-'} {counts} lag={lag} held_by={r.held_by or '-'}"
        )
        if r.parked_links:
            age = f"{r.oldest_parked_seconds:.0f}s" if r.oldest_parked_seconds is not None else "-"
            print(f"  parked links: {r.parked_links}, oldest waiting {age}")
        if r.last_repair:
            fix = r.last_repair
            print(f"  last repair: {fix['kind']} {fix['status']} by {fix['actor'] or '-'} at "
                  f"{fix['started_at']}: {fix['note'] or fix['error'] or ''}")
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge import demo

    return await demo.run(settings, vehicles=args.vehicles)


# --- repair: reconcile, dead letters, reset (logic in pipeline/reconcile, redrive, reset) ---
def _add_repair_commands(sub: Any) -> None:
    rec = sub.add_parser("reconcile", help="delete or mark records gone from Outreach")
    rec.add_argument("mappings", nargs="*", metavar="MAPPING")
    rec.add_argument("--dry-run", action="store_true", help="count what is missing, change nothing")
    rec.add_argument("--force", action="store_true", help="delete past the safety share")
    rec.set_defaults(handler=cmd_reconcile)
    dl = sub.add_parser("dead-letters", help="list, retry or purge dead letters")
    dl.add_argument("action", choices=["list", "retry", "purge"])
    dl.add_argument("--mapping", metavar="M")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(handler=cmd_dead_letters)
    reset = sub.add_parser("reset", help="clear a checkpoint so the next run is full")
    reset.add_argument("mapping", metavar="MAPPING")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=cmd_reset)


def _actor() -> str:
    return os.environ.get("USER") or "cli"


@asynccontextmanager
async def _leased(
    settings: Settings, kind: str, names: list[str], *, enabled: bool = True
) -> AsyncIterator[tuple[Services, Callable[[str, Awaitable[Any]], Awaitable[Any]]]]:
    """Both APIs, and the mappings' leases held as a backfill holds them (one writer each)."""
    async with _open_apis(settings) as services, store_leases.hold_all(
        services.pool, store_leases.holder_id(kind), names, settings.bridge_lease_ttl_seconds,
        enabled=enabled,
    ) as held:
        yield services, held


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    options = ReconcileOptions(
        dry_run=args.dry_run, force=args.force, actor=_actor(),
        max_delete_share=settings.bridge_reconcile_max_delete_share,
        page_size=settings.bridge_reconcile_page_size,
        job_concurrency=settings.bridge_job_concurrency,
    )
    names = _select(mappings, args.mappings)
    async with _leased(settings, "reconcile", names, enabled=not args.dry_run) as (s, held):
        reports = [await held(n, reconcile_mapping(mappings[n], s, options)) for n in names]
    for r in reports:
        print(r.summary())
    if any(r.status in ("failed", "refused") for r in reports):
        return EXIT_FATAL
    return EXIT_DEAD_LETTERS if any(r.failed for r in reports) else EXIT_OK


async def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    wanted = _select(mappings, [args.mapping] if args.mapping else [])
    if args.action == "list":
        async with wiring.open_pool(settings) as pool, pool.acquire() as conn:
            letters = await store_dead_letters.list_letters(conn, args.mapping, limit=1000)
        _print_letters(letters, as_json=args.json)
        return EXIT_OK
    if args.action == "purge":
        async with wiring.open_pool(settings) as pool:
            for name in wanted:
                print(f"{name}: purged {await purge_dead_letters(pool, name, actor=_actor())}")
        return EXIT_OK
    options = RedriveOptions(actor=_actor(), batch_size=settings.bridge_batch_size)
    async with _leased(settings, "dead_letter_retry", wanted) as (s, held):
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
    _select(load_mappings(settings.bridge_mappings), [args.mapping])
    if not args.yes and not _confirm(f"reset {args.mapping}: its next run reads everything"):
        print("not reset; nothing changed", file=sys.stderr)
        return EXIT_CONFIG
    async with wiring.open_pool(settings) as pool:
        await _require_migrated(settings, pool)
        async with store_leases.hold_all(pool, store_leases.holder_id("reset"), [args.mapping],
                                         settings.bridge_lease_ttl_seconds):  # not mid-sync
            print((await reset_mapping(pool, args.mapping, actor=_actor())).summary())
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError(f"{question}; there is no terminal to confirm on, pass --yes")
    return input(f"{question}. Continue? [y/N] ").strip().lower() in ("y", "yes")


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
