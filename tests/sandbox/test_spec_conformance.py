"""The Zendesk simulator's responses validate against the response schemas of zendesk-oas.yaml.

One known gap of the spec itself: job status `results` items are described for tickets and
users (integer ids, `CreateResourceResult`/`UpdateResourceResult`/`FailedResult`), while
custom object record jobs report ULID string ids. Completed jobs are therefore validated with
`results` checked separately (see test_completed_job_status_envelope_and_results).
"""

from __future__ import annotations

import copy

import jsonschema
import pytest

from tests import zendesk_oas

from .conftest import World, wait_for

CO = "/api/v2/custom_objects"


async def _setup(world: World) -> tuple[dict, dict]:
    status, obj, _ = await world.z("POST", CO, {"custom_object": {"key": "car", "title": "Car", "title_pluralized": "Cars"}})
    assert status == 201
    body = {"custom_object_field": {"key": "driver", "type": "lookup", "title": "Driver", "relationship_target_type": "zen:user"}}
    zendesk_oas.validate_request("POST", f"{CO}/{{custom_object_key}}/fields", body)
    status, field, _ = await world.z("POST", f"{CO}/car/fields", body)
    assert status == 201
    return obj, field


async def test_objects_fields_and_limits_match_the_spec(world: World) -> None:
    obj, field = await _setup(world)
    zendesk_oas.validate_response("POST", CO, 201, obj)
    zendesk_oas.validate_response("POST", f"{CO}/{{custom_object_key}}/fields", 201, field)
    for path, template in [
        (CO, CO),
        (f"{CO}/car", f"{CO}/{{custom_object_key}}"),
        (f"{CO}/car/fields", f"{CO}/{{custom_object_key}}/fields"),
        (f"{CO}/car/fields/driver", f"{CO}/{{custom_object_key}}/fields/{{custom_object_field_key_or_id}}"),
        (f"{CO}/limits/object_limit", f"{CO}/limits/object_limit"),
        (f"{CO}/limits/record_limit", f"{CO}/limits/record_limit"),
        (f"{CO}/car/limits/field_limit", f"{CO}/{{custom_object_key}}/limits/field_limit"),
        (f"{CO}/car/records/count", f"{CO}/{{custom_object_key}}/records/count"),
    ]:
        status, body, _ = await world.z("GET", path)
        assert status == 200
        zendesk_oas.validate_response("GET", template, 200, body)


async def test_records_match_the_spec(world: World) -> None:
    await _setup(world)
    user = next(iter(world.sandbox.zendesk.users.values()))
    create = {"custom_object_record": {"name": "Car 1", "external_id": "c1", "custom_object_fields": {"driver": str(user["id"])}}}
    zendesk_oas.validate_request("POST", f"{CO}/{{custom_object_key}}/records", create)
    status, record, _ = await world.z("POST", f"{CO}/car/records", create)
    zendesk_oas.validate_response("POST", f"{CO}/{{custom_object_key}}/records", status, record)
    status, body, _ = await world.z("PATCH", f"{CO}/car/records?external_id=c2", {"custom_object_record": {"name": "Car 2"}})
    zendesk_oas.validate_response("PATCH", f"{CO}/{{custom_object_key}}/records", status, body)
    status, body, _ = await world.z("GET", f"{CO}/car/records/{record['custom_object_record']['id']}")
    zendesk_oas.validate_response("GET", f"{CO}/{{custom_object_key}}/records/{{custom_object_record_id}}", status, body)
    status, body, _ = await world.z("GET", f"{CO}/car/records?page[size]=1")
    assert body["meta"]["has_more"] is True
    zendesk_oas.validate_response("GET", f"{CO}/{{custom_object_key}}/records", status, body)


async def test_jobs_users_and_token_match_the_spec(world: World) -> None:
    await _setup(world)
    job = {"job": {"action": "create_or_update_by_external_id", "items": [{"external_id": "a", "name": "A"}, {"external_id": "b"}]}}
    zendesk_oas.validate_request("POST", f"{CO}/{{custom_object_key}}/jobs", job)
    status, created, _ = await world.z("POST", f"{CO}/car/jobs", job)
    zendesk_oas.validate_response("POST", f"{CO}/{{custom_object_key}}/jobs", status, created)
    job_id = created["job_status"]["id"]

    async def done() -> bool:
        return (await world.z("GET", f"/api/v2/job_statuses/{job_id}"))[1]["job_status"]["status"] == "completed"

    await wait_for(done)
    _, many, _ = await world.z("GET", f"/api/v2/job_statuses/show_many?ids={job_id}")
    stripped = {"job_statuses": [{k: v for k, v in s.items() if k != "results"} for s in many["job_statuses"]]}
    zendesk_oas.validate_response("GET", "/api/v2/job_statuses/show_many", 200, stripped)
    uid = next(iter(world.sandbox.zendesk.users))
    status, users, _ = await world.z("GET", f"/api/v2/users/show_many?ids={uid}")
    zendesk_oas.validate_response("GET", "/api/v2/users/show_many", status, users)
    world.sandbox.zendesk.add_organization("Acme", external_id="acme")
    status, orgs, _ = await world.z("GET", "/api/v2/organizations/show_many?external_ids=acme")
    zendesk_oas.validate_response("GET", "/api/v2/organizations/show_many", status, orgs)
    info = world.info
    async with world.http.post(world.sandbox.zendesk_url + "/oauth/tokens", json={
        "grant_type": "client_credentials", "client_id": info.zendesk_client_id, "client_secret": info.zendesk_client_secret, "scope": "read write",
    }) as r:  # fmt: skip
        zendesk_oas.validate_response("POST", "/oauth/tokens", r.status, await r.json())


async def test_completed_job_status_envelope_and_results(world: World) -> None:
    await _setup(world)
    items = [{"external_id": "a", "name": "A"}, {"external_id": "b", "custom_object_fields": {"driver": "external_id:ghost"}}]
    _, created, _ = await world.z("POST", f"{CO}/car/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    url = created["job_status"]["url"]
    polled: dict = {}

    async def done() -> bool:
        polled.update((await world.z("GET", url))[1])
        return polled["job_status"]["status"] == "completed"

    await wait_for(done)
    envelope = copy.deepcopy(polled)
    results = envelope["job_status"].pop("results")
    zendesk_oas.validate_response("GET", "/api/v2/job_statuses/{job_status_id}", 200, envelope)
    ok, failed = results
    assert ok["success"] is True and ok["status"] == "Created" and isinstance(ok["id"], str) and ok["index"] == 0
    assert failed == {**failed, "success": False, "index": 1, "external_id": "b"} and failed["error"] and failed["details"]


async def test_error_bodies_match_the_spec(world: World) -> None:
    status, body, _ = await world.z("GET", f"{CO}/nothing")
    assert status == 404
    zendesk_oas.validate_schema({"$ref": "#/components/schemas/Errors"}, body)


def test_a_wrong_body_is_rejected() -> None:
    with pytest.raises(jsonschema.ValidationError):
        zendesk_oas.validate_response("GET", f"{CO}/{{custom_object_key}}/records", 200, {"custom_object_records": [], "links": {"next": None}, "meta": {}})
    with pytest.raises(jsonschema.ValidationError):
        zendesk_oas.validate_response("GET", f"{CO}/limits/object_limit", 200, {"count": "many", "limit": 30})
