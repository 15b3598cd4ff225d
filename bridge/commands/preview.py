"""`bridge backfill --dry-run --diff`: what a run would create, update, leave unchanged and
dead-letter, field by field, written nowhere (`pipeline/preview.py`).

Output streams, so a preview of 100,000 records holds one page at a time:
- on a terminal (text): per mapping, the first `--limit` updates with their changes and the
  first `--limit` dead letters as they come, a line for the rest, then a table of counts;
- `--json`: JSON Lines, one object per record read (`"type": "record"`, the keys of
  `diff.RecordDiff.as_json`) and after each mapping's records its counts (`"type":
  "summary"`): a script reads it line by line (`jq -c 'select(.type == "summary")'`), and
  the preview never holds the whole run.
Exit codes as for the dry run: 1 when some records could not be translated, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from bridge import wiring
from bridge.commands.common import EXIT_DEAD_LETTERS, EXIT_OK, require_migrated, select
from bridge.errors import ConfigError
from bridge.logs import get_logger
from bridge.mapping.load import load_mappings
from bridge.pipeline.diff import Action, RecordDiff, Tally, Unresolved
from bridge.pipeline.preview import preview_mapping
from bridge.settings import Settings

log = get_logger(__name__)

DEFAULT_LIMIT = 20
NOTE = ("Nothing was written. A record Zendesk would refuse is counted as a create or an update: "
        "that is known only by writing it.")  # fmt: skip


def check_flags(args: argparse.Namespace) -> None:
    """--diff previews a dry run; --json and --limit shape its output."""
    if args.diff and not args.dry_run:
        raise ConfigError("--diff previews a dry run and writes nothing: add --dry-run "
                          "(`bridge backfill --dry-run --diff`)")  # fmt: skip
    if not args.diff and (args.json or args.limit is not None):
        raise ConfigError("--json and --limit shape the output of --diff: add --dry-run --diff")
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: expected 0 or more records to show per mapping")


async def cmd_backfill_diff(args: argparse.Namespace, settings: Settings) -> int:
    check_flags(args)
    mappings = load_mappings(settings.bridge_mappings)
    names = select(mappings, args.mappings)
    options = wiring.sync_options(settings, "dry_run", wiring.actor(settings, "backfill"),
                                  full=args.full, since=args.since, dry_run=True)  # fmt: skip
    out: JsonLines | TextReport = (
        JsonLines(sys.stdout) if args.json else TextReport(sys.stdout, DEFAULT_LIMIT if args.limit is None else args.limit)
    )
    wiring.check_api_settings(settings)
    dead = 0
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        async with wiring.open_services(settings, pool) as services:
            for name in names:
                tally = Tally(name)
                async for record in preview_mapping(mappings[name], pool, services.outreach, options, running=names):
                    tally.add(record)
                    out.record(record)
                out.mapping_done(tally)
                log.info("preview_finished", mapping=name, **{a.value: n for a, n in tally.counts.items()})
                dead += tally.counts[Action.DEAD_LETTER]
    out.finish()
    return EXIT_DEAD_LETTERS if dead else EXIT_OK


class JsonLines:
    """One JSON object a line: every record, then its mapping's counts."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def record(self, record: RecordDiff) -> None:
        self._line(record.as_json())

    def mapping_done(self, tally: Tally) -> None:
        self._line(tally.as_json())
        self._stream.flush()

    def finish(self) -> None:
        self._stream.flush()

    def _line(self, value: dict[str, Any]) -> None:
        self._stream.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


class TextReport:
    """For a person: the first `limit` updates and dead letters per mapping, then a table."""

    def __init__(self, stream: TextIO, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._shown = {Action.UPDATE: 0, Action.DEAD_LETTER: 0}
        self._tallies: list[Tally] = []

    def record(self, record: RecordDiff) -> None:
        if record.action not in self._shown:
            return
        self._shown[record.action] += 1
        if self._shown[record.action] > self._limit:
            return
        for line in describe(record):
            print(line, file=self._stream)

    def mapping_done(self, tally: Tally) -> None:
        more = {a: tally.counts[a] - self._limit for a in self._shown if tally.counts[a] > self._limit}
        if more:
            what = ", ".join(f"{n} more {'updates' if a is Action.UPDATE else 'dead letters'}" for a, n in more.items())
            print(f"{tally.mapping}: … and {what} (--limit {self._limit}; --json lists every record)",
                  file=self._stream)  # fmt: skip
        self._tallies.append(tally)
        self._shown = dict.fromkeys(self._shown, 0)
        self._stream.flush()

    def finish(self) -> None:
        for line in table(self._tallies):
            print(line, file=self._stream)
        print(NOTE, file=self._stream)
        self._stream.flush()


def describe(record: RecordDiff) -> list[str]:
    """An update with its changes, or a dead letter with its error, as lines of text."""
    head = f"{record.mapping} {record.action.value.replace('_', '-')} {record.source_id}"
    if record.action is Action.DEAD_LETTER:
        return [f"{head}: {record.error}"]
    where = f" {record.external_id}" + (f" (Zendesk {record.zendesk_id})" if record.zendesk_id else "")
    if not record.previous_kept:
        return [f"{head}{where}: changed (previous payload not kept)"]
    if not record.changes:
        return [f"{head}{where}: changed, yet no value sent differs (a link's source changed, "
                "or the record moves to another object or external id)"]  # fmt: skip
    return [f"{head}{where}:", *(f"    {c.field}: {show(c.before)} → {show(c.after)}" for c in record.changes)]


def show(value: Any, width: int = 60) -> str:
    """A value as JSON, shortened to `width` characters; an unresolved lookup as it is."""
    if isinstance(value, Unresolved):
        return str(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(tallies: list[Tally]) -> list[str]:
    heads = ["mapping", "read", *(a.value.replace("_", "-") for a in Action)]
    rows = [[t.mapping, str(t.read), *(str(t.counts[a]) for a in Action)] for t in tallies]
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in [heads, *rows]]  # fmt: skip
