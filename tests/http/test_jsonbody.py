"""The fast JSON reading gives exactly the standard library's answer, for any body."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.http import jsonbody


def stdlib(body: bytes | str) -> Any:
    """What bridge read before: `json`, with integers past int()'s limit kept as digits."""
    return json.loads(body, parse_int=lambda t: int(t) if len(t.lstrip("-")) <= 4300 else t)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 is not 1.0, NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def outcome(body: bytes | str, decode: Any) -> tuple[str, Any]:
    try:
        return "value", decode(body)
    except ValueError as exc:
        return "error", type(exc).__name__


class Digits(str):
    """An integer written as these digits, however many (json.dumps stops at 4,300)."""


def encode(value: Any) -> str:
    if isinstance(value, Digits):
        return str.__str__(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)  # NaN, Infinity and lone surrogates included


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**65),
    st.integers(max_value=-(2**63) + 3, min_value=-(2**65)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(lambda sign, n: Digits(sign + "9" * n), st.sampled_from(["", "-"]), st.integers(4290, 4310)),
)
values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_json_document_reads_as_the_standard_library_reads_it(value: Any) -> None:
    body = encode(value).encode("utf-8", "surrogatepass")
    assert same(jsonbody.loads(body), stdlib(body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_read_or_fail_as_with_the_standard_library(body: bytes) -> None:
    fast, slow = outcome(body, jsonbody.loads), outcome(body, stdlib)
    assert fast[0] == slow[0]
    if fast[0] == "value":
        assert same(fast[1], slow[1])


@pytest.mark.parametrize("digits", [4300, 4301, 5000])
def test_an_integer_too_long_for_int_stays_its_digits(digits: int) -> None:
    text = "9" * digits
    body = f'{{"a": {text}, "b": -{text}, "c": 18446744073709551616}}'.encode()
    read = jsonbody.loads(body)
    expected: Any = int(text) if digits <= 4300 else text
    assert same(read["a"], expected)
    assert same(read["b"], -expected if digits <= 4300 else "-" + text)
    assert same(read["c"], 2**64)  # exact past 64 bits, never a float


@pytest.mark.parametrize(
    "body", [b"\xef\xbb\xbf{}", '{"\u00e9": 1}'.encode("utf-16"), b'"\\ud800"', b"NaN", b"[1e400]"]
)
def test_bodies_msgspec_refuses_are_read_by_the_standard_library(body: bytes) -> None:
    assert same(jsonbody.loads(body), stdlib(body))
