"""One record as each API holds it now, at one request per API (`bridge explain`).

Outreach: the mapping's list URL narrowed to `filter[id]=<id>`, with the `include` and related
`fields` a run asks for (so email and name lookups read the same values), but WITHOUT the
mapping's `source.filter`: a record outside the filter still comes back, so "filtered out" and
"gone from Outreach" can be told apart. Zendesk: the records list by `filter[external_ids]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.mapping.model import Mapping
from bridge.outreach.client import OutreachClient
from bridge.outreach.models import OutreachId, SourceRecord
from bridge.pipeline.reconcile import with_page_size
from bridge.pipeline.resolve import Included, relationship_query
from bridge.zendesk.client import ZendeskClient
from bridge.zendesk.models import ZendeskRecord


@dataclass(frozen=True, slots=True)
class ApiRemote:
    """The `explain.Remote` that asks the real APIs."""

    outreach: OutreachClient
    zendesk: ZendeskClient

    async def outreach_record(self, mapping: Mapping, source_id: str) -> tuple[SourceRecord | None, Included]:
        include, fields = relationship_query(mapping)
        url = self.outreach.list_url(
            mapping.source.type, custom_object=mapping.source.custom_object,
            filters={"filter[id]": source_id}, include=include, fields=fields,
        )  # fmt: skip
        included: dict[tuple[str, OutreachId], dict[str, Any]] = {}
        async for page in self.outreach.pages(with_page_size(url, 1000)):
            included.update(page.included)
            found = next((r for r in page.records if r.id == source_id), None)
            return found, included  # one id: one page, and no read-ahead of another
        return None, included

    async def zendesk_record(self, object_key: str, external_id: str) -> ZendeskRecord | None:
        if "," in external_id:  # filter[external_ids] cannot express it
            return None
        found = await self.zendesk.records_by_external_ids(object_key, [external_id])
        return next((r for r in found if r.external_id == external_id), None)
