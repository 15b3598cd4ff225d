"""Templates over a record's attributes: `target.name`, the `template` transform.

A template is parsed once, when its mapping loads: `{name}` or `{a.b}` reads an attribute
(dotted for nested values), `{{` and `}}` are literal braces, and anything else (format
specs, stray braces) is refused there, with the reason. Rendering never re-parses, since it
runs once per record on the hot path. `{id}` and `{type}` fall back to the record's own id
and type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def text_of(value: Any) -> str:
    """How a value reads inside a template or a text field."""
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def get_path(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or None when any step is missing."""
    current: Any = data
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal strings and attribute paths, rendered without re-parsing."""

    source: str
    parts: tuple[str | tuple[str, ...], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        """Parses `source`; raises ValueError naming the first bad placeholder."""
        parts: list[str | tuple[str, ...]] = []
        pos = 0
        for match in _TOKEN.finditer(source):
            if match.start() > pos:
                parts.append(source[pos : match.start()])
            parts.append(_template_token(source, match))
            pos = match.end()
        if pos < len(source):
            parts.append(source[pos:])
        return cls(source, tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        """The dotted placeholder names used, e.g. {"first", "address.city"}."""
        return frozenset(".".join(p) for p in self.parts if isinstance(p, tuple))

    def render(self, lookup: Callable[[tuple[str, ...]], Any]) -> str:
        """Fills each placeholder with `lookup(path)`; missing values render as ""."""
        return "".join(p if isinstance(p, str) else text_of(lookup(p)) for p in self.parts)

    def render_record(
        self, attributes: Mapping[str, Any], record_id: str, record_type: str, **extra: Any
    ) -> str:
        """Renders over `extra`, then the record's attributes, then its id and type."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if len(part) > 1:
                value = get_path(attributes, part)
            elif (key := part[0]) in extra:
                value = extra[key]
            elif key in attributes:
                value = attributes[key]
            else:
                value = record_id if key == "id" else record_type if key == "type" else None
            out.append(text_of(value))
        return "".join(out)


def _template_token(source: str, match: re.Match[str]) -> str | tuple[str, ...]:
    token = match.group(0)
    if token in ("{{", "}}"):
        return token[0]
    name = match.group(1)
    if name is None:
        raise ValueError(f"unmatched {token!r} in template {source!r}; write {token * 2} for a literal brace")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"bad placeholder {token!r} in template {source!r}; use {{attribute}} or "
            f"{{attribute.nested}} (no format specs), and {{{{ }}}} for literal braces"
        )
    return tuple(name.split("."))
