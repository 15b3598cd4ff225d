"""One record's story, from bridge's own state: what was read, what would be written now, what
was written, what happened to it, and why it is not in Zendesk when it is not.

The answer is an `Explanation`, a plain dataclass that both the text and the JSON renderings
of `bridge explain` print, so the two never disagree.

When explain asks Outreach (the rule `bridge explain --help` states):
- bridge's state settles it (an id-map row, a dead letter, or a changelog row saying bridge
  deleted its Zendesk record): the answer comes from Postgres alone, no request;
- bridge has none: ONE Outreach request (the record by id, listed as a run lists it) tells
  "never seen" (Outreach has no such record), "filtered out by source.filter" and "not read
  yet" (updated after the watermark, or no run has reached it) apart;
- `--live`: one Outreach request and one Zendesk request (by external id), whatever the state;
  the first also serves the case above, so no API is asked twice.
Nothing is written anywhere: lookups are resolved read-only (`pipeline/would_write.py`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from bridge import targets
from bridge.errors import ConfigError
from bridge.mapping.model import Mapping
from bridge.mapping.templates import Template
from bridge.outreach.models import OutreachId, SourceRecord
from bridge.pipeline.missing import IN_ZENDESK, RecordState, Status, status_of
from bridge.pipeline.resolve import Included
from bridge.pipeline.snapshot import restore
from bridge.pipeline.would_write import FieldRow, Preview, field_rows, would_write
from bridge.store import changelog, checkpoints, dead_letters, idmap, links
from bridge.store.pool import Connection
from bridge.zendesk.models import ZendeskRecord

CHANGELOG_ROWS = 20
Origin = Literal["stored", "dead_letter", "outreach", "none"]
_OUTREACH_ID = re.compile(r"[0-9]{1,19}")


class Remote(Protocol):
    """The two requests explain may make (`ApiRemote` sends them; tests may fake them)."""

    async def outreach_record(self, mapping: Mapping, source_id: str) -> tuple[SourceRecord | None, Included]: ...

    async def zendesk_record(self, object_key: str, external_id: str) -> ZendeskRecord | None: ...


@dataclass(frozen=True, slots=True)
class LastRead:
    """The version of the record bridge last read, and when and by which run."""

    source_updated_at: str | None
    at: str | None
    run_id: int | None
    action: str | None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    at: str
    run_id: int | None
    action: str
    source_updated_at: str | None
    zendesk_job_id: str | None
    item_result: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    error: str
    attempts: int
    since: str
    last_failed_at: str
    run_id: int | None


@dataclass(frozen=True, slots=True)
class ParkedInfo:
    field: str
    target: str
    target_source_id: str
    match: str | None
    match_value: str | None
    failed_zendesk_id: str | None  # the id Zendesk refused for this lookup (its target is gone)
    parked_at: str


@dataclass(frozen=True, slots=True)
class LiveInfo:
    """What --live read: whether each API has the record now, and Outreach's updatedAt."""

    outreach_found: bool
    outreach_updated_at: str | None
    zendesk_found: bool
    zendesk_id: str | None


@dataclass(frozen=True, slots=True)
class Explanation:
    mapping: str
    source_id: str
    external_id: str
    status: Status
    in_zendesk: bool
    reason: str | None  # one sentence when the record is not (or no longer rightly) in Zendesk
    zendesk_id: str | None
    last_read: LastRead | None
    last_written_at: str | None
    # Which version of the record "would write" translates: the one stored with the last write,
    # the attributes kept with a translation's dead letter, or Outreach's now (--live).
    would_write_from: Origin
    would_write_error: str | None
    fields: list[FieldRow]
    changelog: list[ChangeRow]
    dead_letter: DeadLetterInfo | None
    parked_links: list[ParkedInfo]
    refused_lookup_ids: list[str]  # this record's Zendesk ids that others' lookups were refused
    asked_outreach: bool
    live: LiveInfo | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- which record ---------------------------------------------------------------------------


def external_id_pattern(mapping: Mapping) -> re.Pattern[str]:
    """The external ids the mapping gives its records, with the source id as group 1."""
    parts = Template.parse(mapping.target.external_id).parts
    regex = "".join(
        re.escape(mapping.source.type) if p == ("type",) else "([^:]+)" if p == ("id",)
        else re.escape(p) if isinstance(p, str) else ".*"
        for p in parts
    )  # fmt: skip
    return re.compile(regex)


async def source_id_of(conn: Connection, mapping: Mapping, ident: str) -> str:
    """The Outreach id that ID names: itself, or the record an external id belongs to.

    ConfigError (exit 2) for text that is neither; an external id of another type says so."""
    text = ident.strip()
    if _OUTREACH_ID.fullmatch(text):
        return text
    known = await idmap.lookup_external(conn, mapping.name, [text])
    if text in known:
        return known[text].source_id
    found = external_id_pattern(mapping).fullmatch(text)
    if found and found.lastindex and _OUTREACH_ID.fullmatch(found.group(1)):
        return found.group(1)
    convention = re.fullmatch(r"outreach:([^:]+):([0-9]+)", text)
    if convention and convention.group(1) != mapping.source.type:
        raise ConfigError(
            f"{ident!r} is an external id of Outreach {convention.group(1)}, but mapping "
            f"{mapping.name!r} reads {mapping.source.type}; name the mapping that reads {convention.group(1)}"
        )
    example = targets.external_id_of(mapping.source.type, "123")
    raise ConfigError(
        f"{ident!r} is neither an Outreach id (a number, e.g. 123) nor an external id of mapping "
        f"{mapping.name!r} (e.g. {example}); pass one of those"
    )


def external_id_for(mapping: Mapping, source_id: str) -> str:
    """The external id a run gives the record (the mapping's `target.external_id`)."""
    parts = Template.parse(mapping.target.external_id).parts
    return "".join(
        mapping.source.type if p == ("type",) else source_id if isinstance(p, tuple) else p for p in parts
    )


# --- the explanation ------------------------------------------------------------------------


async def explain(
    conn: Connection, mapping: Mapping, ident: str, *, remote: Remote | None = None, live: bool = False
) -> Explanation:
    """Explains the record ID names; `remote` is needed for --live and for records bridge has
    no state for (without it, such a record is explained as never seen by bridge)."""
    source_id = await source_id_of(conn, mapping, ident)
    state = await _load(conn, mapping.name, source_id)
    external_id = state.written.external_id if state.written else external_id_for(mapping, source_id)
    asked = remote is not None and (live or not state.settles_it())
    found: SourceRecord | None = None
    included: Included = {}
    if asked:
        assert remote is not None
        found, included = await remote.outreach_record(mapping, source_id)
    zendesk: ZendeskRecord | None = None
    if live and remote is not None:
        zendesk = await remote.zendesk_record(mapping.target.object, external_id)
    status, reason = status_of(mapping, source_id, state, asked, found)
    origin: Origin
    if live:
        record, origin = found, "outreach"
    else:
        record, kept, origin = _stored_source(mapping, source_id, state)
        if record is None and found is not None:  # asked Outreach anyway: show what it would write
            record, origin = found, "outreach"
        else:
            included = kept
    preview = await would_write(conn, mapping, record, included) if record is not None else Preview(None)
    written = state.written.payload if state.written else None
    notes = _notes(state, live, found, zendesk, status)
    return Explanation(
        mapping=mapping.name, source_id=source_id, external_id=external_id, status=status,
        in_zendesk=status in IN_ZENDESK, reason=reason,
        zendesk_id=state.written.zendesk_id if state.written else None,
        last_read=_last_read(state), last_written_at=_iso(state.written.synced_at) if state.written else None,
        would_write_from=origin if record is not None else "none", would_write_error=preview.error,
        fields=field_rows(mapping, preview, written, zendesk if live else None),
        changelog=[_change(e) for e in state.changes], dead_letter=_letter(state.letter),
        parked_links=[_parked(p, at) for p, at in state.parked], refused_lookup_ids=state.refused,
        asked_outreach=asked,
        live=_live(found, zendesk) if live and remote is not None else None, notes=notes,
    )  # fmt: skip


async def _load(conn: Connection, mapping: str, source_id: str) -> RecordState:
    written = (await idmap.written(conn, mapping, [source_id])).get(source_id)
    refused = sorted(zid for _, zid in await links.refused_ids(conn, mapping, [source_id]))
    return RecordState(
        written=written,
        letter=await dead_letters.for_record(conn, mapping, source_id),
        changes=await changelog.for_record(conn, mapping, source_id, CHANGELOG_ROWS),
        last=await changelog.last_read(conn, mapping, source_id),
        parked=await links.for_record(conn, mapping, source_id),
        refused=refused,
        checkpoint=await checkpoints.load(conn, mapping),
    )


# --- small conversions ------------------------------------------------------------------------


def _stored_source(
    mapping: Mapping, source_id: str, state: RecordState
) -> tuple[SourceRecord | None, Included, Origin]:
    """The record as bridge last read it: kept with the last write or, for a record that
    could not be translated, with its dead letter (attributes only: its lookups are unknown)."""
    row, letter = state.written, state.letter
    if row is not None and row.source is not None:
        record, included = restore(row.source)
        return record, included, "stored"
    attributes = letter.payload.get("attributes") if letter is not None and letter.payload else None
    if isinstance(attributes, dict):
        return SourceRecord(mapping.source.type, OutreachId(source_id), attributes, {}, None), {}, "dead_letter"
    return None, {}, "none"


def _notes(
    state: RecordState, live: bool, found: SourceRecord | None, zendesk: ZendeskRecord | None, status: Status
) -> list[str]:
    notes = []
    if state.written is not None and state.written.payload is None:
        notes.append("the payload last written was not kept (written before bridge kept payloads)")
    if state.written is not None and state.written.source is None and not live:
        notes.append("the record as read was not kept, so what would be written now is unknown; try --live")
    read = state.written.source_updated_at if state.written is not None else None
    if live and found is not None and found.updated_at and read and found.updated_at > read:
        notes.append(f"Outreach has a newer version (updatedAt {_iso(found.updated_at)}) than bridge last "
                     "wrote: the next run writes it")  # fmt: skip
    if live and zendesk is None and status == "in_zendesk":
        notes.append("Zendesk has no record with this external id: deleted there by hand since bridge wrote it")
    if live and found is None and status == "in_zendesk":
        notes.append("Outreach has no such record now: deleted there since the last run; reconcile handles it")
    if state.letter is not None and status == "in_zendesk":
        notes.append("its latest version failed (see the dead letter); Zendesk holds an older one")
    return notes


def _last_read(state: RecordState) -> LastRead | None:
    if state.last is not None:
        e = state.last
        return LastRead(_iso(e.change.source_updated_at), _iso(e.at), e.run_id, e.change.action)
    row = state.written
    if row is not None:
        return LastRead(_iso(row.source_updated_at), _iso(row.synced_at), None, None)
    return None


def _change(e: changelog.Entry) -> ChangeRow:
    c = e.change
    return ChangeRow(_iso(e.at) or "", e.run_id, c.action, _iso(c.source_updated_at), c.zendesk_job_id,
                     c.item_result, c.detail)  # fmt: skip


def _letter(row: dead_letters.DeadLetterRow | None) -> DeadLetterInfo | None:
    if row is None:
        return None
    return DeadLetterInfo(row.error, row.attempts, _iso(row.first_failed_at) or "",
                          _iso(row.last_failed_at) or "", row.run_id)  # fmt: skip


def _parked(p: links.ParkedLink, at: datetime) -> ParkedInfo:
    return ParkedInfo(p.field, str(targets.from_stored(p.target)), p.target_source_id, p.match,
                      p.match_value, p.failed_zendesk_id, _iso(at) or "")  # fmt: skip


def _live(found: SourceRecord | None, zendesk: ZendeskRecord | None) -> LiveInfo:
    return LiveInfo(
        outreach_found=found is not None,
        outreach_updated_at=_iso(found.updated_at) if found is not None else None,
        zendesk_found=zendesk is not None,
        zendesk_id=zendesk.id if zendesk is not None else None,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


