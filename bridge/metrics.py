"""The worker's Prometheus metrics: what it synced, how the APIs answered, how far behind it is.

One `Metrics` object per process, on its own registry (so tests can make several). Three
sources feed it:
- the pipeline, per settled page, through `RunMetrics` (a ProgressSink): records fetched,
  written, skipped, failed and parked per mapping, and runs per mapping and status;
- the HTTP request loop, after every attempt, through `observe_request` (a transport hook):
  requests and latency per API and status code (`error` when no status came back);
- the worker's leases and alerts: leases taken over from a dead holder, leases lost, alert
  deliveries by outcome;
- at scrape time: time waited on rate limits (read from the RateLimiters), Zendesk job slots in
  use, and, from Postgres through `refresh`, per mapping: lag since its last successful run,
  dead letters, whether its last run failed, its watermark (freshness), and what its last
  verify found (`bridge_verify_differences`, by kind).
Counters count this process only; the values read from Postgres are the database's (all
replicas). `deploy/monitoring/` holds the alerting rules and dashboard over these names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.http.ratelimit import RateLimiter
from bridge.http.transport import RequestEvent
from bridge.pipeline.report import RunReport
from bridge.store import checkpoints, dead_letters, runs, verify_state

VERIFY_KINDS = ("edited", "deleted", "unknown", "stale")  # pipeline/verify.py

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series only add noise

OUTCOMES = ("fetched", "written", "skipped", "failed", "parked")
FRESHNESS_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _RateLimitCollector(Collector):
    """Seconds spent waiting on rate limits, summed over every limiter of each API."""

    def __init__(self) -> None:
        self.limiters: list[tuple[str, RateLimiter]] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "bridge_rate_limit_wait_seconds",
            "Seconds requests waited for the APIs' rate limits",
            labels=["api"],
        )
        totals: dict[str, float] = {}
        for api, limiter in self.limiters:
            totals[api] = totals.get(api, 0.0) + limiter.waited_seconds
        for api, seconds in sorted(totals.items()):
            family.add_metric([api], seconds)
        yield family


class _JobSlotsCollector(Collector):
    """Zendesk bulk jobs in flight and the slots for them (BRIDGE_JOB_CONCURRENCY)."""

    def __init__(self) -> None:
        self.clients: list[JobSlots] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily("bridge_zendesk_jobs_in_flight", "Zendesk bulk jobs in flight")
        slots = GaugeMetricFamily("bridge_zendesk_job_slots", "Zendesk bulk jobs allowed in flight at once")
        in_flight.add_metric([], sum(c.jobs_in_flight for c in self.clients))
        slots.add_metric([], sum(c.job_slots for c in self.clients))
        yield in_flight
        yield slots


class JobSlots(Protocol):
    jobs_in_flight: int
    job_slots: int


class Metrics:
    """The metric objects of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "bridge_records", "Records by mapping and outcome", ["mapping", "outcome"], registry=r
        )
        self.runs = Counter("bridge_runs", "Finished runs by mapping and status", ["mapping", "status"], registry=r)
        self.requests = Counter(
            "bridge_api_requests", "API request attempts by API and status", ["api", "status"], registry=r
        )
        self.latency = Histogram(
            "bridge_api_request_seconds", "API request latency by API and status", ["api", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "bridge_lag_seconds", "Seconds since the mapping's last successful run ended", ["mapping"], registry=r
        )
        self.dead_letters = Gauge("bridge_dead_letters", "Records in the dead letters", ["mapping"], registry=r)
        self.last_run_failed = Gauge(
            "bridge_last_run_failed", "1 when the mapping's latest sync run failed", ["mapping"], registry=r
        )
        self.watermark = Gauge(
            "bridge_watermark_timestamp_seconds", "The mapping's checkpoint watermark (Unix time)",
            ["mapping"], registry=r,
        )  # fmt: skip
        self.verify_differences = Gauge(
            "bridge_verify_differences", "What the mapping's last `bridge verify` found, by kind "
            "(edited, deleted, unknown, stale)", ["mapping", "kind"], registry=r,
        )  # fmt: skip
        self.lease_takeovers = Counter(
            "bridge_lease_takeovers", "Leases this replica took over from a holder that stopped renewing",
            ["mapping"], registry=r,
        )  # fmt: skip
        self.leases_lost = Counter(
            "bridge_leases_lost", "Leases this replica lost while running a mapping", ["mapping"], registry=r
        )
        self.alert_deliveries = Counter(
            "bridge_alert_deliveries", "Alert webhook deliveries by outcome (delivered, failed, dropped)",
            ["outcome"], registry=r,
        )  # fmt: skip
        for outcome in ("delivered", "failed", "dropped"):
            self.alert_deliveries.labels(outcome)
        self.change_to_write = Histogram(
            "bridge_change_to_write_seconds",
            "Seconds from a record's change in Outreach (updatedAt) to the commit of its write, "
            "by mapping and trigger (webhook or poll)",
            ["mapping", "trigger"], buckets=FRESHNESS_BUCKETS, registry=r,
        )  # fmt: skip
        self.webhooks_disabled = Gauge(
            "bridge_webhooks_disabled", "bridge's Outreach webhooks that Outreach has disabled", registry=r
        )
        self.webhook_deliveries = Counter(
            "bridge_webhook_deliveries", "Webhook deliveries by how they were answered", ["outcome"], registry=r
        )
        self._limits = _RateLimitCollector()
        r.register(self._limits)
        self._jobs = _JobSlotsCollector()
        r.register(self._jobs)

    def observe_request(self, event: RequestEvent) -> None:
        """Transport hook: called after every attempt."""
        status = str(event.status) if event.status is not None else "error"
        self.requests.labels(event.api, status).inc()
        self.latency.labels(event.api, status).observe(event.seconds)

    def observe_change_to_write(self, mapping: str, trigger: str, seconds: list[float]) -> None:
        histogram = self.change_to_write.labels(mapping, trigger)
        for value in seconds:
            histogram.observe(value)

    def observe_delivery(self, outcome: str) -> None:
        """Webhook intake hook: called once per answered delivery."""
        self.webhook_deliveries.labels(outcome).inc()

    def track_limiter(self, api: str, limiter: RateLimiter) -> None:
        self._limits.limiters.append((api, limiter))

    def track_jobs(self, client: JobSlots) -> None:
        self._jobs.clients.append(client)

    def lease_taken_over(self, mapping: str, previous: str) -> None:
        self.lease_takeovers.labels(mapping).inc()

    def lease_lost(self, mapping: str) -> None:
        self.leases_lost.labels(mapping).inc()

    def run_metrics(self, mapping: str) -> RunMetrics:
        return RunMetrics(self, mapping)

    async def refresh(self, pool: asyncpg.Pool[Any], names: list[str]) -> None:
        """Reads lag, dead letters, last runs and watermarks from Postgres (raises StoreError
        when it is down)."""
        async with pool.acquire() as conn:
            finished = await runs.last_succeeded(conn)
            dead = await dead_letters.count(conn)
            latest = {row.mapping: row.status for row in await runs.latest_syncs(conn)}
            marks = {cp.mapping: cp.watermark for cp in await checkpoints.load_all(conn)}
            verified = await verify_state.last_reports(conn)
        now = datetime.now(UTC)
        for name, report in verified.items():
            for kind in VERIFY_KINDS:
                self.verify_differences.labels(name, kind).set(float(report.get(kind) or 0))
        for name in sorted(set(names) | set(finished) | set(dead)):
            self.dead_letters.labels(name).set(dead.get(name, 0))
            self.last_run_failed.labels(name).set(1 if latest.get(name) == "failed" else 0)
            self.lease_takeovers.labels(name)  # a zero series, so rate() sees the first one
            self.leases_lost.labels(name)
            if (mark := marks.get(name)) is not None:
                self.watermark.labels(name).set(mark.timestamp())
            if (at := finished.get(name)) is not None:
                self.lag.labels(name).set(max(0.0, (now - at).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class RunMetrics:
    """Adds one run's counts to the records counter as its pages settle."""

    metrics: Metrics
    mapping: str
    _seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    _pages: int = 0

    def page_settled(self, report: RunReport) -> None:
        if report.pages > self._pages:  # run_finished reports the last page again
            self._pages = report.pages
            self.metrics.observe_change_to_write(self.mapping, "poll", report.change_to_write)
        for outcome in OUTCOMES:
            value = int(getattr(report, outcome))
            delta = value - self._seen[outcome]
            if delta > 0:
                self.metrics.records.labels(self.mapping, outcome).inc(delta)
            self._seen[outcome] = value

    def run_finished(self, report: RunReport) -> None:
        self.page_settled(report)
        self.metrics.runs.labels(self.mapping, report.status).inc()
