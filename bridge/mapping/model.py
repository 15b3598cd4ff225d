"""What a mapping file means: pydantic models of the contract in DESIGN.md "Mapping files".

Every model forbids unknown keys so a typo is a reported problem, not a silently ignored
setting. Single-key checks (types, templates, transform names and arguments, cron syntax)
live on the models; checks that relate several keys of one mapping live in
`Mapping.consistency_problems()`, and checks across mappings in `load.py`, so each problem
can be reported with its own key path. `load.load_mappings` is the validating entry point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AbcMapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge import targets
from bridge.mapping import transforms
from bridge.mapping.templates import Template
from bridge.mapping.transforms import Step

FieldType = Literal[
    "text", "textarea", "integer", "decimal", "checkbox", "date", "dropdown", "multiselect", "regexp", "lookup"
]
MatchBy = Literal["external_id", "email", "name"]

MAX_LOOKUP_FIELDS = 10  # Zendesk's highest plan limit (api/zendesk.md "Lookup")
MAX_FIELDS = 100  # per object, standard fields not counted (api/zendesk.md "Fields")

_KEY = re.compile(r"[A-Za-z0-9_]+")
_TYPE = re.compile(r"[A-Za-z0-9_]+")
_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_FILTER_KEY = re.compile(r"(?:filter)?((?:\[[A-Za-z0-9_]+\])+)")
_EVERY = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def check_key(key: str) -> str:
    """A Zendesk field or object key: letters, digits, underscores, not only digits."""
    if not _KEY.fullmatch(key) or key.isdigit():
        raise ValueError(f"{key!r} is not a valid Zendesk key; use letters, digits and underscores, not only digits")
    return key


class TransformSpec(_Model):
    """One transform step: `digits`, `{truncate: 255}` or `{map: {...}, default: x}`."""

    name: str
    arg: Any = None
    options: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, AbcMapping) and not ("name" in data and set(data) <= {"name", "arg", "options"}):
            return _split_step(data)
        return data

    @model_validator(mode="after")
    def _known(self) -> TransformSpec:
        self.build()
        return self

    def build(self) -> Step:
        """The ready-to-run transform (raises ValueError for a bad name or argument)."""
        return transforms.build_step(self.name, self.arg, self.options)


def _split_step(data: AbcMapping[str, Any]) -> dict[str, Any]:
    keys = [str(k) for k in data]
    if len(keys) == 1:
        return {"name": keys[0], "arg": data[keys[0]]}
    for key in keys:
        definition = transforms.REGISTRY.get(key)
        if definition and set(keys) - {key} <= definition.options:
            return {"name": key, "arg": data[key], "options": {k: data[k] for k in keys if k != key}}
    raise ValueError(
        f"a transform step is a name (`digits`) or a one-key table (`{{truncate: 255}}`); got keys {keys}"
    )


class FieldSpec(_Model):
    """Where one Zendesk field's value comes from and what type Zendesk expects."""

    from_: str | None = Field(default=None, alias="from")
    type: FieldType = "text"
    transform: list[TransformSpec] = []
    options: list[str] | None = None
    pattern: str | None = None
    required: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, str):
            return {"from": data}
        return data

    @field_validator("transform", mode="before")
    @classmethod
    def _one_step(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | AbcMapping) else value

    @field_validator("options", mode="before")
    @classmethod
    def _option_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("from_")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not _PATH.fullmatch(value):
            raise ValueError(f"{value!r} is not an attribute name or dotted path (e.g. address.city)")
        return value

    @model_validator(mode="after")
    def _type_keys(self) -> FieldSpec:
        if self.options is not None:
            if self.type not in ("dropdown", "multiselect"):
                raise ValueError(f"'options' only applies to dropdown and multiselect fields, not {self.type}")
            if not self.options or len(set(self.options)) != len(self.options):
                raise ValueError("'options' must list distinct values")
        if self.type == "regexp" and not self.pattern:
            raise ValueError("a regexp field needs 'pattern'")
        if self.pattern is not None:
            if self.type != "regexp":
                raise ValueError(f"'pattern' only applies to regexp fields, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from None
        return self

    @property
    def path(self) -> tuple[str, ...]:
        """The attribute path (set by Mapping: `from` defaults to the field key)."""
        return tuple((self.from_ or "").split("."))


class RelationshipSpec(_Model):
    """A Zendesk lookup field filled from an Outreach relationship."""

    from_: str = Field(alias="from")
    target: str
    match: MatchBy | None = None

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        targets.parse(value)
        return value

    @model_validator(mode="after")
    def _match(self) -> RelationshipSpec:
        targets.check_match(self.lookup, self.match)
        return self

    @property
    def lookup(self) -> targets.LookupTarget:
        """What `target` names (its text is kept as written: it is part of the payload hash)."""
        return targets.parse(self.target)

    @property
    def mapping_target(self) -> str | None:
        """The mapping name for `mapping:<name>` targets, else None."""
        return self.lookup.mapping


class SourceSpec(_Model):
    """Which Outreach records to read."""

    type: str
    custom_object: bool = True
    filter: dict[str, str | int | list[str]] = {}

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not _TYPE.fullmatch(value):
            raise ValueError(f"{value!r} is not an Outreach type; use its internal name, e.g. vehicles")
        return value

    @field_validator("filter", mode="before")
    @classmethod
    def _filter(cls, value: Any) -> Any:
        if not isinstance(value, AbcMapping):
            return value
        normalised: dict[str, Any] = {}
        for key, item in value.items():
            query_key = filter_query_key(str(key))
            if query_key in normalised:
                raise ValueError(f"filter {key!r} is given twice (as {query_key})")
            normalised[query_key] = ("true" if item else "false") if isinstance(item, bool) else item
        return normalised

    def query_filters(self) -> dict[str, str]:
        """The filters as query parameters, lists comma-joined."""
        return {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in self.filter.items()}


def filter_query_key(key: str) -> str:
    """`main_driver.id`, `[main_driver][id]` or `filter[main_driver][id]` -> the last form."""
    brackets = "".join(f"[{part}]" for part in key.split(".")) if "[" not in key else key
    found = _FILTER_KEY.fullmatch(brackets)
    if not found:
        raise ValueError(f"filter key {key!r} is not valid; write e.g. main_driver.id or filter[main_driver][id]")
    query_key = f"filter{found.group(1)}"
    if query_key.startswith("filter[updatedAt]"):
        raise ValueError("bridge sets the updatedAt filter itself for incremental syncs; remove it")
    return query_key


class TargetSpec(_Model):
    """The Zendesk custom object and how each record is named and identified."""

    object: str
    name: str
    external_id: str = targets.EXTERNAL_ID

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        return check_key(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        Template.parse(value)
        return value

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str) -> str:
        used = Template.parse(value).names
        if not used <= {"type", "id"}:
            raise ValueError(f"external_id may use only {{type}} and {{id}}, not {sorted(used - {'type', 'id'})}")
        if "id" not in used:
            raise ValueError("external_id must contain {id} so every record gets its own")
        return value


def check_duration(value: str | None) -> str | None:
    """`30s`, `5m`, `1h`, `1d`: a positive whole number of one unit."""
    if value is not None:
        found = _EVERY.fullmatch(value.strip())
        if not found or int(found.group(1)) == 0:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 1h or 1d")
    return value


def duration_seconds(value: str) -> int:
    found = _EVERY.fullmatch(value.strip())
    assert found is not None  # checked by check_duration
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


class Schedule(_Model):
    """When the worker runs a mapping: `every: 5m` or a 5-field `cron`."""

    every: str | None = None
    cron: str | None = None

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        return check_duration(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            check_cron(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 5m) and 'cron' (e.g. \"*/5 * * * *\")")
        return self

    def seconds(self) -> int | None:
        """The interval of an `every` schedule in seconds; None for cron."""
        if self.every is None:
            return None
        return duration_seconds(self.every)


class VerifySpec(_Model):
    """`verify: {every: 1d}`: the worker compares the mapping's Zendesk records with what bridge
    wrote this often (`bridge verify`, report only: it never repairs on its own)."""

    every: str

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        check_duration(value)
        return value

    def seconds(self) -> int:
        return duration_seconds(self.every)


def check_cron(expression: str) -> None:
    """Raises ValueError unless `expression` is a standard 5-field crontab line."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"cron {expression!r} needs 5 fields: minute hour day-of-month month day-of-week")
    for part, (label, low, high, names) in zip(parts, _CRON_FIELDS):
        for item in part.split(","):
            if not _cron_item_ok(item.lower(), low, high, names):
                raise ValueError(f"cron {expression!r}: {item!r} is not a valid {label} ({low}-{high})")


def _cron_item_ok(item: str, low: int, high: int, names: dict[str, int]) -> bool:
    base, _, step = item.partition("/")
    if step and not (step.isdigit() and int(step) > 0):
        return False
    if base == "*":
        return True
    start, _, end = base.partition("-")
    values = [names.get(v, int(v) if v.isdigit() else -1) for v in ([start, end] if end else [start])]
    return all(low <= v <= high for v in values) and values[0] <= values[-1]


class Mapping(_Model):
    """One mapping file; `name` is its file name without the extension."""

    name: str
    source: SourceSpec
    target: TargetSpec
    fields: dict[str, FieldSpec]
    relationships: dict[str, RelationshipSpec] = {}
    schedule: Schedule = Schedule(every="5m")
    on_delete: Literal["keep", "delete"] = "keep"
    verify: VerifySpec | None = None  # off unless asked

    @model_validator(mode="after")
    def _default_from(self) -> Mapping:
        for key, spec in self.fields.items():
            if spec.from_ is None:
                self.fields[key] = spec.model_copy(update={"from_": key})
        return self

    def depends_on(self) -> set[str]:
        """Names of the mappings this one's relationships point at."""
        return {t for r in self.relationships.values() if (t := r.mapping_target) is not None}

    def consistency_problems(self) -> list[tuple[str, str]]:
        """(key path, message) for rules that relate several keys of this mapping."""
        found: list[tuple[str, str]] = []
        for section, keys in (("fields", self.fields), ("relationships", self.relationships)):
            for key in keys:
                try:
                    check_key(key)
                except ValueError as exc:
                    found.append((f"{section}.{key}", str(exc)))
        for key, spec in self.fields.items():
            if spec.type == "lookup" and key not in self.relationships:
                found.append((f"fields.{key}.type",
                              f"lookup field {key!r} needs a relationships.{key} entry saying what it points at"))
            elif spec.type != "lookup" and key in self.relationships:
                found.append((f"relationships.{key}",
                              f"{key!r} is also a {spec.type} field; a key is either a field or a relationship"))
        if len(self.relationships) > MAX_LOOKUP_FIELDS:
            found.append(("relationships", f"{len(self.relationships)} lookup fields; "
                                           f"Zendesk allows at most {MAX_LOOKUP_FIELDS} per object"))
        if len(set(self.fields) | set(self.relationships)) > MAX_FIELDS:
            found.append(("fields", f"more than {MAX_FIELDS} fields; Zendesk allows at most {MAX_FIELDS} per object"))
        return found
