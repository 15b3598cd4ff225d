"""`bridge schema apply`: create what the plan says is missing, and nothing else.

Order: the limits are checked first (`limits.py`), then every missing object is created
(lookup targets first, in the plan's dependency order), then the missing fields, so a
lookup's target object exists when the lookup is made. Invariants: nothing is ever deleted,
retyped or edited; a field that differs, is blocked or is unused is reported as left alone
with the reason; running it again finds nothing missing and sends no write at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bridge.logs import get_logger
from bridge.mapping.model import Mapping
from bridge.schema.desired import wanted_objects
from bridge.schema.limits import check_limits
from bridge.schema.plan import ObjectPlan, Plan, make_plan
from bridge.zendesk.client import ZendeskClient

log = get_logger(__name__)
ChangeAction = Literal["created", "exists", "left_alone"]


@dataclass(frozen=True, slots=True)
class Change:
    """What apply did with one object (`field` None) or field."""

    object: str
    field: str | None
    action: ChangeAction
    mapping: str = ""
    reason: str = ""


async def apply_plan(zendesk: ZendeskClient, plan: Plan) -> list[Change]:
    """Creates the plan's missing objects, then fields; returns a line for everything."""
    if plan.has_changes:
        await check_limits(zendesk, plan)
    changes: list[Change] = []
    for obj in dependency_order(plan.objects):
        changes.append(await _ensure_object(zendesk, obj))
    for obj in plan.objects:
        for line in obj.fields:
            if line.action == "create" and line.wanted is not None:
                await zendesk.create_field(obj.wanted.key, line.wanted.body())
                log.info("field_created", object=obj.wanted.key, field=line.key, type=line.wanted.type)
                changes.append(Change(obj.wanted.key, line.key, "created", line.mapping))
            elif line.action == "ok":
                changes.append(Change(obj.wanted.key, line.key, "exists", line.mapping))
            else:
                changes.append(Change(obj.wanted.key, line.key, "left_alone", line.mapping, line.reason))
    return changes


async def ensure_objects(
    zendesk: ZendeskClient, mappings: dict[str, Mapping], order: Iterable[str]
) -> list[Change]:
    """Plan and apply for the mappings in `order` (the demo's and benchmarks' entry point)."""
    plan = await make_plan(zendesk, wanted_objects(mappings, order))
    return await apply_plan(zendesk, plan)


async def _ensure_object(zendesk: ZendeskClient, obj: ObjectPlan) -> Change:
    wanted = obj.wanted
    if obj.exists:
        return Change(wanted.key, None, "exists", wanted.mapping)
    await zendesk.create_object(wanted.key, wanted.title, wanted.title_pluralized, wanted.description)
    log.info("object_created", object=wanted.key, mapping=wanted.mapping)
    return Change(wanted.key, None, "created", wanted.mapping)


def dependency_order(objects: Iterable[ObjectPlan]) -> list[ObjectPlan]:
    """Objects whose lookups point at others come after those others (cycles: as given)."""
    pending = list(objects)
    keys = {o.wanted.key for o in pending}
    done: set[str] = set()
    ordered: list[ObjectPlan] = []
    while pending:
        ready = [o for o in pending
                 if all(d in done or d not in keys or d == o.wanted.key for d in o.wanted.depends_on)]
        batch = ready or pending[:1]  # a cycle: break it; objects are created before any field anyway
        for o in batch:
            ordered.append(o)
            done.add(o.wanted.key)
            pending.remove(o)
    return ordered
