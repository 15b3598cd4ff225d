"""`bridge explain MAPPING ID [--json] [--live]`: one record's story (pipeline/explain.py)."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from bridge import wiring
from bridge.commands.common import EXIT_OK, require_migrated, select
from bridge.errors import ConfigError
from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.outreach.models import SourceRecord
from bridge.pipeline.explain import Explanation, explain
from bridge.pipeline.peek import ApiRemote
from bridge.pipeline.resolve import Included
from bridge.pipeline.would_write import FieldRow
from bridge.settings import Settings
from bridge.zendesk.models import ZendeskRecord


class _LazyRemote:
    """Opens the API clients on the first request explain makes, and never before: a record
    explained from state needs no credentials."""

    def __init__(self, settings: Settings, pool: Any, stack: AsyncExitStack) -> None:
        self._settings, self._pool, self._stack = settings, pool, stack
        self._remote: ApiRemote | None = None

    async def _open(self) -> ApiRemote:
        if self._remote is None:
            try:
                wiring.check_api_settings(self._settings)
            except ConfigError as exc:
                raise ConfigError(f"explain must ask Outreach (--live, or bridge has no state for the "
                                  f"record), and cannot: {exc}") from exc
            services = await self._stack.enter_async_context(wiring.open_services(self._settings, self._pool))
            self._remote = ApiRemote(services.outreach, services.zendesk)
        return self._remote

    async def outreach_record(self, mapping: Mapping, source_id: str) -> tuple[SourceRecord | None, Included]:
        return await (await self._open()).outreach_record(mapping, source_id)

    async def zendesk_record(self, object_key: str, external_id: str) -> ZendeskRecord | None:
        return await (await self._open()).zendesk_record(object_key, external_id)


async def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    mapping = mappings[select(mappings, [args.mapping])[0]]
    async with wiring.open_pool(settings) as pool, AsyncExitStack() as stack:
        await require_migrated(settings, pool)
        remote = _LazyRemote(settings, pool, stack)
        async with pool.acquire() as conn:
            result = await explain(conn, mapping, args.id, remote=remote, live=args.live)
    print(json.dumps(result.as_dict(), indent=2, default=str) if args.json else render(result))
    return EXIT_OK


# --- text -------------------------------------------------------------------------------------


def render(e: Explanation) -> str:
    """The explanation for a person on a terminal: compact and aligned."""
    lines = [f"{e.mapping} {e.source_id}  ({e.external_id})"]
    lines.append(_kv("status", _status(e)))
    if e.reason:
        lines.append(_kv("why", e.reason))
    if e.last_read is not None:
        r = e.last_read
        run = f" by run {r.run_id}" if r.run_id is not None else ""
        what = f" ({r.action.replace('_', ' ')})" if r.action else ""
        lines.append(_kv("last read", f"updatedAt {_t(r.source_updated_at)}, at {_t(r.at)}{run}{what}"))
    else:
        lines.append(_kv("last read", "never"))
    lines.append(_kv("last written", _t(e.last_written_at) if e.last_written_at else "never"))
    if e.live is not None:
        lv = e.live
        outreach = f"has it (updatedAt {_t(lv.outreach_updated_at)})" if lv.outreach_found else "has no such record"
        zendesk = f"has record {lv.zendesk_id}" if lv.zendesk_found else "has no record with this external id"
        lines.append(_kv("live", f"Outreach {outreach}; Zendesk {zendesk}"))
    lines += [_kv("note", n) for n in e.notes]
    lines += ["", *_fields(e)]
    lines += ["", *_changelog(e)]
    lines += ["", *_trouble(e)]
    return "\n".join(lines)


def _status(e: Explanation) -> str:
    if e.status == "in_zendesk":
        return f"in Zendesk as record {e.zendesk_id or '(id unknown)'}"
    if e.status == "deleted_kept":
        return f"deleted in Outreach, kept in Zendesk as record {e.zendesk_id or '(id unknown)'}"
    return f"not in Zendesk: {e.status.replace('_', ' ')}"


def _t(iso: str | None) -> str:
    """An ISO time from the explanation, compact: `2026-11-28 10:05:02Z`."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment.tzinfo else iso


def _kv(key: str, value: str) -> str:
    return f"{key:<13} {value}"


def _fields(e: Explanation) -> list[str]:
    if e.would_write_error:
        head = [f"would write: nothing, translating it fails: {e.would_write_error}"]
    elif e.would_write_from == "none" and not any(r.last_written is not None for r in e.fields):
        return ["fields: nothing read or written to compare"]
    else:
        head = []
    titles = ["field", "Outreach now → would write" if e.would_write_from == "outreach" else "would write now",
              "last written"]  # fmt: skip
    if e.live is not None:
        titles.append("Zendesk now")
    table = [titles] + [_row(r, e.live is not None) for r in e.fields]
    widths = [min(max(len(row[i]) for row in table), 32) for i in range(len(titles))]
    out = head
    for n, row in enumerate(table):
        mark = "   " if n == 0 else _mark(e.fields[n - 1]) + " "
        cells = [cell[:32].ljust(widths[i]) for i, cell in enumerate(row)]
        note = e.fields[n - 1].note if n else None
        out.append((mark + "  ".join(cells) + (f"  ({note})" if note else "")).rstrip())
    out.append("* would write differs from last written; ! Zendesk now differs from last written"
               if e.live is not None else "* would write differs from last written")  # fmt: skip
    return out


def _mark(r: FieldRow) -> str:
    return ("*" if r.differs else " ") + ("!" if r.zendesk_differs else " ")


def _row(r: FieldRow, live: bool) -> list[str]:
    cells = [r.field, _show(r.would_write), _show(r.last_written)]
    return cells + [_show(r.zendesk_now)] if live else cells


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return json.dumps(value, ensure_ascii=False)  # quoted when spaces at its ends matter


def _changelog(e: Explanation) -> list[str]:
    if not e.changelog:
        return ["changelog: none kept"]
    out = [f"changelog (newest first, last {len(e.changelog)})"]
    for c in e.changelog:
        extra = [f"updatedAt {_t(c.source_updated_at)}" if c.source_updated_at else "",
                 f"job {c.zendesk_job_id}" if c.zendesk_job_id else "",
                 f"result {c.item_result}" if c.item_result else "", c.detail or ""]  # fmt: skip
        run = f"run {c.run_id}" if c.run_id is not None else "run -"
        out.append(f"  {_t(c.at)}  {run:<9} {c.action:<17} {'  '.join(x for x in extra if x)}".rstrip())
    return out


def _trouble(e: Explanation) -> list[str]:
    out = []
    if e.dead_letter is not None:
        d = e.dead_letter
        out.append(_kv("dead letter", f"{d.attempts} attempt(s) since {_t(d.since)}, last {_t(d.last_failed_at)}: {d.error}"))
    else:
        out.append(_kv("dead letter", "none"))
    if not e.parked_links:
        out.append(_kv("parked links", "none"))
    for p in e.parked_links:
        match = f" by {p.match} {p.match_value!r}" if p.match else ""
        refused = f"; Zendesk refused {p.failed_zendesk_id}" if p.failed_zendesk_id else ""
        out.append(_kv("parked link", f"{p.field} → {p.target} {p.target_source_id}{match}, "
                                      f"since {_t(p.parked_at)}{refused}"))  # fmt: skip
    if e.refused_lookup_ids:
        out.append(_kv("refused ids", f"{', '.join(e.refused_lookup_ids)} (Zendesk refused them as lookup "
                                      "targets: deleted there)"))  # fmt: skip
    return out
