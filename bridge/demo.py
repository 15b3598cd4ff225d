"""`bridge demo`: the whole story locally, with no credentials and no database to set up.

It starts the embedded Postgres (unless DATABASE_URL is set) and the sandbox Outreach and
Zendesk on loopback, seeds them, creates the Zendesk objects, backfills, changes some
source records, syncs incrementally and prints what happened. The demo always works in a
database of its own (`bridge_demo`, recreated each time), so it never touches real state.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bridge import demo_live as live
from bridge import logs, schema, wiring
from bridge.mapping.load import load_mapping, load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import sync_order
from bridge.pipeline.backfill import LeaseConfig, backfill
from bridge.pipeline.report import RunReport
from bridge.pipeline.services import Services
from bridge.pipeline.sync import SyncOptions
from bridge.progress import progress_for
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from bridge.schema import plan as schema_plan
from bridge.schema import report as schema_report
from bridge.schema import scaffold
from bridge.schema.desired import wanted_objects
from bridge.settings import Settings
from bridge.store import leases, scratch
from bridge.store import migrate as store_migrate

DEMO_DATABASE = "bridge_demo"
CHANGED = 25
ADDED = 5


async def run(settings: Settings, *, vehicles: int = 500) -> int:
    began = time.monotonic()
    if "log_level" not in settings.model_fields_set:  # the story is told on stdout; logs only for trouble
        logs.configure(settings.log_format, "WARNING")
    mappings = load_mappings(settings.bridge_mappings)
    order = sync_order(mappings)
    dsn = await scratch.fresh_database(wiring.database_dsn(settings), DEMO_DATABASE)
    async with Sandbox() as sandbox:
        seed = seed_demo(sandbox, vehicles=vehicles)
        demo_settings = wiring.sandbox_settings(settings, (sandbox.outreach_url, sandbox.zendesk_url), seed, dsn)
        _say(f"sandbox Outreach at {sandbox.outreach_url}, Zendesk at {sandbox.zendesk_url}")
        _say(f"seeded {', '.join(f'{len(sandbox.outreach.ids(t))} {t}' for t in _types(mappings))}")
        async with wiring.open_pool(demo_settings) as pool:
            await store_migrate.migrate(pool)
            async with wiring.open_services(demo_settings, pool) as services:
                await _schema_story(services, mappings, order)
                options = SyncOptions(kind="demo", actor="demo", overlap=timedelta(seconds=1))
                lease = LeaseConfig(holder=leases.holder_id("demo"), ttl=30.0, wait=0.0)
                _say("backfill:")
                first = await _backfill(mappings, order, services, options, lease)
                touched = _change_source(sandbox)
                _say(f"changed {touched} vehicles and added {ADDED} in Outreach; incremental sync:")
                second = await _backfill(mappings, order, services, options, lease)
            _summary(sandbox, mappings, first, second, time.monotonic() - began)
            await live.worker_story(sandbox, demo_settings, pool, mappings)
    return 1 if any(r.failed for r in first + second) else 0


async def _schema_story(services: Services, mappings: dict[str, Mapping], order: list[str]) -> None:
    """Zendesk starts empty: scaffold from Outreach's schema, plan, then apply (issue 4)."""
    types = await services.outreach.source_types()
    starter = scaffold.scaffold(
        types["vehicles"], scaffold.ScaffoldOptions("vehicles", readers={"vehicle_brands": "vehicle_brands"}),
        "bridge mappings scaffold vehicles",
    )
    with tempfile.TemporaryDirectory() as folder:  # the starter must load as a mapping, unchanged
        path = Path(folder) / "vehicles.yaml"
        path.write_text(starter, encoding="utf-8")
        suggested = load_mapping(path, known={"vehicle_brands"})
    _say(f"Zendesk has {len(await services.zendesk.list_objects())} custom objects; `bridge mappings scaffold "
         f"vehicles` reads Outreach's schema and suggests {len(suggested.fields)} fields and "
         f"{len(suggested.relationships)} lookups")
    drift = schema_plan.source_drift(mappings, order, types)
    plan = await schema_plan.make_plan(services.zendesk, wanted_objects(mappings, order), drift)
    _say(f"schema plan: {schema_report.plan_summary(plan)}")
    changes = await schema.apply_plan(services.zendesk, plan)
    created = [c for c in changes if c.action == "created"]
    objects = sum(1 for c in created if c.field is None)
    _say(f"schema apply: limits checked, created {objects} object(s) and {len(created) - objects} field(s)")


async def _backfill(
    mappings: dict[str, Mapping], order: list[str], services: Services, options: SyncOptions,
    lease: LeaseConfig,
) -> list[RunReport]:
    """The same pass as `bridge backfill`: leases, dependency order, the final fill."""
    reports = await backfill(services, mappings, order, options, lease, progress=lambda: progress_for(sys.stdout))
    if not sys.stdout.isatty():  # the live table already showed it on a terminal
        for report in reports:
            _say(
                f"  {report.mapping}: {report.pages} page(s), fetched {report.fetched}, wrote "
                f"{report.written}, skipped {report.skipped}, failed {report.failed} "
                f"in {report.seconds:.2f}s"
            )
    return reports


def _change_source(sandbox: Sandbox) -> int:
    ids = sandbox.outreach.ids("vehicles")
    for vid in ids[:: max(1, len(ids) // CHANGED)][:CHANGED]:
        sandbox.outreach.update("vehicles", vid, color="Midnight Blue")
    brands = sandbox.outreach.ids("vehicle_brands")
    for n in range(ADDED):
        sandbox.outreach.put(
            "vehicles",
            {"vehicle_name": f"Demo car {n}", "speed": f"{90 + n}mph", "color": "Red", "electric": True},
            {"brand": brands[n % len(brands)] if brands else None, "main_driver": None},
        )
    return min(CHANGED, len(ids))


def _types(mappings: dict[str, Mapping]) -> list[str]:
    return sorted({m.source.type for m in mappings.values()})


def _summary(
    sandbox: Sandbox,
    mappings: dict[str, Mapping],
    first: list[RunReport],
    second: list[RunReport],
    seconds: float,
) -> None:
    _say("summary:")
    for a, b in zip(first, second, strict=True):
        m = mappings[a.mapping]
        in_zendesk = len(sandbox.zendesk.records(m.target.object))
        in_outreach = len(sandbox.outreach.ids(m.source.type))
        _say(
            f"  {a.mapping}: Outreach {in_outreach}, Zendesk {in_zendesk}; backfill wrote "
            f"{a.written} (failed {a.failed}); incremental fetched {b.fetched}, wrote {b.written}, "
            f"skipped {b.skipped} unchanged"
        )
        _say_lookups(sandbox, m)
    _say(
        f"  requests: Outreach {sandbox.counters.total('outreach')}, "
        f"Zendesk {sandbox.counters.total('zendesk')}; took {seconds:.1f}s"
    )


def _say_lookups(sandbox: Sandbox, mapping: Mapping) -> None:
    if not mapping.relationships:
        return
    records = sandbox.zendesk.records(mapping.target.object)
    for field in mapping.relationships:
        filled = sum(1 for r in records if r["custom_object_fields"].get(field))
        _say(f"    lookup {field}: set on {filled} of {len(records)} records")


def _say(text: str) -> None:
    print(text, flush=True)
