"""The metric objects: request hook, run counts per page, rate-limit waits, text format; and
every counter against the sandbox's own counts after real runs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bridge import schema, wiring
from bridge.http.ratelimit import RateLimiter
from bridge.http.transport import RequestEvent
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import sync_order
from bridge.metrics import Metrics
from bridge.pipeline.report import RunReport
from bridge.pipeline.sync import SyncOptions, sync_mapping
from tests.fixtures_sandbox import SandboxWorld


def values(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_requests_are_counted_per_api_and_status_with_latency() -> None:
    metrics = Metrics()
    metrics.observe_request(RequestEvent("outreach", "GET", "/api/v2/x", 200, 0.02, None))
    metrics.observe_request(RequestEvent("outreach", "GET", "/api/v2/x", 429, 0.01, None))
    metrics.observe_request(RequestEvent("zendesk", "POST", "/api/v2/y", None, 30.0, "timeout"))
    assert values(metrics, "bridge_api_requests_total") == {
        (("api", "outreach"), ("status", "200")): 1,
        (("api", "outreach"), ("status", "429")): 1,
        (("api", "zendesk"), ("status", "error")): 1,
    }
    assert values(metrics, "bridge_api_request_seconds_count")[(("api", "outreach"), ("status", "200"))] == 1


def test_run_counts_are_added_page_by_page_once() -> None:
    metrics = Metrics()
    sink = metrics.run_metrics("vehicles")
    report = RunReport("vehicles", fetched=50, written=40, skipped=10)
    sink.page_settled(report)
    report.fetched, report.written, report.failed, report.status = 80, 69, 1, "partial"
    sink.page_settled(report)
    sink.run_finished(report)
    records = values(metrics, "bridge_records_total")
    assert records[(("mapping", "vehicles"), ("outcome", "fetched"))] == 80
    assert records[(("mapping", "vehicles"), ("outcome", "written"))] == 69
    assert records[(("mapping", "vehicles"), ("outcome", "failed"))] == 1
    assert values(metrics, "bridge_runs_total") == {(("mapping", "vehicles"), ("status", "partial")): 1}


def test_rate_limit_waits_are_summed_per_api() -> None:
    metrics = Metrics()
    limiters = [RateLimiter(), RateLimiter(), RateLimiter()]
    for api, limiter, waited in zip(("outreach", "outreach", "zendesk"), limiters, (1.5, 2.0, 0.25)):
        limiter.waited_seconds = waited
        metrics.track_limiter(api, limiter)
    assert values(metrics, "bridge_rate_limit_wait_seconds_total") == {
        (("api", "outreach"),): 3.5,
        (("api", "zendesk"),): 0.25,
    }


def test_the_scrape_carries_no_created_series() -> None:
    metrics = Metrics()
    metrics.observe_request(RequestEvent("outreach", "GET", "/api/v2/x", 200, 0.02, None))
    text = metrics.render().decode()
    assert "bridge_api_requests_total" in text and "_created" not in text


async def _worker_pass(world: SandboxWorld, metrics: Metrics, mappings: dict[str, Mapping]) -> None:
    """One pass over every mapping as the worker runs them: its options, its metric sinks."""
    options = SyncOptions(kind="worker", overlap=timedelta(seconds=1), batch_size=50, job_concurrency=4)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool, metrics=metrics) as s:
        for name in sync_order(mappings):
            await sync_mapping(mappings[name], s, options, metrics.run_metrics(name), mappings=mappings)


async def test_every_counter_agrees_with_the_sandbox_after_a_backfill_and_a_pass_with_changes(
    world: SandboxWorld,
) -> None:
    mappings = load_mappings(world.settings.bridge_mappings)
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        await schema.ensure_objects(s.zendesk, mappings, sync_order(mappings))
    sandbox, counters = world.sandbox, world.sandbox.counters
    counters.reset()
    metrics = Metrics()
    sandbox.faults.add("zendesk", "status", status=429, retry_after=0.05, every=7)
    sandbox.faults.add("outreach", "status", status=503, every=4)
    await _worker_pass(world, metrics, mappings)
    changed = sandbox.outreach.ids("vehicles")[:30]
    for vid in changed:
        sandbox.outreach.update("vehicles", vid, color="teal")
    before = values(metrics, "bridge_records_total")
    writes_before = len(counters.writes)
    await _worker_pass(world, metrics, mappings)
    records = values(metrics, "bridge_records_total")

    def grew(mapping: str, outcome: str) -> float:
        key = (("mapping", mapping), ("outcome", outcome))
        return records.get(key, 0.0) - before.get(key, 0.0)

    assert grew("vehicles", "written") == len(counters.writes) - writes_before == len(changed)
    for mapping, obj in (("vehicles", "vehicle"), ("vehicle_brands", "vehicle_brand")):
        written = records[(("mapping", mapping), ("outcome", "written"))]
        assert written == sum(counters.write_counts(obj).values()), mapping  # accepted, once each
        fetched = records[(("mapping", mapping), ("outcome", "fetched"))]
        skipped = records.get((("mapping", mapping), ("outcome", "skipped")), 0.0)
        assert fetched == written + skipped and skipped > 0  # the second pass re-read its overlap
    dsn = world.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT mapping, status, count(*) AS n FROM runs GROUP BY mapping, status")
        stored = await conn.fetch("SELECT mapping, sum(fetched) AS f, sum(written) AS w FROM runs GROUP BY mapping")
    finally:
        await conn.close()
    assert values(metrics, "bridge_runs_total") == {
        (("mapping", r["mapping"]), ("status", r["status"])): r["n"] for r in rows
    }
    for row in stored:
        assert records[(("mapping", row["mapping"]), ("outcome", "fetched"))] == row["f"]
        assert records[(("mapping", row["mapping"]), ("outcome", "written"))] == row["w"]
    served: Counter[tuple[tuple[str, str], ...]] = Counter()
    for entry in counters.entries():
        if entry.route != "oauth_tokens":  # token requests go around the request loop
            served[(("api", entry.api), ("status", str(entry.status)))] += 1
    assert values(metrics, "bridge_api_requests_total") == dict(served)
    assert served[(("api", "zendesk"), ("status", "429"))] > 0 and served[(("api", "outreach"), ("status", "503"))] > 0


async def test_the_last_verify_findings_are_gauges_by_mapping_and_kind(db_dsn: str) -> None:
    from bridge.metrics import Metrics
    from bridge.store import verify_state
    from bridge.store.pool import create_pool

    pool = await create_pool(db_dsn)
    try:
        async with pool.acquire() as conn:
            await verify_state.begin(conn, "vehicles", "export")
            await verify_state.finish(conn, "vehicles", {"edited": 2, "deleted": 1, "unknown": 0, "stale": 0})
        metrics = Metrics()
        await metrics.refresh(pool, ["vehicles", "never_verified"])
    finally:
        await pool.close()
    text = metrics.render().decode()
    assert 'bridge_verify_differences{kind="edited",mapping="vehicles"} 2.0' in text
    assert 'bridge_verify_differences{kind="deleted",mapping="vehicles"} 1.0' in text
    assert 'bridge_verify_differences{kind="unknown",mapping="vehicles"} 0.0' in text
    assert 'mapping="never_verified"' not in text.split("bridge_verify_differences", 1)[1].split("# HELP", 1)[0]
