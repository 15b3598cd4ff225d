"""Lookup target kinds: parsing, match rules, resolution, schema type, external ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import targets
from bridge.errors import MappingError
from bridge.mapping.load import load_mappings
from bridge.targets import Kind, LookupTarget, Resolution

MAPPING_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1)
VALID = st.one_of(
    st.sampled_from([targets.USER, targets.ORGANIZATION]),
    MAPPING_NAMES.map(targets.of_mapping),
)


@given(VALID)
def test_format_then_parse_round_trips(target: LookupTarget) -> None:
    assert targets.parse(str(target)) == target
    assert targets.from_stored(target.stored()) == target


@given(st.text())
def test_any_text_parses_to_its_own_spelling_or_is_refused(text: str) -> None:
    try:
        target = targets.parse(text)
    except ValueError as exc:
        assert str(exc) == f"unknown target {text!r}; expected mapping:<name>, zen:user or zen:organization"
    else:
        assert str(target) == text


def test_kinds() -> None:
    assert targets.parse("mapping:vehicle_brands") == LookupTarget(Kind.MAPPING, "vehicle_brands")
    assert targets.parse("zen:user") == LookupTarget(Kind.USER)
    assert targets.parse("zen:organization").kind is Kind.ORGANIZATION
    assert targets.parse("mapping:brands").resolution is Resolution.ID_MAP
    assert targets.USER.resolution is targets.ORGANIZATION.resolution is Resolution.PEOPLE


@pytest.mark.parametrize(
    "text", ["", "user", "zen:", "zen:ticket", "zen:custom_object:car", "mapping:", "mapping:a b",
             "mapping:a.b", "Mapping:brands", " zen:user", "zen:user "],
)
def test_bad_targets_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected mapping:<name>, zen:user or zen:organization") as caught:
        targets.parse(text)
    assert f"unknown target {text!r}" in str(caught.value)


def test_stored_form_is_a_bare_mapping_name_or_the_zendesk_kind() -> None:
    assert targets.of_mapping("brands").stored() == "brands"
    assert targets.USER.stored() == "zen:user"
    assert targets.from_stored("zen:organization") == targets.ORGANIZATION
    assert targets.from_stored("brands") == targets.of_mapping("brands")


@pytest.mark.parametrize(
    ("target", "match", "fragment"),
    [
        (targets.USER, None, "'match' is required for zen:user: external_id, email or name"),
        (targets.ORGANIZATION, None, "'match' is required for zen:organization: external_id or name"),
        (targets.of_mapping("b"), "email", "'match' applies to zen:user and zen:organization only"),
        (targets.ORGANIZATION, "email", "organizations have no email; match zen:organization by external_id or name"),
        (targets.USER, "phone", "zen:user cannot be matched by phone; match zen:user by external_id, email or name"),
    ],
)
def test_match_rules(target: LookupTarget, match: str | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        targets.check_match(target, match)


def test_good_matches_pass() -> None:
    for target, match in [(targets.USER, "email"), (targets.USER, "name"), (targets.USER, "external_id"),
                          (targets.ORGANIZATION, "name"), (targets.of_mapping("b"), None)]:
        targets.check_match(target, match)


def test_match_attributes_name_the_outreach_types_that_carry_the_value() -> None:
    assert targets.match_attributes(targets.USER, "email") == (("prospect", "emails"), ("user", "email"))
    assert targets.match_attributes(targets.USER, "name") == (("prospect", "name"), ("user", "name"))
    assert targets.match_attributes(targets.ORGANIZATION, "name") == (("account", "name"),)
    assert targets.match_attributes(targets.USER, "external_id") == ()
    assert targets.match_attributes(targets.of_mapping("b"), None) == ()


def test_people_target_of_outreach_types() -> None:
    assert targets.people_target("prospect") == (targets.USER, "email")
    assert targets.people_target("user") == (targets.USER, "email")
    assert targets.people_target("account") == (targets.ORGANIZATION, "name")
    assert targets.people_target("vehicles") is None


def test_schema_type() -> None:
    assert targets.schema_type(targets.USER) == "zen:user"
    assert targets.schema_type(targets.ORGANIZATION) == "zen:organization"
    assert targets.schema_type(targets.of_mapping("brands"), "vehicle_brand") == "zen:custom_object:vehicle_brand"
    assert targets.schema_type(targets.of_mapping("missing"), None) is None
    assert targets.custom_object_key("zen:custom_object:vehicle_brand") == "vehicle_brand"
    assert targets.custom_object_key("zen:user") is None


def test_external_id_convention_is_the_mapping_default() -> None:
    assert targets.external_id_of("prospect", "42") == "outreach:prospect:42"
    assert targets.EXTERNAL_ID == "outreach:{type}:{id}"


def test_a_bad_target_in_a_mapping_file_is_a_mapping_problem_with_its_key_path(tmp_path: Path) -> None:
    (tmp_path / "vehicles.yaml").write_text(
        "source: {type: vehicles}\n"
        "target: {object: vehicle, name: '{id}'}\n"
        "fields: {driver: {type: lookup}}\n"
        "relationships:\n"
        "  driver: {from: main_driver, target: zen:ticket, match: name}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as caught:
        load_mappings(tmp_path)
    [problem] = [p for p in caught.value.problems if p.path.startswith("relationships.")]
    assert "vehicles.yaml" in problem.file and problem.path == "relationships.driver.target"
    assert "unknown target 'zen:ticket'; expected mapping:<name>, zen:user or zen:organization" in problem.message
