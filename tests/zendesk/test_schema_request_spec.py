"""Every request body `schema apply` sends, checked against Zendesk's OpenAPI file.

Apply builds its bodies from the wanted objects and fields (`bridge.schema.desired`) through
the client's pure builders, so checking what the repo's mappings and a scaffolded mapping
want covers every kind of body: objects, plain fields, dropdowns, regexps and lookups to users,
organizations and custom objects. The limit answers are read with the spec's own example.
"""

from __future__ import annotations

import pytest

from bridge.mapping.load import load_mappings
from bridge.mapping.model import Mapping
from bridge.mapping.order import sync_order
from bridge.schema.desired import wanted_objects
from bridge.zendesk.client import field_body, object_body
from bridge.zendesk.wire import LimitAnswer
from tests.fixtures_sandbox import REPO

try:
    from tests import zendesk_oas
except ImportError:  # tests/ run without being a package
    import zendesk_oas  # type: ignore[no-redef]

OBJECTS = "/api/v2/custom_objects"
FIELDS = "/api/v2/custom_objects/{custom_object_key}/fields"

EXTRA = Mapping.model_validate({
    "name": "every_type", "source": {"type": "every_type"}, "target": {"object": "every_type", "name": "{id}"},
    "fields": {
        "plain": "plain", "long": {"type": "textarea"}, "count": {"type": "integer"}, "price": {"type": "decimal"},
        "flag": {"type": "checkbox"}, "day": {"type": "date"},
        "kind": {"type": "dropdown", "options": ["a", "b"]}, "tags": {"type": "multiselect", "options": ["x", "y"]},
        "vin": {"type": "regexp", "pattern": "^[A-Z0-9]{17}$"},
    },
    "relationships": {"owner": {"from": "owner", "target": "zen:user", "match": "email"},
                      "company": {"from": "company", "target": "zen:organization", "match": "name"},
                      "brand": {"from": "brand", "target": "mapping:vehicle_brands"}},
})


def wanted():
    mappings = {**load_mappings(REPO / "mappings"), "every_type": EXTRA}
    return wanted_objects(mappings, sync_order(mappings))


def test_every_object_body_apply_sends_matches_the_spec() -> None:
    zendesk_oas.load_spec()
    for obj in wanted():
        zendesk_oas.validate_request("POST", OBJECTS, object_body(obj.key, obj.title, obj.title_pluralized,
                                                                   obj.description))


def test_every_field_body_apply_sends_matches_the_spec() -> None:
    spec = zendesk_oas.load_spec()
    kinds = set()
    for obj in wanted():
        for field in obj.fields:
            zendesk_oas.validate_request("POST", FIELDS, field_body(field.body()))
            assert f"* {field.type}" in spec["paths"][FIELDS]["post"]["description"]
            kinds.add(field.target or field.type)
    assert {"zen:user", "zen:organization", "zen:custom_object:vehicle_brand", "dropdown", "multiselect",
            "regexp", "checkbox", "date", "decimal", "integer", "textarea", "text"} <= kinds


@pytest.mark.parametrize("path", ["/api/v2/custom_objects/limits/object_limit",
                                  "/api/v2/custom_objects/limits/record_limit",
                                  "/api/v2/custom_objects/{custom_object_key}/limits/field_limit"])
def test_limit_answers_match_the_spec_and_parse(path: str) -> None:
    answer = {"count": 3, "limit": 30}
    zendesk_oas.validate_response("GET", path, 200, answer)
    assert LimitAnswer.model_validate(answer).limit == 30
