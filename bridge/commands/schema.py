"""Commands about schemas: plan and apply Zendesk objects, scaffold mappings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable

from bridge import schema
from bridge.commands.common import EXIT_OK, open_apis
from bridge.errors import ConfigError, MappingError
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import cycles, sync_order
from bridge.outreach.schema import is_standard
from bridge.scheduler import runs_per_hour
from bridge.schema import plan as schema_plan
from bridge.schema import remote as schema_remote
from bridge.schema import report as schema_report
from bridge.schema import scaffold as schema_scaffold
from bridge.schema.desired import wanted_objects
from bridge.settings import Settings

OUTREACH_HOURLY_LIMIT = 10_000  # per user (api/outreach.md, "Rate limits")
WEBHOOK_CHECKS_PER_HOUR = 12  # the worker's webhook check, once per 5-minute upkeep, per replica


async def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    print(f"{len(mappings)} mapping(s) OK in {settings.bridge_mappings}")
    print("sync order: " + " → ".join(sync_order(mappings)))
    for cycle in cycles(mappings):
        print("cycle (settled by parked links): " + " → ".join(cycle))
    hourly, line = outreach_steady_state(mappings.values(), webhooks=settings.webhook_secret() is not None)
    print(line)
    if hourly > OUTREACH_HOURLY_LIMIT / 2:
        print(
            f"warning: the schedules alone need {hourly / OUTREACH_HOURLY_LIMIT:.0%} of Outreach's "
            f"{OUTREACH_HOURLY_LIMIT:,} requests/hour per user, leaving little for backfills and "
            "changes; lengthen the shortest `schedule.every`", file=sys.stderr,
        )  # fmt: skip
    if args.remote:
        files = schema_remote.mapping_files(settings.bridge_mappings)
        async with open_apis(settings) as services:
            problems = await schema_remote.remote_problems(
                services.outreach, services.zendesk, mappings, files, sync_order(mappings))
        if problems:
            raise MappingError(problems)
        print("remote: every mapping matches the Outreach schema and the Zendesk fields")
    return EXIT_OK


def outreach_steady_state(mappings: Iterable[Mapping], *, webhooks: bool) -> tuple[float, str]:
    """Outreach requests per hour that every schedule needs when nothing changes: an
    incremental run that finds nothing new costs one request, plus the webhook check."""
    runs = sum(runs_per_hour(m.schedule) for m in mappings)
    hourly = runs + (WEBHOOK_CHECKS_PER_HOUR if webhooks else 0)
    line = (
        f"Outreach at steady state: about {hourly:,.0f} request(s)/hour for the schedules "
        f"({hourly / OUTREACH_HOURLY_LIMIT:.1%} of {OUTREACH_HOURLY_LIMIT:,}/hour per user), plus "
        "1 per 1,000 changed records and, per reconcile, 1 per 1,000 records"
    )
    return hourly, line


async def cmd_schema_plan(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    order = sync_order(mappings)
    async with open_apis(settings) as services:
        drift = schema_plan.source_drift(mappings, order, await services.outreach.source_types())
        plan = await schema_plan.make_plan(services.zendesk, wanted_objects(mappings, order), drift)
    print(json.dumps(plan.as_dict(), indent=2) if args.json else schema_report.plan_table(plan))
    return EXIT_OK


async def cmd_schema_apply(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    async with open_apis(settings) as services:
        changes = await schema.ensure_objects(services.zendesk, mappings, sync_order(mappings))
    print(schema_report.changes_text(changes))
    return EXIT_OK


async def cmd_mappings_scaffold(args: argparse.Namespace, settings: Settings) -> int:
    readers = schema_scaffold.readers_in(settings.bridge_mappings)
    name = args.out.stem if args.out else args.type
    async with open_apis(settings) as services:
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
