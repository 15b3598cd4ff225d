"""Backfill progress: a live table on a terminal, one log line per page elsewhere."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from bridge.pipeline.report import LogProgress, RunReport
from bridge.progress import TerminalProgress, progress_for


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def report(**counts: int) -> RunReport:
    r = RunReport("vehicles", run_id=7)
    for key, value in counts.items():
        setattr(r, key, value)
    return r


def test_terminal_gets_a_live_table_with_counts_and_rate() -> None:
    out = Tty()
    sink = progress_for(out)
    assert isinstance(sink, TerminalProgress)
    sink.page_settled(report(pages=1, fetched=1000, written=990, skipped=7, failed=3))
    done = report(pages=2, fetched=2345, written=2300, skipped=40, failed=5)
    done.status = "partial"
    sink.run_finished(done)
    text = out.getvalue()
    for expected in ("vehicles (partial)", "records/s", "2345", "2300", "40"):
        assert expected in text


def test_elsewhere_one_structured_line_per_page_and_one_per_run() -> None:
    sink = progress_for(io.StringIO())
    assert isinstance(sink, LogProgress)
    with capture_logs() as logs:
        sink.page_settled(report(pages=1, fetched=50, written=48, skipped=1, failed=1))
        sink.page_settled(report(pages=2, fetched=100, written=97, skipped=2, failed=1))
        sink.run_finished(report(pages=2, fetched=100, written=97, skipped=2, failed=1))
    assert [e["event"] for e in logs] == ["page_settled", "page_settled", "run_finished"]
    assert {k: logs[1][k] for k in ("page", "fetched", "written", "skipped", "failed")} == {
        "page": 2, "fetched": 100, "written": 97, "skipped": 2, "failed": 1,
    }
    assert logs[2]["mapping"] == "vehicles" and logs[2]["run_id"] == 7
