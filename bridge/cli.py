"""The `bridge` command: parse arguments, build Settings, wire objects, map errors to exits.

Exit codes (DESIGN.md): 0 done; 1 finished but some records were dead-lettered; 2 bad
configuration or input, nothing changed; 3 fatal runtime error, state consistent, a rerun
resumes. This module alone maps errors to exit codes; every command runs inside the store's
database error boundary, so a database failure exits 3 (or 2) with a message, never 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge import logs
from bridge.commands import repair, schema, sync
from bridge.commands.common import EXIT_CONFIG, EXIT_FATAL
from bridge.errors import BridgeError, ConfigError
from bridge.settings import Settings, load_settings
from bridge.store import pool as store_pool

log = logs.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_format, settings.log_level)
        handler: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.handler
        with store_pool.boundary(_database(settings)):  # no driver error leaves as a traceback
            with _lean_gc():
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


@contextmanager
def _lean_gc() -> Iterator[None]:
    """Fewer, cheaper cyclic collections while a command runs: a sync allocates a few
    container objects per field of every record and frees them by reference counting, yet
    each 700 allocations started a collection that walked every young object, and every full
    one walked the whole imported code too (a sixth of a dry run's CPU). Start-up objects
    live as long as the process, so they are frozen out of collections; the young generation
    collects every 10,000. Both are undone afterwards (for callers of `main` in-process)."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _database(settings: Settings) -> str:
    """How error messages name the database the command works on."""
    if settings.database_url is None:
        return f"the embedded Postgres in {settings.bridge_data_dir}"
    return store_pool.describe(settings.database_url.get_secret_value())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=sync.cmd_migrate)
    validate = sub.add_parser("validate", help="check every mapping file")
    validate.add_argument("--remote", action="store_true",
                          help="also check against the live Outreach schema and Zendesk fields")
    validate.set_defaults(handler=schema.cmd_validate)
    schema_cmd = sub.add_parser("schema", help="Zendesk custom objects and fields for the mappings")
    schema_sub = schema_cmd.add_subparsers(dest="schema_command", required=True)
    plan = schema_sub.add_parser("plan", help="show what is missing or differs; changes nothing")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(handler=schema.cmd_schema_plan)
    schema_sub.add_parser("apply", help="create what is missing (never deletes or retypes)").set_defaults(
        handler=schema.cmd_schema_apply)
    mappings_cmd = sub.add_parser("mappings", help="work with mapping files")
    mappings_sub = mappings_cmd.add_subparsers(dest="mappings_command", required=True)
    scaffold = mappings_sub.add_parser("scaffold", help="a starter mapping from the Outreach schema")
    scaffold.add_argument("type", metavar="OUTREACH_TYPE", help="custom object internal name, or e.g. prospects")
    scaffold.add_argument("--object", metavar="KEY", help="Zendesk object key (default: the type, singular)")
    scaffold.add_argument("--out", metavar="FILE", type=Path, help="write here (default: print)")
    scaffold.set_defaults(handler=schema.cmd_mappings_scaffold)
    backfill = sub.add_parser("backfill", help="sync mappings once, then exit")
    backfill.add_argument("mappings", nargs="*", metavar="MAPPING")
    backfill.add_argument("--full", action="store_true", help="ignore checkpoints, read everything")
    backfill.add_argument("--since", type=_iso_time, help="read records updated since ISO8601")
    backfill.add_argument("--dry-run", action="store_true", help="translate and count, write nothing")
    backfill.set_defaults(handler=sync.cmd_backfill)
    st = sub.add_parser("status", help="where each mapping stands")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=sync.cmd_status)
    demo = sub.add_parser("demo", help="run the whole story against the sandbox, locally")
    demo.add_argument("--vehicles", type=int, default=500)
    demo.set_defaults(handler=sync.cmd_demo)
    sub.add_parser("worker", help="run the schedules until SIGTERM; /healthz /readyz /metrics on $PORT").set_defaults(
        handler=sync.cmd_worker)
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


def _add_repair_commands(sub: Any) -> None:
    rec = sub.add_parser("reconcile", help="delete or mark records gone from Outreach")
    rec.add_argument("mappings", nargs="*", metavar="MAPPING")
    rec.add_argument("--dry-run", action="store_true", help="count what is missing, change nothing")
    rec.add_argument("--force", action="store_true", help="delete past the safety share")
    rec.set_defaults(handler=repair.cmd_reconcile)
    dl = sub.add_parser("dead-letters", help="list, retry or purge dead letters")
    dl.add_argument("action", choices=["list", "retry", "purge"])
    dl.add_argument("--mapping", metavar="M")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(handler=repair.cmd_dead_letters)
    reset = sub.add_parser("reset", help="clear a checkpoint so the next run is full")
    reset.add_argument("mapping", metavar="MAPPING")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=repair.cmd_reset)
