"""The `bridge` command: parse arguments, read Settings, run a command, map errors to exits.

Exit codes (DESIGN.md): 0 done; 1 finished but some records were dead-lettered; 2 bad
configuration or input, nothing changed; 3 fatal runtime error, state consistent, a rerun
resumes. This module alone maps errors to exit codes; every command runs inside the store's
database error boundary, so a database failure exits 3 (or 2) with a message, never 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge import logs
from bridge.commands.common import EXIT_CONFIG, EXIT_FATAL
from bridge.errors import BridgeError, ConfigError
from bridge.settings import Settings, load_settings
from bridge.store import pool as store_pool

log = logs.get_logger(__name__)

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_format, settings.log_level)
        handler: Handler = args.handler
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
    except BrokenPipeError:
        # The reader went away (`… | head`). Point stdout at /dev/null so that the flush at
        # exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("bridge: standard output was closed by its reader; stopped (state is consistent)",
              file=sys.stderr)  # fmt: skip
        return EXIT_FATAL


@contextmanager
def _lean_gc() -> Iterator[None]:
    """Fewer, cheaper cyclic collections while a command runs: a sync allocates a few
    container objects per field of every record and frees them by reference counting, yet
    each 700 allocations started a collection that walked every young object, and every full
    one walked the whole imported code too (a sixth of a dry run's CPU). Start-up objects
    live as long as the process, so they are frozen out of collections, as they are: a
    collection first would walk them all once more, for the little garbage imports leave
    (a tenth of a short run's CPU). The young generation collects every 10,000. Both are
    undone afterwards (for callers of `main` in-process)."""
    thresholds = gc.get_threshold()
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


DESCRIPTION = """\
bridge keeps Zendesk custom object records in sync with Outreach records: it reads Outreach
lists page by page, translates each record through a mapping file (BRIDGE_MAPPINGS), upserts
the result into Zendesk with bulk jobs and keeps its state in Postgres (DATABASE_URL).

New here? `bridge demo` runs the whole story locally in a minute; `bridge sandbox` starts the
same fake Outreach and Zendesk and prints the environment to try every command by hand.
Configuration comes from environment variables (and a .env file): see the README."""

EPILOG = """\
exit codes: 0 done; 1 finished, but some records were dead-lettered (`bridge dead-letters
list`); 2 bad configuration or input, nothing changed; 3 fatal runtime error, state is
consistent and a rerun resumes.

`bridge COMMAND --help` describes each command."""


def _command_handler(module: str, name: str) -> Handler:
    """Command `name` of `bridge.commands.<module>`, imported only when it runs: each command
    loads what it needs and no more (a backfill neither the worker's scheduler and web server
    nor the terminal display), and a process's start-up is most of a short run's CPU."""

    async def run(args: argparse.Namespace, settings: Settings) -> int:
        handler: Handler = getattr(importlib.import_module(f"bridge.commands.{module}"), name)
        return await handler(args, settings)

    run.__qualname__ = f"{module}.{name}"
    return run


def _command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in `bridge --help`) and a description of its own."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action=_PrintVersion,
                        help="print the installed version of bridge and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "migrate", "create or update bridge's tables in Postgres",
             "Applies bridge's SQL migrations to DATABASE_URL (or the embedded Postgres). Run it\n"
             "once before any other command and after each upgrade; it is idempotent and safe\n"
             "from several processes at once.").set_defaults(handler=_command_handler("sync", "cmd_migrate"))  # fmt: skip
    _add_schema_commands(sub)
    backfill = _command(sub, "backfill", "sync mappings once, then exit",
                        "Syncs the mappings once, in dependency order, from where their last run\n"
                        "stopped (their checkpoints), then exits. Start with --dry-run to see what\n"
                        "would be written, and --dry-run --diff to see it record by record, field\n"
                        "by field.")  # fmt: skip
    backfill.add_argument("mappings", nargs="*", metavar="MAPPING",
                          help="mapping names (file names without .yaml); default: all")  # fmt: skip
    backfill.add_argument("--full", action="store_true", help="ignore checkpoints, read everything")
    backfill.add_argument("--since", type=_iso_time, metavar="TIME", help="read records updated since ISO8601")
    backfill.add_argument("--dry-run", action="store_true", help="translate and count, write nothing")
    backfill.add_argument("--diff", action="store_true",
                          help="with --dry-run: per record, whether a run would create, update, leave it "
                               "unchanged or dead-letter it, and each update field by field against the "
                               "payload last written; makes no Zendesk request and writes nothing. "
                               "Lookups are resolved from Postgres only (the id map, the people "
                               "directory); others show as (unresolved: would park ...) or (unresolved: "
                               "would ask Zendesk, else park): see the README. Items Zendesk would refuse are known "
                               "only by writing: they count as creates or updates")  # fmt: skip
    backfill.add_argument("--json", action="store_true",
                          help="with --diff: JSON Lines, one object per record and one summary per mapping")
    backfill.add_argument("--limit", type=int, metavar="N",
                          help="with --diff: updates and dead letters shown per mapping (default 20)")
    backfill.set_defaults(handler=_command_handler("sync", "cmd_backfill"))
    st = _command(sub, "status", "where each mapping stands",
                  "Per mapping: records synced, dead letters, parked links, watermark, the last\n"
                  "run and its counts, lag, and which process holds it.")  # fmt: skip
    st.add_argument("--json", action="store_true", help="print JSON instead of text")
    st.add_argument("--check", action="store_true",
                    help="exit 0 if every mapping is healthy, else 1 and print why (for cron and schedulers)")
    st.add_argument("--max-dead-letters", type=int, metavar="N",
                    help="--check: more dead letters than this is unhealthy ($BRIDGE_CHECK_MAX_DEAD_LETTERS, 0)")
    st.add_argument("--max-lag-seconds", type=float, metavar="S",
                    help="--check: lag over this is unhealthy ($BRIDGE_CHECK_MAX_LAG_SECONDS, 3600)")
    st.set_defaults(handler=_command_handler("sync", "cmd_status"))
    worker = _command(sub, "worker", "run every mapping on its schedule until SIGTERM",
                      "The long-running process: runs each mapping on its schedule (and upkeep in\n"
                      "between) until SIGTERM or SIGINT, then stops cleanly. Serves /healthz,\n"
                      "/readyz and /metrics on $PORT. Several replicas may share one database.")  # fmt: skip
    worker.set_defaults(handler=_command_handler("sync", "cmd_worker"))
    _add_explain_command(sub)
    _add_local_commands(sub)
    _add_repair_commands(sub)
    _add_webhook_commands(sub)
    return parser


def _add_webhook_commands(sub: Any) -> None:
    web = _command(sub, "web", "only the webhook intake and health endpoints on $PORT",
                   "Serves POST /webhooks/outreach, /healthz and /readyz on $PORT and stores each\n"
                   "delivery in Postgres for the workers to drain; runs no schedule. For platforms\n"
                   "that send HTTP to a separate process (Heroku's web dyno). Needs\n"
                   "OUTREACH_WEBHOOK_SECRET.")  # fmt: skip
    web.set_defaults(handler=_command_handler("sync", "cmd_web"))
    hooks = _command(sub, "webhooks", "the Outreach webhooks that trigger targeted syncs",
                     "ensure: create or update one webhook per standard Outreach type a mapping\n"
                     "reads, pointing at BRIDGE_PUBLIC_URL/webhooks/outreach with\n"
                     "OUTREACH_WEBHOOK_SECRET, and remove bridge's webhooks no mapping needs.\n"
                     "status: each one's state, why Outreach disabled it, and the last delivery.\n"
                     "remove: delete bridge's webhooks (others are never touched).")  # fmt: skip
    hooks.add_argument("action", choices=["ensure", "status", "remove"], help="what to do")
    hooks.add_argument("--json", action="store_true", help="status as JSON")
    hooks.set_defaults(handler=_command_handler("webhooks", "cmd_webhooks"))


class _PrintVersion(argparse.Action):
    """argparse's `version` action, reading the installed version only when asked (reading
    the package metadata is a noticeable part of every other command's start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        print(f"bridge {_version()}")
        parser.exit()


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("bridge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_schema_commands(sub: Any) -> None:
    validate = _command(sub, "validate", "check every mapping file",
                        "Checks every mapping file in BRIDGE_MAPPINGS and reports every problem with\n"
                        "its file and key path, then prints the sync order. Needs no credentials\n"
                        "unless --remote.")  # fmt: skip
    validate.add_argument("--remote", action="store_true",
                          help="also check against the live Outreach schema and Zendesk fields")
    validate.set_defaults(handler=_command_handler("schema", "cmd_validate"))
    schema_cmd = _command(sub, "schema", "Zendesk custom objects and fields for the mappings",
                          "Compares the mappings with the custom objects and fields in Zendesk\n"
                          "(plan) and creates what is missing (apply).")  # fmt: skip
    schema_sub = schema_cmd.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    plan = _command(schema_sub, "plan", "show what is missing or differs; changes nothing",
                    "Shows which Zendesk custom objects and fields the mappings need that are\n"
                    "missing or differ, and which Outreach fields changed. Changes nothing.")  # fmt: skip
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_command_handler("schema", "cmd_schema_plan"))
    _command(schema_sub, "apply", "create what is missing (never deletes or retypes)",
             "Creates the Zendesk custom objects and fields the plan shows as missing, within\n"
             "Zendesk's limits. It never deletes or retypes anything.").set_defaults(
        handler=_command_handler("schema", "cmd_schema_apply"))  # fmt: skip
    mappings_cmd = _command(sub, "mappings", "work with mapping files",
                            "Helpers to write mapping files (one YAML file per mapping in\n"
                            "BRIDGE_MAPPINGS; the file name is the mapping's name).")  # fmt: skip
    mappings_sub = mappings_cmd.add_subparsers(dest="mappings_command", required=True, metavar="ACTION")
    scaffold = _command(mappings_sub, "scaffold", "a starter mapping from the Outreach schema",
                        "Reads an Outreach type's schema and writes a commented starter mapping:\n"
                        "one field per attribute, lookups for its relationships. Edit it, then run\n"
                        "`bridge validate` and `bridge schema plan`.")  # fmt: skip
    scaffold.add_argument("type", metavar="OUTREACH_TYPE", help="custom object internal name, or e.g. prospects")
    scaffold.add_argument("--object", metavar="KEY", help="Zendesk object key (default: the type, singular)")
    scaffold.add_argument("--out", metavar="FILE", type=Path, help="write here (default: print)")
    scaffold.set_defaults(handler=_command_handler("schema", "cmd_mappings_scaffold"))


def _add_local_commands(sub: Any) -> None:
    demo = _command(sub, "demo", "run the whole story against the sandbox, locally",
                    "Starts a fake Outreach and Zendesk on loopback and a Postgres of its own (the\n"
                    "embedded one unless DATABASE_URL is set; database bridge_demo), then\n"
                    "scaffolds, plans, applies, backfills, changes records and syncs again,\n"
                    "telling each step. Needs no credentials.")  # fmt: skip
    demo.add_argument("--vehicles", type=int, default=500, help="sample vehicles to seed (default 500)")
    demo.set_defaults(handler=_command_handler("sync", "cmd_demo"))
    box = _command(sub, "sandbox", "start the fake APIs and a database to try bridge by hand",
                   "Starts the sandbox Outreach and Zendesk on loopback with sample data, and a\n"
                   "fresh database (bridge_sandbox in the embedded Postgres, or DATABASE_URL as\n"
                   "given), prints the environment to export in another shell, and runs until\n"
                   "Ctrl-C or SIGTERM. Then try `bridge migrate`, `schema apply`, `backfill`,\n"
                   "`worker` and `status` against it.")  # fmt: skip
    box.add_argument("--vehicles", type=int, default=200, help="sample vehicles to seed (default 200)")
    box.add_argument("--env-file", metavar="FILE", type=Path,
                     help="also write the environment to FILE (e.g. .env, which bridge reads)")  # fmt: skip
    box.set_defaults(handler=_command_handler("sandbox", "cmd_sandbox"))


def _iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r} is not an ISO8601 time; use e.g. 2024-07-25T13:18:30Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _add_repair_commands(sub: Any) -> None:
    rec = _command(sub, "reconcile", "delete or mark records gone from Outreach",
                   "Lists the ids of each mapping in Outreach and finds the records synced to\n"
                   "Zendesk whose source is gone; deletes them in Zendesk or marks them, as the\n"
                   "mapping says. One run deletes at most BRIDGE_RECONCILE_MAX_DELETE_SHARE of a\n"
                   "mapping unless --force.")  # fmt: skip
    rec.add_argument("mappings", nargs="*", metavar="MAPPING", help="mapping names; default: all")
    rec.add_argument("--dry-run", action="store_true", help="count what is missing, change nothing")
    rec.add_argument("--force", action="store_true", help="delete past the safety share")
    rec.set_defaults(handler=_command_handler("repair", "cmd_reconcile"))
    dl = _command(sub, "dead-letters", "list, retry or purge dead letters",
                  "Dead letters are the records that could not be translated or written, each\n"
                  "with its error. List them, retry them now (after fixing the mapping or the\n"
                  "data), or purge them.")  # fmt: skip
    dl.add_argument("action", choices=["list", "retry", "purge"], help="what to do with them")
    dl.add_argument("--mapping", metavar="M", help="only this mapping's dead letters")
    dl.add_argument("--json", action="store_true", help="print JSON instead of text (list)")
    dl.set_defaults(handler=_command_handler("repair", "cmd_dead_letters"))
    reset = _command(sub, "reset", "clear a checkpoint so the next run is full",
                     "Clears a mapping's checkpoint, so its next run reads every record again.\n"
                     "The id map is kept, so nothing is duplicated in Zendesk.")  # fmt: skip
    reset.add_argument("mapping", metavar="MAPPING", help="the mapping to reset")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=_command_handler("repair", "cmd_reset"))
    _add_verify_command(sub)


def _add_verify_command(sub: Any) -> None:
    check = _command(sub, "verify", "compare Zendesk's records with what bridge wrote",
                     "Reads the mapping's Zendesk records (the incremental export, from where the\n"
                     "last verify stopped, so a repeat reads only what changed; a full listing\n"
                     "where the export is not available) and finds records edited or deleted in\n"
                     "Zendesk by hand, records with bridge's external ids that bridge never wrote,\n"
                     "and id-map rows whose Zendesk record is gone.\n"
                     "--repair rewrites the edited and deleted records from Outreach's current\n"
                     "version (under the mapping's lease); unknown records are never deleted.\n\n"
                     "exit codes: 0 Zendesk matches (or --repair rewrote every edited and deleted\n"
                     "record); 1 differences remain (found without --repair, not repairable, or\n"
                     "unknown records); 2 unknown mapping or bad configuration; 3 fatal error\n"
                     "(rerun: it resumes from the stored cursor).")  # fmt: skip
    check.add_argument("mapping", metavar="MAPPING", help="the mapping to verify")
    check.add_argument("--repair", action="store_true",
                       help="rewrite the edited and deleted records from Outreach")
    check.add_argument("--json", action="store_true", help="print the whole report as JSON")
    check.set_defaults(handler=_command_handler("verify", "cmd_verify"))


EXPLAIN_HELP = """\
Tells one record's story from bridge's own state: the version it last read (Outreach
updatedAt, when, which run), the payload the CURRENT mapping file would write, field by field
next to the payload last written (* marks the fields that differ), the Zendesk record id, the
recent changelog (newest first), its dead letter, parked links and refused lookup ids, and,
when the record is not in Zendesk, why in one sentence: filtered out by source.filter, not
read yet, dead-lettered, deleted in Outreach (kept or removed per on_delete), or never seen.

ID is an Outreach id (123) or an external id (outreach:vehicles:123, or the mapping's own).

When it asks the APIs: a record bridge's state settles (an id-map row, a dead letter, or a
changelog row saying bridge deleted it) is explained from Postgres alone, with no request and
no credentials. Any other record costs ONE Outreach request (the record by id), which tells
never seen, filtered out and not read yet apart. --live costs one Outreach and one Zendesk
request, whatever the state. It writes nothing anywhere.

exit codes: 0 explained (also when the record is not in Zendesk); 2 unknown mapping or an ID
that is neither; 3 the database or an API failed."""


def _add_explain_command(sub: Any) -> None:
    parser = _command(sub, "explain", "why one record looks the way it does in Zendesk", EXPLAIN_HELP)
    parser.add_argument("mapping", metavar="MAPPING", help="the mapping's name")
    parser.add_argument("id", metavar="ID", help="an Outreach id or an external id")
    parser.add_argument("--json", action="store_true", help="print JSON with stable keys instead of text")
    parser.add_argument("--live", action="store_true",
                        help="also read the record from Outreach and Zendesk (one request each)")  # fmt: skip
    parser.set_defaults(handler=_command_handler("explain", "cmd_explain"))
