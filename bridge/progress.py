"""The live progress display of a backfill on a terminal.

Off a terminal, `pipeline.report.LogProgress` writes one structured line per page instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from bridge.pipeline.report import LogProgress, ProgressSink, RunReport

if TYPE_CHECKING:  # rich is imported only for a terminal, where it draws
    from rich.live import Live
    from rich.table import Table


class TerminalProgress:
    """A table of the running mapping's counts and rate, redrawn after each page."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self._console = Console(file=stream)
        self._live: Live | None = None

    def page_settled(self, report: RunReport) -> None:
        if self._live is None:
            from rich.live import Live

            self._live = Live(_table(report), console=self._console, refresh_per_second=8)
            self._live.start()
        self._live.update(_table(report))

    def run_finished(self, report: RunReport) -> None:
        if self._live is not None:
            self._live.update(_table(report))
            self._live.stop()
            self._live = None
        else:
            self._console.print(_table(report))


def _table(report: RunReport) -> Table:
    from rich.table import Table

    table = Table(title=f"{report.mapping} ({report.status})", title_justify="left")
    for column in ("pages", "fetched", "written", "skipped", "failed", "records/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.pages),
        str(report.fetched),
        str(report.written),
        str(report.skipped),
        str(report.failed),
        f"{report.rate:,.0f}",
    )
    return table


def progress_for(stream: TextIO) -> ProgressSink:
    return TerminalProgress(stream) if stream.isatty() else LogProgress()
