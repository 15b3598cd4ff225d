"""The fixed, named registry of value transforms a mapping file may use.

Mapping files are written by users and deployment scripts, so they may name a transform and
give it an argument, never run code: there is no `eval` anywhere. Each transform is built
once per mapping from its YAML argument (a bad argument is a mapping problem, found at load
time) into a plain function `(value, context) -> value` (a bad *value* is a `RecordError`
naming the transform, the field and the value, and sends that one record to the dead
letters). `None` passes through every transform except `default`, `template` and `map`, so a
missing attribute clears the Zendesk field unless the chain says otherwise. String
transforms applied to a list work on each item, so `split` can be followed by `strip`.

Templates (`"{first} {last}"`, the `template` transform and `target.name`) live in
`templates.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from bridge.errors import RecordError
from bridge.mapping.templates import Template, text_of
from bridge.redact import redact_text

StepFn = Callable[[Any, "TransformContext"], Any]

_NON_DIGITS = re.compile(r"[^0-9]")
_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})


class TransformContext(NamedTuple):
    """What a transform may look at besides its value: the field and the whole record (made
    per field and record, hence a named tuple: immutable and cheap)."""

    field: str
    attributes: Mapping[str, Any]
    record_id: str = ""
    record_type: str = ""


class TransformFailed(ValueError):
    """Raised inside a transform for a value it cannot handle; `apply_chain` reports it."""


def shorten(value: Any, limit: int = 60) -> str:
    """A short, redacted repr of a value for error messages."""
    try:
        text = redact_text(repr(value))
    except ValueError:  # an int past Python's digit limit for str()
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the transforms -------------------------------------------------------------------------


def _each(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Lifts a one-value function over lists and lets None through."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return [None if v is None else fn(v) for v in value]
        return fn(value)

    return run


def _plain(fn: Callable[[Any], Any]) -> Callable[[Any, Mapping[str, Any]], StepFn]:
    """A transform without argument, applied item by item (as `_each`, one call less: it
    runs for every record)."""

    def step(value: Any, ctx: TransformContext) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return [None if v is None else fn(v) for v in value]
        return fn(value)

    def build(arg: Any, options: Mapping[str, Any]) -> StepFn:
        return step

    return build


def _as_str(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, dict | list):
        raise TransformFailed("expected text")
    return text_of(value)


def _digits(value: Any) -> str:
    return _NON_DIGITS.sub("", _as_str(value))


def _to_int(value: Any) -> int | None:
    if isinstance(value, int):
        return int(value)
    number = to_decimal_value(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise TransformFailed("not a whole number")
    return int(number)


def to_decimal_value(value: Any) -> Decimal | None:
    """A finite Decimal from a number or numeric text; "" is None."""
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise TransformFailed("not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        text = value.strip() if isinstance(value, str) else str(value)
        if text == "":
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise TransformFailed("not a number") from None
    if not number.is_finite():
        raise TransformFailed("not a finite number")
    return number


def to_bool_value(value: Any) -> bool | None:
    """A bool from a bool, 0/1 or a yes/no word; "" is None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "":
            return None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise TransformFailed("expected true/false, yes/no, on/off or 1/0")


def to_date_text(value: Any) -> str | None:
    """ISO date or date-time (aware ones taken in UTC) -> "YYYY-MM-DD"."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise TransformFailed("expected an ISO date or date-time")
    text = value.strip()
    if text == "":
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text)
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat()
    except ValueError:
        raise TransformFailed("expected an ISO date or date-time") from None


def _to_datetime(value: Any) -> str | None:
    if isinstance(value, str):
        if value.strip() == "":
            return None
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TransformFailed("expected an ISO date-time") from None
    if not isinstance(value, datetime):
        raise TransformFailed("expected an ISO date-time")
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def map_key(value: Any) -> str:
    """The key a value is looked up by in a `map` table (YAML may give 1, true or "1")."""
    return "null" if value is None else text_of(value)


def _build_map(arg: Any, options: Mapping[str, Any]) -> StepFn:
    if not isinstance(arg, Mapping) or not arg:
        raise ValueError("'map' needs a table of source value: target value, e.g. {map: {R: red}}")
    table = {map_key(k): v for k, v in arg.items()}
    has_default = "default" in options
    fallback = options.get("default")

    def one(value: Any) -> Any:
        key = map_key(value)
        if key in table:
            return table[key]
        return fallback if has_default else value

    def step(value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, list | tuple):
            return [one(v) for v in value]
        return one(value)

    return step


def _build_default(arg: Any, options: Mapping[str, Any]) -> StepFn:
    return lambda value, ctx: arg if value is None or value == "" else value


def _build_template(arg: Any, options: Mapping[str, Any]) -> StepFn:
    if not isinstance(arg, str):
        raise ValueError("'template' needs a string, e.g. {template: \"{first} {last}\"}")
    template = Template.parse(arg)
    return lambda value, ctx: template.render_record(
        ctx.attributes, ctx.record_id, ctx.record_type, value=value
    )


def _build_join(arg: Any, options: Mapping[str, Any]) -> StepFn:
    sep = ", " if arg is None else arg
    if not isinstance(sep, str):
        raise ValueError("'join' needs a separator string, e.g. {join: \", \"}")

    def step(value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, list | tuple):
            return sep.join(text_of(v) for v in value if v is not None)
        return value

    return step


def _build_split(arg: Any, options: Mapping[str, Any]) -> StepFn:
    sep = "," if arg is None else arg
    if not isinstance(sep, str) or sep == "":
        raise ValueError("'split' needs a non-empty separator string, e.g. {split: \",\"}")

    def step(value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(sep) if part.strip()]
        return value

    return step


def _positive_int(name: str, arg: Any) -> int:
    if isinstance(arg, bool) or not isinstance(arg, int) or arg <= 0:
        raise ValueError(f"'{name}' needs a positive whole number, e.g. {{{name}: 255}}")
    return arg


def _build_truncate(arg: Any, options: Mapping[str, Any]) -> StepFn:
    limit = _positive_int("truncate", arg)
    lifted = _each(lambda v: _as_str(v)[:limit])
    return lambda value, ctx: lifted(value)


def _build_replace(arg: Any, options: Mapping[str, Any]) -> StepFn:
    if not isinstance(arg, Mapping) or not arg or not all(isinstance(k, str) for k in arg):
        raise ValueError("'replace' needs a table of old text: new text, e.g. {replace: {'_': ' '}}")
    pairs = [(str(k), text_of(v)) for k, v in arg.items()]

    def one(value: Any) -> str:
        text = _as_str(value)
        for old, new in pairs:
            text = text.replace(old, new)
        return text

    lifted = _each(one)
    return lambda value, ctx: lifted(value)


def _build_null_if(arg: Any, options: Mapping[str, Any]) -> StepFn:
    values = arg if isinstance(arg, list) else [arg]
    blanks = frozenset(map_key(v) for v in values)
    return lambda value, ctx: None if value is not None and map_key(value) in blanks else value


def _build_round(arg: Any, options: Mapping[str, Any]) -> StepFn:
    places = 0 if arg is None else arg
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 12:
        raise ValueError("'round' needs a number of decimal places from 0 to 12, e.g. {round: 2}")
    quantum = Decimal(1).scaleb(-places)

    def one(value: Any) -> Any:
        number = to_decimal_value(value)
        return None if number is None else number.quantize(quantum)

    lifted = _each(one)
    return lambda value, ctx: lifted(value)


def _build_multiply(arg: Any, options: Mapping[str, Any]) -> StepFn:
    if isinstance(arg, bool) or not isinstance(arg, int | float):
        raise ValueError("'multiply' needs a number, e.g. {multiply: 1.609344}")
    factor = Decimal(repr(arg)) if isinstance(arg, float) else Decimal(arg)

    def one(value: Any) -> Any:
        number = to_decimal_value(value)
        return None if number is None else number * factor

    lifted = _each(one)
    return lambda value, ctx: lifted(value)


def _first(value: Any, ctx: TransformContext) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


@dataclass(frozen=True, slots=True)
class TransformDef:
    """One entry of the registry: its name, a one-line doc and how to build it."""

    name: str
    doc: str
    build: Callable[[Any, Mapping[str, Any]], StepFn]
    needs_arg: bool = False
    options: frozenset[str] = frozenset()
    reads_record: bool = False  # looks at the context's record, not only at the field's value


def _defs() -> Iterable[TransformDef]:
    yield TransformDef("strip", "trim surrounding whitespace", _plain(lambda v: _as_str(v).strip()))
    yield TransformDef("lower", "lower-case text", _plain(lambda v: _as_str(v).lower()))
    yield TransformDef("upper", "upper-case text", _plain(lambda v: _as_str(v).upper()))
    yield TransformDef("title", "Title Case text", _plain(lambda v: _as_str(v).title()))
    yield TransformDef("digits", 'keep the digits 0-9 only ("130mph" -> "130")', _plain(_digits))
    yield TransformDef("to_int", 'whole number from text or number ("42" -> 42)', _plain(_to_int))
    yield TransformDef("to_decimal", 'exact decimal number ("1234.50" -> 1234.50)', _plain(to_decimal_value))
    yield TransformDef("to_bool", "true/false from true/false, yes/no, on/off, 1/0", _plain(to_bool_value))
    yield TransformDef("to_date", 'ISO date or date-time -> "YYYY-MM-DD" (UTC)', _plain(to_date_text))
    yield TransformDef("to_datetime", 'ISO date-time -> "YYYY-MM-DDTHH:MM:SSZ" (UTC)', _plain(_to_datetime))
    yield TransformDef("first", "first item of a list", lambda _arg, _opts: _first)
    yield TransformDef("map", "{map: {a: A}, default: x}: replace listed values; others kept, or default",
                       _build_map, True, frozenset({"default"}))
    yield TransformDef("default", "{default: x}: use x when the value is missing or empty", _build_default, True)
    yield TransformDef("template", '{template: "{first} {last}"}: render over attributes and {value}',
                       _build_template, True, reads_record=True)
    yield TransformDef("join", '{join: ", "}: list -> text (bare `join` uses ", ")', _build_join)
    yield TransformDef("split", '{split: ","}: text -> list of trimmed, non-empty parts', _build_split)
    yield TransformDef("truncate", "{truncate: 255}: keep at most that many characters", _build_truncate, True)
    yield TransformDef("replace", "{replace: {old: new}}: replace text in the value", _build_replace, True)
    yield TransformDef("null_if", '{null_if: ["", "n/a"]}: treat these values as missing', _build_null_if, True)
    yield TransformDef("round", "{round: 2}: round a number to that many decimal places", _build_round)
    yield TransformDef("multiply", "{multiply: 1.609344}: multiply a number (unit conversion)", _build_multiply, True)


REGISTRY: Mapping[str, TransformDef] = {d.name: d for d in _defs()}


def names() -> list[str]:
    """Every transform name, sorted, for error messages."""
    return sorted(REGISTRY)


def docs() -> list[tuple[str, str]]:
    """(name, one-line doc) for every transform, in registry order (for the README table)."""
    return [(d.name, d.doc) for d in REGISTRY.values()]


@dataclass(frozen=True, slots=True)
class Step:
    """A built transform, ready to run. One that does not `reads_record` may be given a
    context holding only its field (one made per mapping, not per record)."""

    name: str
    fn: StepFn
    reads_record: bool = True


def build_step(name: str, arg: Any = None, options: Mapping[str, Any] | None = None) -> Step:
    """Builds one step; raises ValueError saying what is wrong with the name or argument."""
    definition = REGISTRY.get(name)
    if definition is None:
        raise ValueError(f"unknown transform {name!r}; expected one of: {', '.join(names())}")
    opts = dict(options or {})
    unknown = sorted(set(opts) - definition.options)
    if unknown:
        raise ValueError(f"transform {name!r} takes no option {unknown[0]!r}")
    if definition.needs_arg and arg is None:
        raise ValueError(f"transform {name!r} needs an argument: {definition.doc}")
    return Step(name, definition.build(arg, opts), definition.reads_record)


def apply_chain(steps: Sequence[Step], value: Any, context: TransformContext) -> Any:
    """Runs the steps in order; a value a step cannot handle raises RecordError."""
    for step in steps:
        try:
            value = step.fn(value, context)
        except (TransformFailed, ValueError, TypeError, ArithmeticError) as exc:
            raise RecordError(
                f"field {context.field!r}: transform {step.name!r} cannot handle "
                f"{shorten(value)}: {exc}; fix the source value or the mapping's transforms"
            ) from exc
    return value
