"""Every request body the Zendesk client builds, checked against Zendesk's OpenAPI file.

The bodies come from the same pure builders the client sends (`test_client.py` asserts the
wire body equals the builder's), so a shape drifting from the spec fails here. Where the
spec's schema is itself wrong or missing, the test says so and checks what the spec documents
in prose instead.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from bridge.zendesk.auth import token_request_body
from bridge.zendesk.client import field_body, object_body
from bridge.zendesk.jobs import delete_job_body, upsert_job_body
from bridge.zendesk.models import UpsertItem
from bridge.zendesk.wire import JobStatusesEnvelope, RecordsPage, TokenAnswer

try:
    from tests import zendesk_oas
except ImportError:  # tests/ run without being a package
    import zendesk_oas  # type: ignore[no-redef]

JOBS = "/api/v2/custom_objects/{custom_object_key}/jobs"
OBJECTS = "/api/v2/custom_objects"
FIELDS = "/api/v2/custom_objects/{custom_object_key}/fields"
RECORDS = "/api/v2/custom_objects/{custom_object_key}/records"
SHOW_MANY_JOBS = "/api/v2/job_statuses/show_many"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return zendesk_oas.load_spec()


def upsert_body() -> dict[str, Any]:
    return upsert_job_body([
        UpsertItem("outreach:vehicles:1", "Falcon", {"top_speed_mph": 120, "registered_on": "2024-01-02",
                                                     "driver": "external_id:outreach:users:9"}),
        UpsertItem("outreach:vehicles:2", "Comet", {}),
    ])


LOOKUP_FIELD = {"key": "driver", "title": "Driver", "type": "lookup",
                "relationship_target_type": "zen:user"}
DROPDOWN_FIELD = {"key": "fuel", "title": "Fuel", "type": "dropdown", "custom_field_options": [
    {"name": "Petrol", "value": "petrol"}, {"name": "Electric", "value": "electric"}]}
PLAIN_FIELDS = [
    {"key": "top_speed_mph", "title": "Top speed (mph)", "type": "integer"},
    {"key": "notes", "title": "Notes", "type": "textarea", "description": "Free text"},
    {"key": "vin", "title": "VIN", "type": "regexp", "regexp_for_validation": "^[A-Z0-9]{17}$"},
    {"key": "brand", "title": "Brand", "type": "lookup",
     "relationship_target_type": "zen:custom_object:vehicle_brand"},
]


def test_upsert_job_body_matches_the_spec(spec) -> None:
    body = upsert_body()

    zendesk_oas.validate_request("POST", JOBS, body)

    record_props = spec["components"]["schemas"]["CustomObjectRecord"]["properties"]
    for item in body["job"]["items"]:
        assert set(item) <= set(record_props)  # external_id is top-level, as the spec defines
        assert "external_id" not in item["custom_object_fields"]
    assert body["job"]["action"] in spec["paths"][JOBS]["post"]["description"]


def test_delete_job_body_matches_the_documented_string_items(spec) -> None:
    body = delete_job_body(["outreach:vehicles:1", "outreach:vehicles:2"])
    operation = spec["paths"][JOBS]["post"]

    # The spec's schema types every item as a record object, but its own prose says delete
    # actions take strings; check the body against the schema with that one correction.
    with pytest.raises(jsonschema.ValidationError):
        zendesk_oas.validate_request("POST", JOBS, body)
    schema = copy.deepcopy(spec["components"]["schemas"]["CustomObjectRecordsBulkCreateRequest"])
    items = schema["properties"]["job"]["properties"]["items"]
    assert "array of strings for job actions that delete" in items["description"]
    items["items"] = {"type": "string"}
    zendesk_oas.validate_schema(schema, body)
    assert f'`"{body["job"]["action"]}"`' in operation["description"]


def test_create_object_body_matches_the_spec(spec) -> None:
    zendesk_oas.validate_request("POST", OBJECTS, object_body("vehicle", "Vehicle", "Vehicles"))
    zendesk_oas.validate_request(
        "POST", OBJECTS, object_body("vehicle", "Vehicle", "Vehicles", "Cars from Outreach")
    )


@pytest.mark.parametrize(
    "field", [LOOKUP_FIELD, DROPDOWN_FIELD, *PLAIN_FIELDS], ids=lambda f: f["key"]
)
def test_create_field_body_matches_the_spec(spec, field) -> None:
    body = field_body(field)

    zendesk_oas.validate_request("POST", FIELDS, body)

    types = spec["paths"][FIELDS]["post"]["description"]
    assert f"* {field['type']}" in types


def test_token_request_body_uses_only_documented_parameters(spec) -> None:
    # POST /oauth/tokens documents its JSON parameters as a table in prose, not as a schema.
    operation = spec["paths"]["/oauth/tokens"]["post"]
    assert "requestBody" not in operation
    documented = set(re.findall(r"^\| (\w+)\s+\|", operation["description"], re.MULTILINE))
    assert {"grant_type", "client_id", "client_secret", "scope"} <= documented
    assert "must be formatted as JSON" in operation["description"]

    body = token_request_body("bridge-app", "not-a-real-secret", "read write")

    assert set(body) <= documented
    assert body["grant_type"] == "client_credentials"
    assert all(isinstance(v, str) for v in body.values())


def test_token_answer_model_reads_the_spec_example(spec) -> None:
    examples = spec["components"]["examples"]
    for name in ("OAuthTokenForGrantTypesResponseExample",):
        example = examples[name]["value"]
        zendesk_oas.validate_response("POST", "/oauth/tokens", 201, example)
        assert TokenAnswer.model_validate(example).access_token == example["access_token"]
    full = spec["components"]["schemas"]["OAuthTokenForGrantTypesObject"]["example"]
    assert TokenAnswer.model_validate(full).expires_in == full["expires_in"]


def test_records_page_model_reads_a_spec_valid_page(spec) -> None:
    page = {"custom_object_records": [{"id": "01GDXYD7ZTWYP542BA8MDDTE36", "name": "Falcon",
                                       "external_id": "outreach:vehicles:1",
                                       "custom_object_fields": {"top_speed_mph": 120}}],
            "links": {"next": None, "prev": None},
            "meta": {"has_more": False, "after_cursor": None, "before_cursor": None}}

    zendesk_oas.validate_response("GET", RECORDS, 200, page)

    assert RecordsPage.model_validate(page).custom_object_records[0].id == page[
        "custom_object_records"][0]["id"]


def test_job_statuses_poll_asks_by_ids_and_its_model_reads_the_spec_answers(spec) -> None:
    operation = spec["paths"][SHOW_MANY_JOBS]["get"]
    assert [(p["name"], p["in"], p.get("required")) for p in operation["parameters"]] == [
        ("ids", "query", True)]  # what the poller sends, comma-separated
    example = spec["components"]["examples"]["JobStatusesResponseExample"]["value"]
    zendesk_oas.validate_response("GET", SHOW_MANY_JOBS, 200, example)
    assert [(s.id, s.status) for s in JobStatusesEnvelope.model_validate(example).job_statuses
            if s is not None] == [(s["id"], s["status"]) for s in example["job_statuses"]]
    full = {"job_statuses": [spec["components"]["schemas"]["JobStatusObject"]["example"]]}
    zendesk_oas.validate_response("GET", SHOW_MANY_JOBS, 200, full)
    (status,) = JobStatusesEnvelope.model_validate(full).job_statuses
    assert status is not None and status.finished and [r.id for r in status.result_items] == ["244", "245"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (JOBS, {"job": {"action": "create_or_update_by_external_id", "items": {"a": 1}}}),
        (JOBS, {"job": {"action": 7, "items": []}}),
        (JOBS, {"job": {"action": "create", "items": [{"name": "x", "custom_object_fields": []}]}}),
        (JOBS, {"job": {"action": "create", "items": [{"name": "x", "external_id": 12}]}}),
        (OBJECTS, {"custom_object": {"key": "vehicle", "title": 5, "title_pluralized": "V"}}),
        (FIELDS, {"custom_object_field": {"key": "speed", "type": "integer"}}),
        (FIELDS, {"custom_object_field": {**DROPDOWN_FIELD, "custom_field_options": "a,b"}}),
        (FIELDS, {"custom_object_field": {**DROPDOWN_FIELD,
                                          "custom_field_options": [{"name": "Petrol"}]}}),
    ],
    ids=["items-not-array", "action-not-string", "fields-not-object", "external-id-not-string",
         "title-not-string", "field-without-title", "options-not-array", "option-without-value"],
)
def test_the_validator_rejects_wrong_bodies(spec, path, body) -> None:
    method = "POST"
    with pytest.raises(jsonschema.ValidationError):
        zendesk_oas.validate_request(method, path, body)


def test_builders_refuse_what_the_spec_would_refuse() -> None:
    with pytest.raises(ValueError, match="title"):
        field_body({"key": "speed", "type": "integer"})
