"""Users and organizations as lookup targets, and `update` jobs, on the wire."""

from __future__ import annotations

import re

import pytest

from bridge.errors import RejectedError
from bridge.zendesk.jobs import update_job_body
from bridge.zendesk.models import ItemResult, RecordUpdate, ZendeskPerson

from .conftest import BASE, sent, sent_json

JOBS = f"{BASE}/api/v2/custom_objects/car/jobs"
USERS = re.compile(rf"^{re.escape(BASE)}/api/v2/users/show_many\?.*$")
ORGS = re.compile(rf"^{re.escape(BASE)}/api/v2/organizations/show_many\?.*$")


def gets(mock) -> list[tuple[str, dict]]:
    return [(str(u), call.kwargs) for (m, u), calls in mock.requests.items() for call in calls if m == "GET"]


def user(n: int, ext: str | None = None, email: str | None = None) -> dict:
    return {"id": n, "name": f"User {n}", "email": email or f"u{n}@example.com", "external_id": ext,
            "url": f"{BASE}/api/v2/users/{n}.json"}


async def test_users_by_external_ids_asks_100_per_request(client, mock) -> None:
    mock.get(USERS, payload={"users": [user(1, "outreach:prospect:1")], "count": 1}, repeat=True)
    wanted = [f"outreach:prospect:{n}" for n in range(150)]

    found = await client.users_by_external_ids(wanted)

    calls = gets(mock)
    assert len(calls) == 2
    chunks = [kw["params"]["external_ids"].split(",") for _, kw in calls]
    assert [len(c) for c in chunks] == [100, 50] and sum(chunks, []) == wanted
    assert found == [ZendeskPerson("1", "outreach:prospect:1", "u1@example.com", "User 1")] * 2


async def test_organizations_by_ids_and_commas_refused(client, mock) -> None:
    mock.get(ORGS, payload={"organizations": [{"id": 7, "name": "Acme", "external_id": None}]})

    assert [o.id for o in await client.organizations_by_ids(["7", "8"])] == ["7"]
    with pytest.raises(ValueError, match="comma"):
        await client.organizations_by_external_ids(["a,b"])


async def test_users_by_email_keeps_exact_matches_only(client, mock) -> None:
    search = re.compile(rf"^{re.escape(BASE)}/api/v2/users/search\?.*$")
    mock.get(search, payload={"users": [user(1, email="Ada@Example.com"), user(2, email="ada@example.com.au")]})

    found = await client.users_by_email("ada@example.com")

    assert [p.id for p in found] == ["1"]
    ((_, kwargs),) = gets(mock)
    assert kwargs["params"] == {"query": 'email:"ada@example.com"'}


async def test_organizations_by_name(client, mock) -> None:
    search = re.compile(rf"^{re.escape(BASE)}/api/v2/organizations/search\?.*$")
    mock.get(search, payload={"organizations": [{"id": 3, "name": "ACME"}, {"id": 4, "name": "Acme Ltd"}]})

    assert [o.id for o in await client.organizations_by_name("Acme")] == ["3"]


async def test_a_wrong_shape_is_a_rejected_error(client, mock) -> None:
    mock.get(USERS, payload={"people": []})
    with pytest.raises(RejectedError, match="UsersAnswer"):
        await client.users_by_ids(["1"])


async def test_update_records_sends_ids_and_only_the_given_fields(client, mock) -> None:
    mock.post(JOBS, status=201, payload={"job_status": {"id": "J1", "status": "completed", "results": [
        {"id": "01A", "index": 0, "success": True, "status": "Updated"},
        {"index": 1, "success": False, "error": "RecordInvalid", "details": "brand: does not exist"},
    ]}})

    results = await client.update_records("car", [RecordUpdate("01A", {"driver": "9"}), RecordUpdate("01B", {"brand": "X"})])

    assert results == [ItemResult("01A", ok=True, record_id="01A"),
                       ItemResult("01B", ok=False, error="RecordInvalid: brand: does not exist")]
    (call,) = sent(mock, "POST", JOBS)
    assert sent_json(call) == update_job_body([RecordUpdate("01A", {"driver": "9"}), RecordUpdate("01B", {"brand": "X"})])
    assert sent_json(call) == {"job": {"action": "update", "items": [
        {"id": "01A", "custom_object_fields": {"driver": "9"}}, {"id": "01B", "custom_object_fields": {"brand": "X"}}]}}
