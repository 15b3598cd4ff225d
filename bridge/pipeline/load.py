"""Loading one page into Zendesk: bulk jobs of ≤ 100 items, run a few at a time.

Every item comes back either written (an id-map row to store) or failed (a dead letter that
keeps the API's error text). A job the API refuses as a whole dead-letters its items with
that error, so one bad batch never stops the rest; errors that mean the whole run cannot
succeed (auth, a missing custom object, exhausted retries) propagate and end the run with
the checkpoint where the last settled page left it.

Lookups (resolved by `pipeline/resolve.py`) go in with the fields. An item that fails while
carrying lookups is written once more without the lookups its error names: a target deleted
in Zendesk costs that lookup (the caller re-parks it), never the record.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.errors import RejectedError
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.translate import Translated
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ItemResult, UpsertItem

# A 4xx for one job that says the target itself is wrong, not the items in it.
_RUN_FATAL_STATUSES = frozenset({403, 404})


Lookups = Mapping[str, Mapping[str, str | None]]  # source_id → lookup field → Zendesk id


@dataclass(frozen=True, slots=True)
class LoadResult:
    written: list[IdMapRow]
    dead: list[DeadLetter]
    # (source_id, lookup field) → the Zendesk id Zendesk refused for it; the record itself
    # was written without that lookup (its target is gone from Zendesk: re-park the link)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)


class PageLoader:
    """Writes translated records of one mapping to its Zendesk custom object."""

    def __init__(
        self,
        zendesk: ZendeskClient,
        object_key: str,
        *,
        batch_size: int = 100,
        concurrency: asyncio.Semaphore | None = None,
        before_submit: Callable[[], None] | None = None,
    ) -> None:
        self._zendesk = zendesk
        self._object_key = object_key
        self._batch_size = batch_size
        self._slots = concurrency or asyncio.Semaphore(8)
        # Raises to refuse a submission (the run's lease fence); asked right before each job.
        self._before_submit = before_submit

    @property
    def zendesk(self) -> ZendeskClient:
        return self._zendesk

    async def write(self, records: Sequence[Translated], lookups: Lookups | None = None) -> LoadResult:
        """Writes `records`, each with its resolved `lookups` (None clears a lookup)."""
        batches = [
            records[i : i + self._batch_size] for i in range(0, len(records), self._batch_size)
        ]
        outcomes = await asyncio.gather(*(self._write_batch(b, lookups or {}) for b in batches))
        written = [row for result in outcomes for row in result.written]
        dead = [letter for result in outcomes for letter in result.dead]
        refused = {k: v for result in outcomes for k, v in result.refused.items()}
        return LoadResult(written, dead, refused)

    async def _write_batch(self, batch: Sequence[Translated], lookups: Lookups) -> LoadResult:
        sent = {t.source_id: dict(lookups.get(t.source_id, {})) for t in batch}
        results = await self._send(batch, sent)
        if isinstance(results, RejectedError):
            return LoadResult([], [_dead(t, f"bulk job refused: {results}") for t in batch])
        written, dead = _split(batch, results, sent)
        retry = [t for t, d in zip(batch, results, strict=True) if not d.ok and _has_lookups(sent[t.source_id])]
        if not retry:
            return LoadResult(written, dead)
        return await self._without_refused(retry, results, batch, sent, written, dead)

    async def _without_refused(
        self,
        retry: list[Translated],
        results: Sequence[ItemResult],
        batch: Sequence[Translated],
        sent: dict[str, dict[str, str | None]],
        written: list[IdMapRow],
        dead: list[DeadLetter],
    ) -> LoadResult:
        """Writes again, once, the items that failed while carrying lookups, without the
        lookups their error names (all of them when it names none): a target deleted in
        Zendesk must not drop the record, nor fail again on every run."""
        errors = {t.source_id: r.error for t, r in zip(batch, results, strict=True)}
        refused: dict[tuple[str, str], str] = {}
        second: dict[str, dict[str, str | None]] = {}
        for t in retry:
            values = sent[t.source_id]
            bad = refused_fields(values, errors[t.source_id])
            second[t.source_id] = {k: (None if k in bad else v) for k, v in values.items()}
            refused.update({(t.source_id, k): str(values[k]) for k in bad})
        again = await self._send(retry, second)
        if isinstance(again, RejectedError):
            return LoadResult(written, dead)
        ok = {t.source_id for t, r in zip(retry, again, strict=True) if r.ok}
        written2, _ = _split(retry, again, second)
        dead = [d for d in dead if d.source_id not in ok]
        refused = {k: v for k, v in refused.items() if k[0] in ok}
        return LoadResult(written + written2, dead, refused)

    async def _send(
        self, batch: Sequence[Translated], lookups: Mapping[str, Mapping[str, str | None]]
    ) -> list[ItemResult] | RejectedError:
        """The job's per-item results, or the error when the job as a whole was refused."""
        items = [UpsertItem(t.external_id, t.name, {**t.fields, **lookups.get(t.source_id, {})}) for t in batch]
        try:
            async with self._slots:
                if self._before_submit is not None:
                    self._before_submit()
                return await self._zendesk.upsert_records(self._object_key, items)
        except RejectedError as exc:
            if exc.status in _RUN_FATAL_STATUSES:
                raise
            return exc


def _has_lookups(values: Mapping[str, str | None]) -> bool:
    return any(v is not None for v in values.values())


def refused_fields(values: Mapping[str, str | None], error: str) -> set[str]:
    """The lookup fields an item error names; every set lookup when it names none."""
    set_fields = {k for k, v in values.items() if v is not None}
    named = {k for k in set_fields if re.search(rf"\b{re.escape(k)}\b", error)}
    return named or set_fields


def _split(
    batch: Sequence[Translated],
    results: Sequence[ItemResult],
    lookups: Mapping[str, Mapping[str, str | None]],
) -> tuple[list[IdMapRow], list[DeadLetter]]:
    written: list[IdMapRow] = []
    dead: list[DeadLetter] = []
    for record, result in zip(batch, results, strict=True):
        if result.ok:
            written.append(
                IdMapRow(record.source_id, result.record_id, record.external_id, record.payload_hash)
            )
        else:
            error = result.error or "rejected by Zendesk without a reason"
            dead.append(_dead(record, error, lookups.get(record.source_id)))
    return written, dead


def _dead(
    record: Translated, error: str, lookups: Mapping[str, str | None] | None = None
) -> DeadLetter:
    fields = {**record.fields, **(lookups or {})}
    payload = {"external_id": record.external_id, "name": record.name, "fields": fields}
    return DeadLetter(record.source_id, record.external_id, error, payload)
