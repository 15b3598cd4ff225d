"""The preview's classification and field comparison, record by record (no I/O)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.pipeline import diff
from bridge.pipeline.diff import Action, FieldChange, RecordDiff, Tally


def test_no_row_or_a_gone_row_is_a_create_an_equal_hash_is_unchanged_else_an_update() -> None:
    assert diff.classify("h1", None) is Action.CREATE
    assert diff.classify("h1", "h1") is Action.UNCHANGED
    assert diff.classify("h2", "h1") is Action.UPDATE


def test_an_update_lists_the_name_and_the_fields_that_differ_from_what_was_sent() -> None:
    previous = {"name": "Old", "fields": {"color": "red", "speed": 100, "electric": True, "brand": "9"}}
    changes = diff.field_changes("New", {"color": "blue", "speed": 100, "electric": True, "brand": "9"}, previous)
    assert changes == (FieldChange("name", "Old", "New"), FieldChange("color", "red", "blue"))


def test_json_equal_numbers_are_no_change_but_true_and_1_are() -> None:
    previous = {"name": "n", "fields": {"a": 1, "b": 1}}
    assert diff.field_changes("n", {"a": 1.0, "b": True}, previous) == (FieldChange("b", 1, True),)


def test_a_field_not_sent_is_no_change_and_a_new_field_changes_from_none() -> None:
    previous = {"name": "n", "fields": {"gone_from_mapping": "x", "same": 1}}
    changes = diff.field_changes("n", {"same": 1, "added": "y", "added_empty": None}, previous)
    assert changes == (FieldChange("added", None, "y"),)


def test_an_unresolved_lookup_is_a_change_only_when_something_was_sent_before() -> None:
    previous = {"name": "n", "fields": {"brand": "77", "driver": None}}
    fields = {"brand": diff.WOULD_PARK, "driver": diff.WOULD_ASK}
    assert diff.field_changes("n", fields, previous) == (FieldChange("brand", "77", diff.WOULD_PARK),)
    assert str(diff.WOULD_PARK) == "(unresolved: would park)"


def test_a_create_lists_every_value_from_none() -> None:
    changes = diff.field_changes("n", {"b": 2, "a": None, "l": diff.WOULD_PARK}, None)
    assert changes == (FieldChange("name", None, "n"), FieldChange("a", None, None), FieldChange("b", None, 2),
                       FieldChange("l", None, diff.WOULD_PARK))


def test_the_json_form_has_every_key_always() -> None:
    keys = {"type", "mapping", "source_id", "external_id", "action", "zendesk_id", "previous_kept", "changes", "error"}
    update = RecordDiff("m", "1", "outreach:v:1", Action.UPDATE, "z1",
                        (FieldChange("brand", "7", diff.WOULD_PARK), FieldChange("c", "a", "b")))
    dead = RecordDiff("m", "2", None, Action.DEAD_LETTER, error="bad")
    for record in (update, dead):
        assert set(json.loads(json.dumps(record.as_json()))) == keys
    assert update.as_json()["changes"] == [
        {"field": "brand", "from": "7", "to": None, "unresolved": "would park"},
        {"field": "c", "from": "a", "to": "b", "unresolved": None},
    ]
    tally = Tally("m")
    for record in (update, dead, dead):
        tally.add(record)
    assert tally.as_json() == {"type": "summary", "mapping": "m", "read": 3, "create": 0, "update": 1,
                               "unchanged": 0, "dead_letter": 2}


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3),
                   st.lists(st.text(max_size=2), max_size=2))
payloads = st.fixed_dictionaries({"name": st.text(max_size=4),
                                  "fields": st.dictionaries(st.sampled_from("abcdef"), values, max_size=6)})


@given(previous=payloads, edits=st.dictionaries(st.sampled_from("abcdefg"), values, max_size=4),
       rename=st.one_of(st.none(), st.text(max_size=4)))
def test_random_edits_are_reported_exactly(previous: dict[str, Any], edits: dict[str, Any],
                                           rename: str | None) -> None:
    """Edit some fields of a payload: exactly the edits that change a sent value are listed,
    each from the old value to the new one."""
    fields = {**previous["fields"], **edits}
    name = previous["name"] if rename is None else rename
    changes = diff.field_changes(name, fields, previous)
    old = previous["fields"]
    expected = {k: (old.get(k), v) for k, v in edits.items() if not _json_same(old.get(k), v)}
    if name != previous["name"]:
        expected["name"] = (previous["name"], name)
    assert {c.field: (c.before, c.after) for c in changes} == expected


def _json_same(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b)
