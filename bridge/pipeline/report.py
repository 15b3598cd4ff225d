"""Run counts, and the sinks that show them while a run goes (terminal or log lines)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bridge.logs import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class RunReport:
    """Counts of one mapping run; `failed` records are in the dead letters."""

    mapping: str
    run_id: int | None = None
    fetched: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    parked: int = 0
    pages: int = 0
    status: str = "running"
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    start_reason: str = ""
    change_to_write: list[float] = field(default_factory=list)  # the last settled page's delays

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Records fetched per second so far."""
        elapsed = self.seconds
        return self.fetched / elapsed if elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "mapping": self.mapping,
            "run_id": self.run_id,
            "status": self.status,
            "fetched": self.fetched,
            "written": self.written,
            "skipped": self.skipped,
            "failed": self.failed,
            "parked": self.parked,
            "pages": self.pages,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def counts_dict(report: Any) -> dict[str, object]:
    """A repair report's fields for `--json`: its monotonic start left out, seconds rounded."""
    values: dict[str, object] = asdict(report)
    values.pop("started", None)
    values["seconds"] = round(report.seconds, 3)
    return values


class ProgressSink(Protocol):
    """Told after every settled page and at the end of a run."""

    def page_settled(self, report: RunReport) -> None: ...

    def run_finished(self, report: RunReport) -> None: ...


class LogProgress:
    """One structured line per settled page, one summary line per run (non-terminals)."""

    def page_settled(self, report: RunReport) -> None:
        log.info(
            "page_settled",
            page=report.pages,
            fetched=report.fetched,
            written=report.written,
            skipped=report.skipped,
            failed=report.failed,
            rate=round(report.rate, 1),
        )

    def run_finished(self, report: RunReport) -> None:
        log.info("run_finished", **report.as_dict())
