"""Zendesk users and organizations, read as lookup targets: by external ids, ids, email or name.

Batched where Zendesk allows it (api/zendesk.md, "Users and organizations"): `show_many`
takes up to 100 ids or external ids per request, so a page's distinct targets of one kind
cost one request per 100. Zendesk has no bulk look-up by email or name, so those are one
exact search per distinct value (`users/search?query=email:…`, `organizations/search?name=`);
callers cache the answers for the run. Answers are validated here (pydantic at the edge)
and handed back as `ZendeskPerson` dataclasses; ids are strings, as lookup values are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bridge.http.transport import Response
from bridge.zendesk.models import ZendeskPerson
from bridge.zendesk.wire import IdStr, parse_answer

MAX_SHOW_MANY = 100
Kind = Literal["users", "organizations"]
Send = Callable[..., Awaitable[Response]]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PersonWire(_Wire):
    id: IdStr
    name: str | None = None
    email: str | None = None
    external_id: IdStr | None = None


class UsersAnswer(_Wire):
    users: list[PersonWire]


class OrganizationsAnswer(_Wire):
    organizations: list[PersonWire]


def _people(kind: Kind, resp: Response) -> list[ZendeskPerson]:
    rows = (
        parse_answer(UsersAnswer, resp).users
        if kind == "users"
        else parse_answer(OrganizationsAnswer, resp).organizations
    )
    return [ZendeskPerson(r.id, r.external_id, r.email, r.name or "") for r in rows]


def _check_values(values: Sequence[str], what: str) -> None:
    for value in values:
        if "," in value:
            raise ValueError(
                f"{what} {value!r} contains a comma, which show_many cannot express; "
                "match this target by another attribute"
            )


async def show_many(
    send: Send, base: str, kind: Kind, *, ids: Sequence[str] = (), external_ids: Sequence[str] = ()
) -> list[ZendeskPerson]:
    """Users or organizations by id or by external id, 100 per request; unknown ones are absent."""
    param, values = ("ids", ids) if ids else ("external_ids", external_ids)
    _check_values(values, param)
    found: list[ZendeskPerson] = []
    for start in range(0, len(values), MAX_SHOW_MANY):
        chunk = ",".join(values[start : start + MAX_SHOW_MANY])
        resp = await send("GET", f"{base}/api/v2/{kind}/show_many", params={param: chunk})
        found.extend(_people(kind, resp))
    return found


async def search_users(send: Send, base: str, attribute: str, value: str) -> list[ZendeskPerson]:
    """Users whose `attribute` (email or name) equals `value`, by an exact search."""
    params: Mapping[str, Any] = {"query": f'{attribute}:"{value}"'}
    resp = await send("GET", f"{base}/api/v2/users/search", params=params)
    return [p for p in _people("users", resp) if _same(getattr(p, attribute), value)]


async def search_organizations(send: Send, base: str, name: str) -> list[ZendeskPerson]:
    """Organizations whose name equals `name` (Zendesk compares it case-insensitively)."""
    resp = await send("GET", f"{base}/api/v2/organizations/search", params={"name": name})
    return [p for p in _people("organizations", resp) if _same(p.name, name)]


def _same(found: str | None, wanted: str) -> bool:
    return found is not None and found.casefold() == wanted.casefold()
