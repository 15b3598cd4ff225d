"""What every pipeline step works with: both API clients, the database pool and the people
directory.

Built once per process by `wiring.open_services`; sync, targeted syncs, reconcile, dead-letter
retry and the fill take it, so none of them imports another to get it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bridge.outreach.client import OutreachClient
from bridge.pipeline.resolve import PeopleDirectory
from bridge.pipeline.verify_read import Reader
from bridge.zendesk.client import ZendeskClient


@dataclass(frozen=True, slots=True)
class Services:
    outreach: OutreachClient
    zendesk: ZendeskClient
    pool: asyncpg.Pool
    directory: PeopleDirectory | None = None  # Zendesk users/organizations kept in Postgres
    record_export: Reader | None = None  # custom object record export (bridge verify); None: list
