"""Lookup target kinds: what a relationship's `target:` may name, and what each kind implies.

A mapping's relationship points at another mapping's records (`mapping:<name>`) or at
Zendesk people (`zen:user`, `zen:organization`). Every place that treats the kinds
differently asks this module instead of testing string prefixes:
- how the text is spelled and parsed (`parse`, `str(target)`), and its form in a parked
  link's `target` column (`stored`, `from_stored`: a mapping's bare name, a Zendesk kind as is);
- which `match:` a kind takes, and the Outreach attribute an email or name match reads
  (`check_match`, `match_attributes`);
- how its Zendesk ids are found (`Kind.resolution`: bridge's own id map, or Zendesk's people);
- the `relationship_target_type` of its lookup field (`schema_type`, `custom_object_key`);
- bridge's external-id convention (`external_id_of`), which email and name matches try first.
A new kind (`zen:ticket`, `zen:custom_object:<key>`) is one more `Kind` and one more entry in
`_RULES`. Pure: it imports nothing of bridge, so the mapping models can ask it too.
Invariant: `parse(str(t)) == t` and `from_stored(t.stored()) == t` for every valid target.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

MAPPING_PREFIX = "mapping:"
ZENDESK_PREFIX = "zen:"  # every Zendesk kind, and never a mapping name (see _MAPPING_NAME)
CUSTOM_OBJECT_PREFIX = "zen:custom_object:"
EXTERNAL_ID = "outreach:{type}:{id}"  # target.external_id's default

_MAPPING_NAME = re.compile(r"[A-Za-z0-9_-]+")

AttributeSource = tuple[str, str]  # (Outreach type, attribute)


class Kind(enum.StrEnum):
    """A target kind; the value of a Zendesk kind is its whole target text."""

    MAPPING = "mapping"
    USER = "zen:user"
    ORGANIZATION = "zen:organization"

    @property
    def resolution(self) -> Resolution:
        return _RULES[self].resolution


class Resolution(enum.Enum):
    """Where a kind's Zendesk ids come from: the dispatch `pipeline/resolve.py` follows."""

    ID_MAP = "id_map"  # records bridge wrote: their id map rows, no Zendesk request
    PEOPLE = "people"  # Zendesk users or organizations, by external id, email or name


@dataclass(frozen=True, slots=True)
class _Rules:
    resolution: Resolution
    matches: tuple[str, ...]  # the `match:` values it takes; () for targets found by id map
    attributes: dict[str, tuple[AttributeSource, ...]]  # match → the Outreach types that carry it
    no_match_hint: str = ""  # why a refused match cannot work, when the reason is not obvious
    suggested_match: str | None = None  # what a scaffold matches the kind's Outreach types by


_RULES: dict[Kind, _Rules] = {
    Kind.MAPPING: _Rules(Resolution.ID_MAP, (), {}),
    Kind.USER: _Rules(Resolution.PEOPLE, ("external_id", "email", "name"), {
        "email": (("prospect", "emails"), ("user", "email")),
        "name": (("prospect", "name"), ("user", "name")),
    }, suggested_match="email"),
    Kind.ORGANIZATION: _Rules(Resolution.PEOPLE, ("external_id", "name"), {
        "name": (("account", "name"),),
    }, no_match_hint="organizations have no email", suggested_match="name"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LookupTarget:
    """One lookup target: a kind, and for `Kind.MAPPING` the mapping's name."""

    kind: Kind
    mapping: str | None = None

    def __str__(self) -> str:
        return f"{MAPPING_PREFIX}{self.mapping}" if self.kind is Kind.MAPPING else self.kind.value

    @property
    def resolution(self) -> Resolution:
        return self.kind.resolution

    def stored(self) -> str:
        """The `parked_links.target` column: a mapping's name, a Zendesk kind's target text."""
        return self.mapping if self.mapping is not None else self.kind.value


_ZENDESK_KINDS = tuple(k.value for k in Kind if k is not Kind.MAPPING)


def _either(options: tuple[str, ...]) -> str:
    return f"{', '.join(options[:-1])} or {options[-1]}" if len(options) > 1 else "".join(options)


EXPECTED = f"{MAPPING_PREFIX}<name>, {_either(_ZENDESK_KINDS)}"
USER = LookupTarget(Kind.USER)
ORGANIZATION = LookupTarget(Kind.ORGANIZATION)


def of_mapping(name: str) -> LookupTarget:
    return LookupTarget(Kind.MAPPING, name)


@functools.cache
def parse(text: str) -> LookupTarget:
    """The target a relationship's `target:` names; ValueError saying what is expected."""
    if text.startswith(MAPPING_PREFIX):
        name = text.removeprefix(MAPPING_PREFIX)
        if _MAPPING_NAME.fullmatch(name):
            return of_mapping(name)
    elif text.startswith(ZENDESK_PREFIX) and text in _ZENDESK_KINDS:
        return LookupTarget(Kind(text))
    raise ValueError(f"unknown target {text!r}; expected {EXPECTED}")


def from_stored(column: str) -> LookupTarget:
    """The target of a parked link's `target` column (the inverse of `LookupTarget.stored`)."""
    return parse(column if column.startswith(ZENDESK_PREFIX) else MAPPING_PREFIX + column)


def check_match(target: LookupTarget, match: str | None) -> None:
    """ValueError unless `match` is what the kind needs: none for mappings, one for Zendesk."""
    allowed = _RULES[target.kind].matches
    if allowed and match is None:
        raise ValueError(f"'match' is required for {target}: {_either(allowed)}")
    if not allowed and match is not None:
        zendesk = " and ".join(str(LookupTarget(k)) for k, r in _RULES.items() if r.matches)
        raise ValueError(f"'match' applies to {zendesk} only; mapping targets use the id map")
    if match is not None and match not in allowed:
        hint = _RULES[target.kind].no_match_hint or f"{target} cannot be matched by {match}"
        raise ValueError(f"{hint}; match {target} by {_either(allowed)}")


def match_attributes(target: LookupTarget, match: str | None) -> tuple[AttributeSource, ...]:
    """The Outreach (type, attribute) pairs whose value an email or name match compares; ()
    when the match needs no attribute of the related record (external_id, mapping targets)."""
    return _RULES[target.kind].attributes.get(match or "", ())


def people_target(outreach_type: str) -> tuple[LookupTarget, str] | None:
    """The Zendesk people kind an Outreach type's records are, and the match a new mapping
    should use (prospects and users → `zen:user` by email, accounts → `zen:organization` by
    name); None for any other type."""
    for kind, rules in _RULES.items():
        match = rules.suggested_match
        if match is not None and any(t == outreach_type for t, _ in rules.attributes[match]):
            return LookupTarget(kind), match
    return None


def external_id_of(source_type: str, source_id: str) -> str:
    """The external id bridge gives a record by its own convention (`EXTERNAL_ID`)."""
    return EXTERNAL_ID.format(type=source_type, id=source_id)


def schema_type(target: LookupTarget, object_key: str | None = None) -> str | None:
    """The lookup field's `relationship_target_type` (api/zendesk.md "Fields"); a mapping
    target needs the key of the object its mapping writes (None: no such mapping)."""
    if target.kind is Kind.MAPPING:
        return f"{CUSTOM_OBJECT_PREFIX}{object_key}" if object_key else None
    return target.kind.value


def custom_object_key(relationship_target_type: str) -> str | None:
    """The object key a `zen:custom_object:<key>` lookup points at; None for people."""
    if relationship_target_type.startswith(CUSTOM_OBJECT_PREFIX):
        return relationship_target_type.removeprefix(CUSTOM_OBJECT_PREFIX)
    return None
