"""Drift: how a Zendesk record differs from the payload bridge last wrote to it. Pure.

Only what bridge writes is compared: the name and the fields of the written payload
(`store/idmap.py` `written_payload`); fields a person added in Zendesk are theirs. Values are
compared as Zendesk may give them back, not byte for byte: an integer or decimal may come
back as a string (`"120"`, `"1.50"`), a date as a midnight timestamp, a multiselect in another
order, an empty text as null (api/zendesk.md, "Records"). A lookup bridge sent empty is not
compared: its link may have been parked and filled later by an update of its own
(`pipeline/park.py`), so a value there is not a hand edit.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

NAME = "name"  # the key a differing record name is reported under
_MIDNIGHT = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class Difference:
    """One field (or the name) whose Zendesk value is not what bridge wrote."""

    field: str
    written: Any
    zendesk: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "written": self.written, "zendesk": self.zendesk}


def differences(
    written: Mapping[str, Any],
    name: str | None,
    fields: Mapping[str, Any],
    *,
    lookups: Collection[str] = (),
) -> list[Difference]:
    """What differs between the written payload `{"name", "fields"}` and a Zendesk record's
    `name` and `fields`; `lookups` are the keys of the mapping's lookup fields."""
    found: list[Difference] = []
    if "name" in written and canonical(written["name"]) != canonical(name):
        found.append(Difference(NAME, written["name"], name))
    sent: Mapping[str, Any] = written.get("fields") or {}
    for key in sorted(sent):
        value = sent[key]
        if key in lookups and canonical(value) is None:
            continue
        if canonical(value) != canonical(fields.get(key)):
            found.append(Difference(key, value, fields.get(key)))
    return found


def canonical(value: Any) -> Any:
    """A comparable form of a field value: what Zendesk may normalise compares equal."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("true", "false"):
            return text == "true"
        if _NUMBER.fullmatch(text):
            return _number(text)
        date = _MIDNIGHT.fullmatch(text)
        return date.group(1) if date else value
    if isinstance(value, list | tuple):
        return tuple(sorted((canonical(v) for v in value), key=repr))
    if isinstance(value, dict):
        return tuple(sorted((k, canonical(v)) for k, v in value.items()))
    return value


def _number(value: Any) -> Any:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return value
    if not number.is_finite():
        return str(value)
    normal = number.normalize()
    return "0" if normal.is_zero() else format(normal, "f")
