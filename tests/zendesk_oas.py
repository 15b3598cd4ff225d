"""Zendesk's OpenAPI file as a test oracle: request and response bodies checked against it.

The spec lives outside the project (../shared/api/zendesk-oas.yaml beside the repo root, or
$BRIDGE_ZENDESK_OAS) and is never copied in. It is 1.2 MB, so it is parsed once per process.
Schemas are validated with `OAS30Validator` against the whole document, so `$ref`s into
`#/components` resolve. The plain validator ignores `readOnly`: the spec marks
`CustomObjectRecord.name` read-only although every create and upsert sends it.

Public helpers: `spec_path()`, `load_spec()`, `request_schema()`, `response_schema()`,
`validate_request()`, `validate_response()`. Validation failures raise
`jsonschema.ValidationError`; a missing spec makes the calling test skip.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

ENV_VAR = "BRIDGE_ZENDESK_OAS"


def spec_path() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared/api/zendesk-oas.yaml"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that accepts the bare `=` value (tag:yaml.org,2002:value) in the spec."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


@functools.lru_cache(maxsize=1)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_spec() -> dict[str, Any]:
    """The parsed spec; skips the calling test, saying where it looked, when it is absent."""
    path = spec_path()
    if not path.is_file():
        pytest.skip(f"Zendesk OpenAPI file not found at {path} (set ${ENV_VAR} to point at it)")
    return _load(str(path))


def _operation(spec: dict[str, Any], method: str, path_template: str) -> dict[str, Any]:
    try:
        return spec["paths"][path_template][method.lower()]
    except KeyError:
        missing = f"the spec has no operation {method.upper()} {path_template}"
        raise AssertionError(missing) from None


def request_schema(method: str, path_template: str) -> dict[str, Any]:
    spec = load_spec()
    op = _operation(spec, method, path_template)
    try:
        return op["requestBody"]["content"]["application/json"]["schema"]
    except KeyError:
        raise AssertionError(f"{method.upper()} {path_template} has no JSON requestBody") from None


def response_schema(method: str, path_template: str, status: int) -> dict[str, Any]:
    spec = load_spec()
    responses = _operation(spec, method, path_template)["responses"]
    answer = responses.get(str(status)) or responses.get(status)
    if answer is None:
        raise AssertionError(f"{method.upper()} {path_template} documents no {status} answer")
    return answer["content"]["application/json"]["schema"]


def validate_schema(schema: dict[str, Any], body: Any) -> None:
    """Validates `body` against `schema`, resolving `$ref`s against the whole spec."""
    rooted = {**schema, "components": load_spec()["components"]}
    OAS30Validator(rooted).validate(body)


def validate_request(method: str, path_template: str, body: Any) -> None:
    validate_schema(request_schema(method, path_template), body)


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    validate_schema(response_schema(method, path_template, status), body)
