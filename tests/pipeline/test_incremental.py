"""Where a run starts, and how far its watermark may move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from bridge.outreach.models import OutreachId, SourceRecord
from bridge.pipeline.incremental import Checkpoint, WatermarkTracker, start_point

T0 = datetime(2024, 7, 25, 13, 18, 30, tzinfo=UTC)
OVERLAP = timedelta(seconds=60)


def rec(n: int, at: datetime | None) -> SourceRecord:
    return SourceRecord("vehicles", OutreachId(str(n)), {}, {}, at)


def test_full_ignores_everything_stored() -> None:
    start = start_point(Checkpoint(T0, "https://x/next"), full=True, since=T0, overlap=OVERLAP)
    assert (start.resume_url, start.since, start.reason) == (None, None, "full")


def test_since_wins_over_the_checkpoint() -> None:
    since = T0 - timedelta(days=3)
    start = start_point(Checkpoint(T0, "https://x/next"), full=False, since=since, overlap=OVERLAP)
    assert (start.resume_url, start.since, start.reason) == (None, since, "since")


def test_an_interrupted_run_resumes_from_its_cursor() -> None:
    start = start_point(Checkpoint(T0, "https://x/next"), full=False, since=None, overlap=OVERLAP)
    assert (start.resume_url, start.reason) == ("https://x/next", "resume")


def test_a_resume_falls_back_to_the_watermark_minus_overlap() -> None:
    start = start_point(Checkpoint(T0, "https://x/next"), full=False, since=None, overlap=OVERLAP)
    assert start.since == T0 - OVERLAP
    assert start_point(Checkpoint(None, "https://x/next"), full=False, since=None, overlap=OVERLAP).since is None


def test_a_finished_run_continues_from_the_watermark_minus_overlap() -> None:
    start = start_point(Checkpoint(T0, None), full=False, since=None, overlap=OVERLAP)
    assert (start.resume_url, start.since, start.reason) == (None, T0 - OVERLAP, "watermark")


def test_first_run_reads_everything() -> None:
    assert start_point(None, full=False, since=None, overlap=OVERLAP).reason == "first_run"
    assert start_point(Checkpoint(None, None), full=False, since=None, overlap=OVERLAP).since is None


def test_watermark_is_the_highest_updated_at_seen() -> None:
    tracker = WatermarkTracker(None)
    assert tracker.observe([rec(1, T0), rec(2, T0 + timedelta(seconds=5))]) == T0 + timedelta(seconds=5)
    assert tracker.observe([rec(3, None)]) == T0 + timedelta(seconds=5)
    assert tracker.observe([rec(4, T0 + timedelta(seconds=9))]) == T0 + timedelta(seconds=9)


def test_watermark_holds_when_the_sorted_listing_goes_backwards() -> None:
    tracker = WatermarkTracker(None)
    tracker.observe([rec(1, T0 + timedelta(seconds=10))])
    with capture_logs() as logs:
        held = tracker.observe([rec(2, T0), rec(3, T0 + timedelta(seconds=60))])
    assert held == T0 + timedelta(seconds=10)
    assert tracker.held
    assert [e["event"] for e in logs] == ["watermark_held"]
    assert logs[0]["source_id"] == "2"
