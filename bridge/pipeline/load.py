"""Loading one page into Zendesk: bulk jobs of ≤ 100 items, run a few at a time.

Every item comes back either written (an id-map row to store) or failed (a dead letter that
keeps the API's error text). A job the API refuses as a whole dead-letters its items with
that error, so one bad batch never stops the rest; errors that mean the whole run cannot
succeed (auth, a missing custom object, exhausted retries) propagate and end the run with
the checkpoint where the last settled page left it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.errors import RejectedError
from bridge.store.dead_letters import DeadLetter
from bridge.store.idmap import IdMapRow
from bridge.translate import Translated
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ItemResult, UpsertItem

# A 4xx for one job that says the target itself is wrong, not the items in it.
_RUN_FATAL_STATUSES = frozenset({403, 404})


@dataclass(frozen=True, slots=True)
class LoadResult:
    written: list[IdMapRow]
    dead: list[DeadLetter]


class PageLoader:
    """Writes translated records of one mapping to its Zendesk custom object."""

    def __init__(
        self,
        zendesk: ZendeskClient,
        object_key: str,
        *,
        batch_size: int = 100,
        concurrency: asyncio.Semaphore | None = None,
    ) -> None:
        self._zendesk = zendesk
        self._object_key = object_key
        self._batch_size = batch_size
        self._slots = concurrency or asyncio.Semaphore(8)

    async def write(self, records: Sequence[Translated]) -> LoadResult:
        batches = [
            records[i : i + self._batch_size] for i in range(0, len(records), self._batch_size)
        ]
        outcomes = await asyncio.gather(*(self._write_batch(batch) for batch in batches))
        written = [row for rows, _ in outcomes for row in rows]
        dead = [letter for _, letters in outcomes for letter in letters]
        return LoadResult(written, dead)

    async def _write_batch(
        self, batch: Sequence[Translated]
    ) -> tuple[list[IdMapRow], list[DeadLetter]]:
        items = [UpsertItem(t.external_id, t.name, t.fields) for t in batch]
        try:
            async with self._slots:
                results = await self._zendesk.upsert_records(self._object_key, items)
        except RejectedError as exc:
            if exc.status in _RUN_FATAL_STATUSES:
                raise
            return [], [_dead(t, f"bulk job refused: {exc}") for t in batch]
        return _split(batch, results)


def _split(
    batch: Sequence[Translated], results: Sequence[ItemResult]
) -> tuple[list[IdMapRow], list[DeadLetter]]:
    written: list[IdMapRow] = []
    dead: list[DeadLetter] = []
    for record, result in zip(batch, results, strict=True):
        if result.ok:
            written.append(
                IdMapRow(record.source_id, result.record_id, record.external_id, record.payload_hash)
            )
        else:
            dead.append(_dead(record, result.error or "rejected by Zendesk without a reason"))
    return written, dead


def _dead(record: Translated, error: str) -> DeadLetter:
    payload = {"external_id": record.external_id, "name": record.name, "fields": record.fields}
    return DeadLetter(record.source_id, record.external_id, error, payload)
