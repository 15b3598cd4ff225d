"""Validation of Zendesk custom object record payloads, field type by field type.

Mirrors what Zendesk enforces (`api/zendesk.md`, "Fields" and "Records"): `name` is
required on create; unknown field keys are refused; each value must suit its field type
(integer, decimal, checkbox, `YYYY-MM-DD` date, dropdown option value, list of
multiselect option values, regexp match); a lookup value (`"123"`, `"external_id:X"`,
`"name:X"`) must resolve to an existing target and is stored as the target's id; a record
is at most 32 KB. All problems of one record are reported together, keyed by field, in the
`RecordInvalid` shape.

A bulk job is checked in two places, as we read the API (`api/zendesk-oas.yaml`,
`CustomObjectRecordsBulkCreateRequest`; where exactly Zendesk draws the line is not
documented): what needs no stored state (each item's JSON shape against `CustomObjectRecord`,
and the 32 KB a record may hold) when the job is POSTed, refusing the whole job
(`job_request_problem`); everything else (field types, lookups, names) per item while the
job runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any

MAX_RECORD_BYTES = 32 * 1024
FIELD_TYPES = ("text", "textarea", "checkbox", "date", "integer", "decimal", "regexp", "dropdown", "multiselect", "lookup")
Resolve = Callable[[str, str], str | None]  # (relationship_target_type, reference) -> target id


class RecordInvalid(Exception):
    """One record failed validation; `details` maps a field key to its problems."""

    def __init__(self, details: dict[str, list[dict[str, str]]]) -> None:
        super().__init__("; ".join(f"{k}: {v[0]['description']}" for k, v in details.items()))
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": "RecordInvalid", "description": "Record validation errors", "details": self.details}


def problem(description: str, error: str = "InvalidValue") -> list[dict[str, str]]:
    return [{"description": description, "error": error}]


def check_fields(fields: list[dict[str, Any]], values: Any, resolve: Resolve) -> dict[str, Any]:
    """Validated custom_object_fields with lookups resolved to ids; RecordInvalid otherwise."""
    if not isinstance(values, dict):
        raise RecordInvalid({"custom_object_fields": problem("custom_object_fields must be an object")})
    by_key = {f["key"]: f for f in fields}
    out: dict[str, Any] = {}
    details: dict[str, list[dict[str, str]]] = {}
    for key, value in values.items():
        field = by_key.get(key)
        if field is None:
            details[key] = problem(f"{key} is not a field of this object", "UnknownField")
            continue
        try:
            out[key] = None if value is None else _check(field, value, resolve)
        except ValueError as exc:
            details[key] = problem(str(exc), "NotFound" if "does not exist" in str(exc) else "InvalidValue")
    if details:
        raise RecordInvalid(details)
    return out


def check_record(record: dict[str, Any], *, creating: bool) -> None:
    """Name and size rules for a record about to be stored."""
    name = record.get("name")
    if creating and (not isinstance(name, str) or not name.strip()):
        raise RecordInvalid({"name": problem("Name: cannot be blank", "BlankValue")})
    if name is not None and not isinstance(name, str):
        raise RecordInvalid({"name": problem("Name must be a string")})
    size = len(json.dumps(record, separators=(",", ":")).encode())
    if size > MAX_RECORD_BYTES:
        raise RecordInvalid({"base": problem(f"Record is {size} bytes; the limit is {MAX_RECORD_BYTES}", "TooLarge")})


def job_request_problem(action: str, items: list[Any]) -> tuple[int, dict[str, Any]] | None:
    """(status, error body) refusing a whole job because of its first bad item, or None."""
    for index, item in enumerate(items):
        where = f"items[{index}]"
        shape = _item_shape(action, item)
        if shape:
            body = {"errors": [{"code": "InvalidItems", "title": "Invalid items", "detail": f"{where}: {shape}", "status": "400"}]}
            return 400, body
        size = len(json.dumps(item, separators=(",", ":")).encode()) if isinstance(item, dict) else 0
        if size > MAX_RECORD_BYTES:
            return 422, RecordInvalid({where: problem(f"Record is {size} bytes; the limit is {MAX_RECORD_BYTES}", "TooLarge")}).body()
    return None


def _item_shape(action: str, item: Any) -> str:
    if action in ("delete", "delete_by_external_id"):
        return "" if isinstance(item, str) else f"{action} items must be strings"
    if not isinstance(item, dict):
        return f"{action} items must be objects"
    if "name" in item and item["name"] is not None and not isinstance(item["name"], str):
        return "name must be a string"
    if item.get("external_id") is not None and not isinstance(item["external_id"], str):
        return "external_id must be a string"
    if "custom_object_fields" in item and not isinstance(item["custom_object_fields"], dict):
        return "custom_object_fields must be an object"
    return ""


def _check(field: dict[str, Any], value: Any, resolve: Resolve) -> Any:
    kind, key = field["type"], field["key"]
    if kind in ("text", "textarea"):
        return _need(isinstance(value, str), value, f"{key} must be a string")
    if kind == "checkbox":
        return _need(isinstance(value, bool), value, f"{key} must be true or false")
    if kind == "integer":
        return _need(isinstance(value, int) and not isinstance(value, bool), value, f"{key} must be an integer")
    if kind == "decimal":
        return _need(isinstance(value, int | float) and not isinstance(value, bool), value, f"{key} must be a number")
    if kind == "date":
        return _check_date(key, value)
    if kind == "regexp":
        pattern = field.get("regexp_for_validation") or ".*"
        ok = isinstance(value, str) and re.fullmatch(pattern, value) is not None
        return _need(ok, value, f"{key} does not match {pattern}")
    if kind == "dropdown":
        options = {o["value"] for o in field.get("custom_field_options") or []}
        return _need(isinstance(value, str) and value in options, value, f"{key}: {value!r} is not one of the options")
    if kind == "multiselect":
        options = {o["value"] for o in field.get("custom_field_options") or []}
        ok = isinstance(value, list) and all(isinstance(v, str) and v in options for v in value)
        return _need(ok, value, f"{key}: every value must be one of the options")
    if kind == "lookup":
        return _check_lookup(field, value, resolve)
    raise ValueError(f"{key} has unsupported type {kind}")


def _need(ok: bool, value: Any, message: str) -> Any:
    if not ok:
        raise ValueError(message)
    return value


def _check_date(key: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{key} must be a date as YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {value!r} is not a calendar date") from exc
    return value


def _check_lookup(field: dict[str, Any], value: Any, resolve: Resolve) -> str:
    key, target = field["key"], field.get("relationship_target_type", "")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be an id, external_id:X or name:X string")
    found = resolve(target, value)
    if found is None:
        raise ValueError(f"{key}: the {target} {value!r} does not exist")
    return found
