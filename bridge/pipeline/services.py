"""What every pipeline step works with: both API clients, the database pool, the people
directory and the record export.

Built once per process by `wiring.open_services`; sync, targeted syncs, reconcile, dead-letter
retry and the fill take it, so none of them imports another to get it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bridge.outreach.client import OutreachClient
from bridge.pipeline.resolve import PeopleDirectory
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.record_export import RecordExport


@dataclass(frozen=True, slots=True)
class Services:
    outreach: OutreachClient
    zendesk: ZendeskClient
    pool: asyncpg.Pool
    directory: PeopleDirectory | None = None  # Zendesk users/organizations kept in Postgres
    # custom object records changed since a cursor (`bridge verify`); paced with the directory's
    record_export: RecordExport | None = None
