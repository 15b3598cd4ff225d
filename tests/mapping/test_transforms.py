"""The transform registry: each transform with good and bad values, and templates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bridge.errors import RecordError
from bridge.mapping import transforms
from bridge.mapping.templates import Template
from bridge.mapping.transforms import TransformContext, apply_chain, build_step

CTX = TransformContext(field="f", attributes={"first": "Ada", "last": "Lovelace", "n": {"x": 7}}, record_id="9",
                       record_type="people")


def run(name: str, value: Any, arg: Any = None, **options: Any) -> Any:
    return apply_chain([build_step(name, arg, options)], value, CTX)


@pytest.mark.parametrize(
    ("name", "arg", "value", "expected"),
    [
        ("strip", None, "  a b  ", "a b"),
        ("strip", None, [" a ", None], ["a", None]),
        ("lower", None, "AbC", "abc"),
        ("upper", None, "AbC", "ABC"),
        ("title", None, "ada lovelace", "Ada Lovelace"),
        ("digits", None, "130mph", "130"),
        ("digits", None, 42, "42"),
        ("to_int", None, "42", 42),
        ("to_int", None, " 7 ", 7),
        ("to_int", None, 3.0, 3),
        ("to_int", None, "", None),
        ("to_decimal", None, "12.50", Decimal("12.50")),
        ("to_decimal", None, 0.1, Decimal("0.1")),
        ("to_bool", None, "Yes", True),
        ("to_bool", None, "off", False),
        ("to_bool", None, 1, True),
        ("to_bool", None, "0", False),
        ("to_date", None, "2024-07-25T13:18:30.736332Z", "2024-07-25"),
        ("to_date", None, "2024-07-25T23:30:00-05:00", "2024-07-26"),
        ("to_date", None, "2024-07-25", "2024-07-25"),
        ("to_datetime", None, "2024-07-25T13:18:30+02:00", "2024-07-25T11:18:30Z"),
        ("first", None, ["a", "b"], "a"),
        ("first", None, [], None),
        ("map", {"R": "red", 1: "one"}, "R", "red"),
        ("map", {"R": "red", 1: "one"}, "1", "one"),
        ("map", {"R": "red"}, "G", "G"),
        ("map", {"R": "red"}, ["R", "G"], ["red", "G"]),
        ("default", "n/a", None, "n/a"),
        ("default", "n/a", "", "n/a"),
        ("default", "n/a", "x", "x"),
        ("template", "{first} {last} ({value})", "v", "Ada Lovelace (v)"),
        ("template", "{n.x}-{missing}-{id}-{type}", None, "7--9-people"),
        ("join", None, ["a", None, 2], "a, 2"),
        ("join", "|", ["a", "b"], "a|b"),
        ("split", None, "a, b,,c ", ["a", "b", "c"]),
        ("split", ";", "a;b", ["a", "b"]),
        ("truncate", 3, "abcdef", "abc"),
        ("replace", {"_": " "}, "a_b_c", "a b c"),
        ("null_if", ["", "n/a"], "n/a", None),
        ("null_if", ["n/a"], "x", "x"),
        ("round", 1, "2.25", Decimal("2.2")),
        ("multiply", 2, "1.5", Decimal("3.0")),
    ],
)
def test_transform_good_values(name: str, arg: Any, value: Any, expected: Any) -> None:
    assert run(name, value, arg) == expected


def test_map_default_option_replaces_unlisted_values() -> None:
    assert run("map", "G", {"R": "red"}, default="other") == "other"
    assert run("map", "R", {"R": "red"}, default="other") == "red"


@pytest.mark.parametrize(
    "name", ["strip", "lower", "digits", "to_int", "to_decimal", "to_bool", "to_date", "truncate", "first", "join"]
)
def test_none_passes_through(name: str) -> None:
    arg = 5 if name == "truncate" else None
    assert run(name, None, arg) is None


@pytest.mark.parametrize(
    ("name", "arg", "value"),
    [
        ("to_int", None, "12.5"),
        ("to_int", None, "twelve"),
        ("to_decimal", None, "NaN"),
        ("to_decimal", None, True),
        ("to_bool", None, "maybe"),
        ("to_bool", None, 2),
        ("to_date", None, "25/07/2024"),
        ("to_date", None, 20240725),
        ("to_datetime", None, "yesterday"),
        ("strip", None, {"a": 1}),
        ("round", 2, "abc"),
        ("multiply", 2, "x"),
    ],
)
def test_transform_bad_values_raise_record_error(name: str, arg: Any, value: Any) -> None:
    with pytest.raises(RecordError) as caught:
        run(name, value, arg)
    message = str(caught.value)
    assert f"transform {name!r}" in message
    assert "field 'f'" in message
    assert repr(value)[:20] in message


def test_bad_value_in_error_is_shortened() -> None:
    with pytest.raises(RecordError) as caught:
        run("to_int", "x" * 500)
    assert len(str(caught.value)) < 250


@pytest.mark.parametrize(
    ("name", "arg", "options", "fragment"),
    [
        ("digitz", None, {}, "unknown transform 'digitz'; expected one of: default, digits"),
        ("truncate", None, {}, "needs an argument"),
        ("truncate", -1, {}, "positive whole number"),
        ("truncate", True, {}, "positive whole number"),
        ("map", [1, 2], {}, "table"),
        ("map", {"a": 1}, {"bogus": 1}, "takes no option 'bogus'"),
        ("template", 5, {}, "needs a string"),
        ("template", "{a:>3}", {}, "bad placeholder"),
        ("join", 3, {}, "separator"),
        ("split", "", {}, "non-empty separator"),
        ("replace", "x", {}, "table"),
        ("round", 99, {}, "0 to 12"),
        ("multiply", "two", {}, "needs a number"),
        ("default", None, {}, "needs an argument"),
    ],
)
def test_bad_arguments_are_refused_at_build_time(name: str, arg: Any, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        build_step(name, arg, options)
    assert fragment in str(caught.value)


def test_chain_runs_in_order() -> None:
    steps = [build_step("strip"), build_step("split", ","), build_step("upper"), build_step("join", "+")]
    assert apply_chain(steps, " a,b ", CTX) == "A+B"


def test_registry_documents_every_transform() -> None:
    documented = dict(transforms.docs())
    assert sorted(documented) == transforms.names()
    assert all(doc.strip() for doc in documented.values())
    expected = {"strip", "lower", "upper", "digits", "to_int", "to_decimal", "to_bool", "to_date", "map", "default",
                "template", "join", "split", "truncate"}
    assert expected <= set(documented)


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{first} {last}", "Ada Lovelace"),
        ("{{literal}} {first}", "{literal} Ada"),
        ("x}}y", "x}y"),
        ("{n.x}", "7"),
        ("{nope}!", "!"),
        ("plain", "plain"),
    ],
)
def test_template_render(source: str, rendered: str) -> None:
    assert Template.parse(source).render_record(CTX.attributes, "9", "people") == rendered


@pytest.mark.parametrize("source", ["{", "}", "{a", "{a!r}", "{a:5}", "{}", "{0[1]}", "{a b}"])
def test_template_refuses_bad_syntax(source: str) -> None:
    with pytest.raises(ValueError) as caught:
        Template.parse(source)
    assert repr(source) in str(caught.value)


def test_template_names() -> None:
    assert Template.parse("{a} {b.c} {a}").names == {"a", "b.c"}


def test_template_prefers_attributes_over_record_id_and_type() -> None:
    template = Template.parse("{id}/{type}")
    assert template.render_record({"id": "attr"}, "9", "people") == "attr/people"


def test_error_messages_redact_secrets() -> None:
    with pytest.raises(RecordError) as caught:
        run("to_int", "Bearer abcdef123456")
    assert "abcdef123456" not in str(caught.value)
    assert "[REDACTED]" in str(caught.value)
