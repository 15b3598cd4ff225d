"""The metric objects: request hook, run counts per page, rate-limit waits, text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bridge.http.ratelimit import RateLimiter
from bridge.http.transport import RequestEvent
from bridge.metrics import Metrics
from bridge.pipeline.report import RunReport


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
