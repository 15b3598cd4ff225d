"""Incremental state as named concepts: where a run starts, and how far it may advance.

A run starts from, in order of precedence: `--full` (everything), `--since` (an explicit
time), the resume URL of an interrupted run (or, if the API refuses it, the watermark minus
the overlap), or the stored watermark minus an overlap. The
filter is inclusive (`updatedAt >= since`), so boundary records come again; the payload hash
in the id map skips them.

The watermark only moves forward, and only over settled pages (every record written or
dead-lettered). If `updatedAt` goes backwards inside a listing sorted by it, the listing is
not what we think it is: the watermark holds for the rest of the run and that is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.logs import get_logger
from bridge.outreach.models import SourceRecord

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the store remembers for a mapping between runs."""

    watermark: datetime | None
    resume_url: str | None


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Where a run begins: a resume URL to follow verbatim, or a fresh listing since a time.

    With a resume URL, `since` is where to list from instead if the API refuses the URL
    (the watermark minus the overlap), so a stale cursor never means re-reading everything.
    """

    resume_url: str | None
    since: datetime | None
    reason: str  # full | since | resume | watermark | first_run


def start_point(
    stored: Checkpoint | None,
    *,
    full: bool,
    since: datetime | None,
    overlap: timedelta,
) -> StartPoint:
    if full:
        return StartPoint(None, None, "full")
    if since is not None:
        return StartPoint(None, since, "since")
    if stored is None:
        return StartPoint(None, None, "first_run")
    fallback = None if stored.watermark is None else stored.watermark - overlap
    if stored.resume_url:
        return StartPoint(stored.resume_url, fallback, "resume")
    if fallback is not None:
        return StartPoint(None, fallback, "watermark")
    return StartPoint(None, None, "first_run")


class WatermarkTracker:
    """Highest `updatedAt` over the pages seen so far, held if the listing goes backwards."""

    def __init__(self, start: datetime | None) -> None:
        self._value = start
        self._last_seen: datetime | None = None
        self.held = False

    @property
    def value(self) -> datetime | None:
        return self._value

    def observe(self, records: list[SourceRecord]) -> datetime | None:
        """Feeds one page in listing order; returns the watermark that may be stored after it."""
        for record in records:
            stamp = record.updated_at
            if stamp is None:
                continue
            if self._last_seen is not None and stamp < self._last_seen and not self.held:
                self.held = True
                log.warning(
                    "watermark_held",
                    reason="updatedAt went backwards in a listing sorted by it",
                    previous=self._last_seen.isoformat(),
                    seen=stamp.isoformat(),
                    source_id=record.id,
                )
            self._last_seen = stamp if self._last_seen is None else max(stamp, self._last_seen)
            if not self.held and (self._value is None or stamp > self._value):
                self._value = stamp
        return self._value
