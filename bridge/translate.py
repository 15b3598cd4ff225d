"""One Outreach record -> one Zendesk record payload, its links and its payload hash.

Pure and without I/O, and on the hot path: each mapping is compiled once (templates parsed,
transform chains built, a coercion function chosen per field) and the compiled form is
cached by mapping identity, so a record costs only dictionary work. Invariants:
- every mapping field except lookups appears in `fields`; None means "clear it" (a missing
  attribute is not an error unless the field is `required`); lookups come only from links;
- values have the JSON type Zendesk's field type expects (no Decimal, no datetime);
- relationships become `Link`s to resolve later; one absent from the record gives no link,
  one explicitly null gives a link with `source_id=None` (clear the lookup);
- `payload_hash` is stable across key order and covers the target object, external id,
  name, fields and links, so a record whose relationship changed is written again even if
  its attributes did not, and a mapping pointed at another object or external id rewrites.
Every failure is a RecordError carrying the mapping and source id (→ dead letter).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from bridge.errors import RecordError
from bridge.mapping import model, templates, transforms
from bridge.mapping.templates import Template
from bridge.mapping.transforms import Step, TransformContext, TransformFailed, shorten
from bridge.outreach.models import SourceRecord

Coerce = Callable[[Any], Any]


class Link(NamedTuple):
    """A lookup field to fill once its target is known.

    `source_type`/`source_id` name the related Outreach record; both are empty/None when the
    relationship is explicitly null, which means "clear the lookup".
    """

    field: str
    target: str
    match: str | None
    source_type: str
    source_id: str | None


class Translated(NamedTuple):
    """What is written to Zendesk for one source record (a named tuple: one per record, and
    cheaper to build than a frozen dataclass)."""

    source_id: str
    external_id: str
    name: str
    fields: dict[str, Any]
    links: tuple[Link, ...]
    payload_hash: str


def _json_default(value: Any) -> Any:
    """JSON for the few non-JSON values a hash may meet (Decimal only from custom code)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot hash a {type(value).__name__}")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
# Writes the same bytes as _CANONICAL for str, bool, None, int and lists of them (and fails
# alike: lone surrogates, ints past 4,300 digits), five times faster; floats (1e16, not
# 1e+16) and other types go to _CANONICAL.
_PLAIN_ENCODER = msgspec.json.Encoder(order="sorted")
_PLAIN = frozenset({str, bool, int, type(None)})


def _plain(value: Any) -> bool:
    kind = value.__class__
    if kind in _PLAIN:
        return True
    if kind is list or kind is tuple:
        return all(item.__class__ in _PLAIN for item in value)
    return False


def payload_hash(
    name: str, fields: Mapping[str, Any], links: Iterable[Link] = (), *, object_key: str, external_id: str,
    plain: bool = False,
) -> str:
    """sha256 hex of the canonical JSON of where the record goes (object and external id),
    name, fields (and links, when there are any): a record sent elsewhere is written again.

    Canonical: `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` as
    UTF-8. Stored hashes were made so, and any other byte would rewrite every record once.
    `plain` says the caller knows every field value is a str, bool, int, None or a list of
    them (the translator knows it from the field types), so they need not be checked.
    """
    document: dict[str, Any] = {"object": object_key, "external_id": external_id, "name": name, "fields": fields}
    link_list = [(k.field, k.target, k.match, k.source_type, k.source_id) for k in links]
    if link_list:
        document["links"] = sorted(link_list, key=lambda item: item[0])  # one link per field
    if plain or all(_plain(value) for value in fields.values()):
        text = _PLAIN_ENCODER.encode(document)
    else:
        text = _CANONICAL.encode(document).encode("utf-8")
    return hashlib.sha256(text).hexdigest()


# ---- coercion to Zendesk field types ------------------------------------------------------


def _text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, dict | list | tuple):
        raise TransformFailed("expected a single value; use the 'join' transform for lists")
    return templates.text_of(value)


def _integer(value: Any) -> int | None:
    if value.__class__ is str and len(value) < 19 and value.isdigit() and value.isascii():
        return int(value)  # what the way through Decimal gives, without it
    if isinstance(value, bool) or isinstance(value, dict | list | tuple):
        raise TransformFailed("expected a whole number")
    if isinstance(value, int):
        return _in_range(value)
    number = transforms.to_decimal_value(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise TransformFailed("expected a whole number")
    if number.adjusted() >= 19:  # before int(): `1e999999` would build a million digits
        raise TransformFailed(_OUT_OF_RANGE)
    return _in_range(int(number))


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_OUT_OF_RANGE = "whole number out of range (a Zendesk integer field holds 64 bits)"


def _in_range(number: int) -> int:
    if not _INT_MIN <= number <= _INT_MAX:
        raise TransformFailed(_OUT_OF_RANGE)
    return number


def _decimal(value: Any) -> int | float | None:
    if isinstance(value, bool) or isinstance(value, dict | list | tuple):
        raise TransformFailed("expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TransformFailed("expected a finite number")
        return value
    number = transforms.to_decimal_value(value)
    if number is None:
        return None
    if number == number.to_integral_value() and abs(number) < 2**53:
        return int(number)
    result = float(number)
    if result in (float("inf"), float("-inf")):
        raise TransformFailed("number too large")
    return result


def _checkbox(value: Any) -> bool | None:
    return transforms.to_bool_value(value)


def _date(value: Any) -> str | None:
    return transforms.to_date_text(value)


def _choice(options: list[str] | None) -> Coerce:
    allowed = frozenset(options) if options else None

    def coerce(value: Any) -> str | None:
        if isinstance(value, bool) or isinstance(value, dict | list | tuple):
            raise TransformFailed("expected one option value")
        text = templates.text_of(value)
        if text == "":
            return None
        if allowed is not None and text not in allowed:
            raise TransformFailed(f"not one of the options {sorted(allowed)}; add it or map it with 'map'")
        return text

    return coerce


def _multi(options: list[str] | None) -> Coerce:
    one = _choice(options)

    def coerce(value: Any) -> list[str]:
        items = value if isinstance(value, list | tuple) else [value]
        return [text for text in (one(item) for item in items if item is not None) if text is not None]

    return coerce


def _regexp(pattern: str) -> Coerce:
    compiled = re.compile(pattern)

    def coerce(value: Any) -> str:
        text = _text(value)
        if not compiled.search(text):
            raise TransformFailed(f"does not match the pattern {pattern!r}")
        return text

    return coerce


def coercion(spec: model.FieldSpec) -> Coerce:
    """The function that turns a transformed value into the JSON Zendesk's field type takes."""
    simple: dict[str, Coerce] = {
        "text": _text, "textarea": _text, "integer": _integer, "decimal": _decimal,
        "checkbox": _checkbox, "date": _date,
    }
    if spec.type in simple:
        return simple[spec.type]
    if spec.type == "dropdown":
        return _choice(spec.options)
    if spec.type == "multiselect":
        return _multi(spec.options)
    if spec.type == "regexp":
        return _regexp(spec.pattern or "")
    raise ValueError(f"field type {spec.type!r} is not written as a value")


# ---- the compiled translator --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    key: str
    path: tuple[str, ...]
    steps: tuple[Step, ...]
    coerce: Coerce
    type: str
    required: bool
    attribute: str | None  # the one attribute read, when the path is not dotted
    text: bool  # a text field, where a string is its own value
    # the transforms' context when none of them reads the record (None: one per record)
    context: TransformContext | None

    def read(self, attributes: Mapping[str, Any]) -> Any:
        if self.attribute is not None:
            return attributes.get(self.attribute)
        dotted = ".".join(self.path)
        return attributes[dotted] if dotted in attributes else templates.get_path(attributes, self.path)


def _field(key: str, spec: model.FieldSpec) -> _Field:
    steps = tuple(t.build() for t in spec.transform)
    context = None if any(step.reads_record for step in steps) else TransformContext(key, {})
    return _Field(key, spec.path, steps, coercion(spec), spec.type, spec.required,
                  spec.path[0] if len(spec.path) == 1 else None, spec.type in ("text", "textarea"), context)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Relation:
    key: str
    source: str
    target: str
    match: str | None


class Translator:
    """A mapping compiled for translating many records."""

    def __init__(self, mapping: model.Mapping) -> None:
        self.mapping = mapping
        self._name = Template.parse(mapping.target.name)
        self._object_key = mapping.target.object
        # {type} is fixed per mapping, so only {id} is left to fill per record
        self._external_id = tuple(
            mapping.source.type if part == ("type",) else part
            for part in Template.parse(mapping.target.external_id).parts
        )
        self._fields = tuple(
            _field(key, spec) for key, spec in mapping.fields.items() if spec.type != "lookup"
        )
        self._relations = tuple(
            _Relation(key, r.from_, r.target, r.match) for key, r in mapping.relationships.items()
        )
        ids = [i for i, part in enumerate(self._external_id) if isinstance(part, tuple)]
        # the usual external id has {id} once: the text around it, to concatenate per record
        self._id_around = (
            ("".join(self._external_id[: ids[0]]), "".join(self._external_id[ids[0] + 1:]))  # type: ignore[arg-type]
            if len(ids) == 1 else None
        )  # fmt: skip
        # Every coercion but the decimal one gives a str, bool, int, None or a list of str (a
        # value no transform touched is None or, in a text field, a str): hashed as they are.
        self._plain = all(f.type != "decimal" for f in self._fields)

    def translate(self, record: SourceRecord) -> Translated:
        """The payload for `record`; raises RecordError naming the field and value at fault.

        Translation is pure, so whatever goes wrong here is about this one record: every
        failure becomes a RecordError (→ its dead letter), never the page's or the run's.
        """
        if record.problem is not None:
            raise self._error(record, f"Outreach sent it malformed ({record.problem}); fix the record in "
                                      "Outreach: it is read again when it next changes")
        try:
            return self._translated(record)
        except RecordError:
            raise
        except Exception as exc:
            raise self._error(record, f"cannot translate it: {type(exc).__name__}: {str(exc)[:200]}") from exc

    def _translated(self, record: SourceRecord) -> Translated:
        source_id = str(record.id)
        attributes = record.attributes
        values: dict[str, Any] = {}
        for field in self._fields:
            value = attributes.get(field.attribute) if field.attribute is not None else field.read(attributes)
            if field.steps or (value is not None and not (field.text and value.__class__ is str)):
                value = self._converted(field, value, record)
            if value is None and field.required:
                raise self._error(record, f"field {field.key!r} is required but attribute "
                                          f"{'.'.join(field.path)!r} is missing or empty")
            values[field.key] = value
        name = self._name.render_record(attributes, source_id, record.type)
        if not name.strip():
            name = f"{record.type} {source_id}"
        if self._id_around is not None:
            external_id = self._id_around[0] + source_id + self._id_around[1]
        else:
            external_id = "".join(source_id if isinstance(p, tuple) else p for p in self._external_id)
        links = self._links(record) if self._relations else ()
        digest = payload_hash(name, values, links, object_key=self._object_key, external_id=external_id,
                              plain=self._plain)  # fmt: skip
        return Translated(source_id, external_id, name, values, links, digest)

    def _converted(self, field: _Field, value: Any, record: SourceRecord) -> Any:
        """The value after the field's transforms and its type coercion."""
        try:
            if field.steps:
                context = field.context or TransformContext(field.key, record.attributes, str(record.id), record.type)
                value = transforms.apply_chain(field.steps, value, context)
            return None if value is None else field.coerce(value)
        except RecordError as exc:
            raise self._error(record, str(exc)) from exc
        except (TransformFailed, ValueError, TypeError, ArithmeticError) as exc:
            raise self._error(record, f"field {field.key!r}: cannot use {shorten(value)} as {field.type}: {exc}; "
                                      "fix the source value or add a transform") from exc

    def _links(self, record: SourceRecord) -> tuple[Link, ...]:
        links = []
        for rel in self._relations:
            if rel.source not in record.relationships:
                continue
            ref = record.relationships[rel.source]
            links.append(Link(rel.key, rel.target, rel.match, ref.type if ref else "", str(ref.id) if ref else None))
        return tuple(links)

    def _error(self, record: SourceRecord, detail: str) -> RecordError:
        name = self.mapping.name
        return RecordError(f"mapping {name!r}, record {record.type} {record.id}: {detail}",
                           source_id=str(record.id), mapping=name)


_CACHE: dict[int, Translator] = {}
_CACHE_LIMIT = 256


def compile_mapping(mapping: model.Mapping) -> Translator:
    """The cached compiled translator for this mapping object."""
    translator = _CACHE.get(id(mapping))
    if translator is None or translator.mapping is not mapping:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        translator = _CACHE[id(mapping)] = Translator(mapping)
    return translator


def translate(mapping: model.Mapping, record: SourceRecord) -> Translated:
    """Translates one record with `mapping` (compiled once, then reused)."""
    return compile_mapping(mapping).translate(record)
