"""Pydantic models of what Zendesk sends back, validated at the edge of the client.

Zendesk's answers vary more than its OpenAPI file admits (api/zendesk.md, "Result items"):
ids arrive as strings or integers, job results come in several shapes, and unknown keys
appear. So every model ignores extra keys, ids are coerced to strings, and only what bridge
reads is required. `parse_answer` is the one place where a `ValidationError` becomes a
`RejectedError`; nothing pydantic leaves this package. `error_detail` is the one reading of
Zendesk's error bodies, whatever endpoint answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bridge.errors import RejectedError
from bridge.http.transport import Response
from bridge.redact import redact_text, redact_url

API = "zendesk"
TERMINAL_STATUSES = frozenset({"completed", "failed"})
_DETAIL_LIMIT = 300


def _to_str(value: Any) -> Any:
    """Zendesk ids are strings for custom objects but integers elsewhere; keep them strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value))
    return value


IdStr = Annotated[str, BeforeValidator(_to_str)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenAnswer(_Wire):
    """`POST /oauth/tokens` → `OAuthTokenForGrantTypesObject` in the spec."""

    access_token: str
    token_type: str | None = None
    expires_in: float | None = None
    scope: str | None = None


class JobResult(_Wire):
    """One entry of `job_status.results`, in any of the shapes api/zendesk.md lists."""

    id: IdStr | None = None
    index: int | None = None
    external_id: IdStr | None = None
    action: str | None = None
    success: bool | None = None
    status: str | None = None
    error: Any = None
    details: Any = None


class JobStatus(_Wire):
    """A bulk job as `job_status` describes it; `results` is only meaningful once terminal."""

    id: IdStr
    status: str
    total: int | None = None
    progress: int | None = None
    message: str | None = None
    results: list[JobResult] | dict[str, Any] | None = None
    url: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def result_items(self) -> list[JobResult]:
        """Per-item results; a bare `{"success": …}` object (another spec shape) has none."""
        return self.results if isinstance(self.results, list) else []


class JobStatusEnvelope(_Wire):
    job_status: JobStatus


class JobStatusesEnvelope(_Wire):
    """`GET /api/v2/job_statuses/show_many` → `JobStatusesResponse`. An id Zendesk does not
    know (expired after a day, or never there) is simply absent; a `null` entry is tolerated."""

    job_statuses: list[JobStatus | None]


class RecordWire(_Wire):
    id: IdStr
    name: str = ""
    external_id: IdStr | None = None
    custom_object_fields: dict[str, Any] | None = None
    updated_at: datetime | None = None


class Links(_Wire):
    next: str | None = None
    prev: str | None = None


class Meta(_Wire):
    has_more: bool = False
    after_cursor: str | None = None


class RecordsPage(_Wire):
    custom_object_records: list[RecordWire]
    links: Links = Links()
    meta: Meta = Meta()


class ExportMeta(_Wire):
    has_more: bool


class RecordExportAnswer(_Wire):
    """`GET /api/v2/incremental/custom_objects/{key}/cursor` (api/zendesk.md, "Incremental
    exports"): `meta.has_more` says whether to go on; `end_of_stream`, which every incremental
    export carries, is read when `meta` is absent."""

    custom_object_records: list[RecordWire]
    after_cursor: str | None = None
    meta: ExportMeta | None = None
    end_of_stream: bool | None = None


class ObjectEnvelope(_Wire):
    custom_object: dict[str, Any]


class ObjectsList(_Wire):
    custom_objects: list[dict[str, Any]]


class LimitAnswer(_Wire):
    """`CustomObjectLimitsResponse`: `{"count", "limit"}`."""

    count: int
    limit: int


class FieldEnvelope(_Wire):
    custom_object_field: dict[str, Any]


class FieldsPage(_Wire):
    custom_object_fields: list[dict[str, Any]]
    links: Links = Links()
    meta: Meta = Meta()


M = TypeVar("M", bound=BaseModel)


def parse_answer(model: type[M], resp: Response) -> M:
    """Validates a 2xx body; a wrong shape is a `RejectedError` naming the call and the fields."""
    path = redact_url(resp.url)
    try:
        return model.model_validate(resp.json())
    except ValidationError as exc:
        problems = _summarise(exc)
        raise RejectedError(
            f"Zendesk answered {resp.method} {path} (HTTP {resp.status}) with a body that is "
            f"not a {model.__name__}: {problems}; this is an API change or a proxy in the "
            "way, report it with this message",
            api=API,
            method=resp.method,
            path=path,
            status=resp.status,
            detail=problems,
        ) from exc


def _summarise(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<body>'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts[:5])


def error_detail(resp: Response) -> str:
    """The API's own words about an error, short and redacted, from any of its body shapes.

    api/zendesk.md, "Rate limits and errors": `{"error", "description"}` (with `details` per
    field for RecordInvalid), `{"errors": [{"code", "title", "detail", "source"}]}`, the edge's
    `{"error": {"title", "message"}}`, OAuth's `{"error", "error_description"}`, and text.
    """
    text = resp.body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    detail = _detail_from_json(data) if isinstance(data, dict) else None
    if detail is None:
        detail = " ".join(text.split()) or f"HTTP {resp.status} with an empty body"
    detail = redact_text(detail)
    return detail if len(detail) <= _DETAIL_LIMIT else detail[: _DETAIL_LIMIT - 1] + "…"


def _detail_from_json(data: Mapping[str, Any]) -> str | None:
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(_one_of_errors(e) for e in errors[:5])
    error = data.get("error")
    if isinstance(error, Mapping):  # edge 429s: {"error": {"title", "message"}}
        return _join(error.get("title"), error.get("message"))
    if error is None and "description" not in data:
        return None
    head = _join(error, data.get("description") or data.get("error_description"))
    details = data.get("details")
    if isinstance(details, Mapping) and details:
        head = f"{head}; {_field_details(details)}"
    return head


def _one_of_errors(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    where = item.get("source")
    pointer = where.get("pointer") or where.get("parameter") if isinstance(where, Mapping) else None
    text = _join(item.get("code") or item.get("title"), item.get("detail") or item.get("title"))
    return f"{text} ({pointer})" if pointer else text


def _field_details(details: Mapping[str, Any]) -> str:
    parts = []
    for field, problems in list(details.items())[:5]:
        items = problems if isinstance(problems, list) else [problems]
        said = [
            str(p.get("description") or p.get("error")) if isinstance(p, Mapping) else str(p)
            for p in items
        ]
        parts.append(f"{field}: {', '.join(said)}")
    return "; ".join(parts)


def _join(head: Any, tail: Any) -> str:
    pieces = [str(p) for p in (head, tail) if p not in (None, "")]
    if len(pieces) == 2 and pieces[0] == pieces[1]:
        pieces = pieces[:1]
    return ": ".join(pieces) or "no detail given"
