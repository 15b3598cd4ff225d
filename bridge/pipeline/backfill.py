"""Backfill orchestration: one pass over mappings, in dependency order, under their leases,
then the final fill. `bridge backfill` runs it (tests call it the same way).

Invariants:
- Every mapping's lease is taken before the first run (`store.leases.hold_all`), so a
  backfill never writes next to a worker, nor stops halfway because one holds a later
  mapping; each run writes and commits behind its lease's fence.
- The final fill settles cycles: links parked before their target mapping had run.
- Asked to `stop`, the mapping in progress settles what is in flight and ends
  `interrupted`; no later mapping starts and the final fill is skipped. The caller says so
  and exits 3: a rerun resumes after the last settled page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass

from bridge.mapping.model import Mapping
from bridge.pipeline.park import fill_all, unleased
from bridge.pipeline.report import ProgressSink, RunReport
from bridge.pipeline.services import Services
from bridge.pipeline.sync import SyncOptions, sync_mapping
from bridge.store import leases


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    holder: str
    ttl: float
    wait: float  # how long to wait for a mapping another process holds


async def backfill(
    services: Services,
    mappings: AbcMapping[str, Mapping],
    names: list[str],
    options: SyncOptions,
    lease: LeaseConfig,
    *,
    progress: Callable[[], ProgressSink | None] = lambda: None,
    stop: asyncio.Event | None = None,
) -> list[RunReport]:
    """Runs `names` once each, in the order given; returns the report of each run started."""
    reports: list[RunReport] = []
    async with leases.hold_all(
        services.pool, lease.holder, names, lease.ttl, wait=lease.wait, enabled=not options.dry_run
    ) as held:
        for name in names:
            if stop is not None and stop.is_set():
                break
            work = sync_mapping(mappings[name], services, options, progress(), mappings=mappings,
                                stop=stop, fence=held.fence(name))  # fmt: skip
            reports.append(await held(name, work))
        if not options.dry_run and not (stop is not None and stop.is_set()):
            fillable = await unleased(services.pool, mappings, mine=set(names))
            await fill_all(fillable, services.zendesk, services.pool, batch_size=options.batch_size,
                           concurrency=options.job_concurrency)  # fmt: skip
    return reports
