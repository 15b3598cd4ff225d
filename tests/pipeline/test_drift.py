"""Drift: what Zendesk normalises compares equal; a hand edit never does."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.pipeline.drift import canonical, differences

WRITTEN = {"name": "Ford T", "fields": {"top_speed_mph": 120, "registered_on": "2024-01-02",
                                        "color": "red", "electric": False, "tags": ["a", "b"],
                                        "price": 1.5, "brand": None, "driver": "123"}}  # fmt: skip
LOOKUPS = {"brand", "driver"}


def zendesk(**changes: Any) -> dict[str, Any]:
    fields = {"top_speed_mph": "120", "registered_on": "2024-01-02T00:00:00Z", "color": "red",
              "electric": False, "tags": ["b", "a"], "price": "1.50", "brand": "999",
              "driver": "123", "added_in_zendesk": "whatever"}  # fmt: skip
    fields.update(changes)
    return fields


def test_what_zendesk_normalises_is_not_a_difference() -> None:
    assert differences(WRITTEN, "Ford T", zendesk(), lookups=LOOKUPS) == []


def test_hand_edits_are_differences_with_both_values() -> None:
    found = differences(WRITTEN, "Ford A", zendesk(color="blue", top_speed_mph=99, driver="7"), lookups=LOOKUPS)
    assert [(d.field, d.written, d.zendesk) for d in found] == [
        ("name", "Ford T", "Ford A"), ("color", "red", "blue"), ("driver", "123", "7"),
        ("top_speed_mph", 120, 99)]  # fmt: skip


def test_a_cleared_field_and_a_cleared_lookup_are_differences() -> None:
    found = differences(WRITTEN, "Ford T", zendesk(color=None, driver=None), lookups=LOOKUPS)
    assert [d.field for d in found] == ["color", "driver"]


def test_a_lookup_sent_empty_is_not_compared_its_link_may_be_filled_later() -> None:
    assert differences(WRITTEN, "Ford T", zendesk(brand="42"), lookups=LOOKUPS) == []


@given(st.one_of(st.integers(), st.decimals(allow_nan=False, allow_infinity=False, places=4)))
def test_a_number_equals_its_string_form(number: Any) -> None:
    assert canonical(number) == canonical(str(number))


@given(st.text(min_size=1), st.text(min_size=1))
def test_two_different_texts_differ_unless_both_read_as_the_same_number_date_or_flag(a: str, b: str) -> None:
    if canonical(a) == canonical(b) and a.strip() != b.strip():
        assert any(canonical(x) != x for x in (a, b))  # only a normalised form can make them equal
