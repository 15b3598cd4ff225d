"""Zendesk's plan limits, checked before `schema apply` changes anything.

Zendesk caps custom objects per account (3, 5, 30 or 50 by plan), fields per object (100,
standard fields not counted), lookup fields per object (5 on Suite Team and Growth, 10 on
other plans) and records per account (api/zendesk.md, the seed page). The object, field and
record limits are read from the `limits/*` endpoints at run time; the lookup limit has no
endpoint, so it is inferred from the object limit (3 or 5 objects means Team or Growth).

Invariants: every limit is checked against the whole plan before the first write, so a
plan that does not fit changes nothing; each problem names the limit, the current count,
what the plan would add and the mapping that asks for it, all reported together.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import ConfigError
from bridge.schema.plan import ObjectPlan, Plan
from bridge.zendesk.client import Limit, ZendeskClient

DOCUMENTED_FIELD_LIMIT = 100  # per object, when no existing object can be asked (api/zendesk.md)
SMALL_PLAN_OBJECTS = 5  # object limit of Suite Growth; Team has 3
LOOKUPS_SMALL, LOOKUPS_LARGE = 5, 10


@dataclass(frozen=True, slots=True)
class LimitProblem:
    limit: str  # object_limit, field_limit, lookup_field_limit, record_limit
    count: int
    allowed: int
    adding: int
    mappings: tuple[str, ...]
    object: str = ""

    def __str__(self) -> str:
        where = f" on object {self.object!r}" if self.object else ""
        who = ", ".join(repr(m) for m in self.mappings)
        if self.limit == "record_limit":
            return (f"record_limit: Zendesk already holds {self.count} of {self.allowed} custom object records, "
                    f"so mapping(s) {who} could not write any; delete records or move to a larger plan")
        return (f"{self.limit}: Zendesk has {self.count} of {self.allowed}{where}; mapping(s) {who} would add "
                f"{self.adding}, {self.count + self.adding - self.allowed} over the limit; remove them from the "
                "mapping(s), delete unused ones in Zendesk, or move to a larger plan")


class LimitExceeded(ConfigError):
    """The plan does not fit the account's limits; nothing was created."""

    def __init__(self, problems: list[LimitProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"schema apply stopped before any change: {len(self.problems)} Zendesk limit(s) "
                         f"would be exceeded:\n{lines}")


@dataclass(frozen=True, slots=True)
class Limits:
    objects: Limit
    records: Limit
    fields: dict[str, Limit]  # by object key, for existing objects the plan adds fields to
    lookups_per_object: int


async def read_limits(zendesk: ZendeskClient, plan: Plan) -> Limits:
    objects = await zendesk.object_limit()
    records = await zendesk.record_limit()
    fields = {o.wanted.key: await zendesk.field_limit(o.wanted.key) for o in plan.objects if o.exists and o.to_create}
    lookups = LOOKUPS_SMALL if objects.limit <= SMALL_PLAN_OBJECTS else LOOKUPS_LARGE
    return Limits(objects, records, fields, lookups)


async def check_limits(zendesk: ZendeskClient, plan: Plan) -> Limits:
    """Reads the limits and raises LimitExceeded if the plan would go over any of them."""
    limits = await read_limits(zendesk, plan)
    problems = limit_problems(plan, limits)
    if problems:
        raise LimitExceeded(problems)
    return limits


def limit_problems(plan: Plan, limits: Limits) -> list[LimitProblem]:
    """Pure: every limit the plan would exceed."""
    problems: list[LimitProblem] = []
    new = plan.objects_to_create
    if new and limits.objects.count + len(new) > limits.objects.limit:
        problems.append(LimitProblem("object_limit", limits.objects.count, limits.objects.limit, len(new),
                                     tuple(o.wanted.mapping for o in new)))
    default_fields = next(iter(limits.fields.values())).limit if limits.fields else DOCUMENTED_FIELD_LIMIT
    for obj in plan.objects:
        problems.extend(_object_problems(obj, limits.fields.get(obj.wanted.key), default_fields,
                                         limits.lookups_per_object))
    if plan.has_changes and limits.records.count >= limits.records.limit:
        problems.append(LimitProblem("record_limit", limits.records.count, limits.records.limit, 0,
                                     tuple(o.wanted.mapping for o in plan.objects)))
    return problems


def _object_problems(obj: ObjectPlan, fields: Limit | None, default: int, lookup_limit: int) -> list[LimitProblem]:
    adding = obj.to_create
    if not adding:
        return []
    found = []
    current = fields or Limit(count=0, limit=default)
    if current.count + len(adding) > current.limit:
        found.append(LimitProblem("field_limit", current.count, current.limit, len(adding),
                                  (obj.wanted.mapping,), obj.wanted.key))
    new_lookups = sum(1 for f in adding if f.wanted is not None and f.wanted.type == "lookup")
    if new_lookups and obj.lookups_in_zendesk + new_lookups > lookup_limit:
        found.append(LimitProblem("lookup_field_limit", obj.lookups_in_zendesk, lookup_limit, new_lookups,
                                  (obj.wanted.mapping,), obj.wanted.key))
    return found
