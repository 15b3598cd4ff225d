"""wire.error_detail: every error body shape of api/zendesk.md, short and redacted."""

from __future__ import annotations

import json

import pytest

from bridge.errors import RejectedError
from bridge.http.transport import Response
from bridge.zendesk.wire import error_detail as zendesk_error_detail

from .conftest import BASE, make_transport


def answer(body: object, status: int = 422, content_type: str = "application/json") -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {"Content-Type": content_type}, raw, f"{BASE}/api/v2/x")


def test_record_not_found_shape() -> None:
    detail = zendesk_error_detail(
        answer({"error": "RecordNotFound", "description": "Not found"}, status=404)
    )
    assert detail == "RecordNotFound: Not found"


def test_record_invalid_shape_lists_field_problems() -> None:
    body = {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {
            "name": [{"description": "Name: cannot be blank", "error": "BlankValue"}],
            "custom_object_fields.speed": [{"description": "must be a number"}],
        },
    }
    detail = zendesk_error_detail(answer(body))
    assert detail.startswith("RecordInvalid: Record validation errors; ")
    assert "name: Name: cannot be blank" in detail
    assert "custom_object_fields.speed: must be a number" in detail


def test_errors_list_shape() -> None:
    body = {
        "errors": [
            {"code": "InvalidValue", "title": "Invalid", "detail": "key is taken", "status": "422",
             "source": {"pointer": "/custom_object/key"}},
            {"code": "TooManyJobs", "title": "Too many jobs", "detail": "30 jobs queued"},
        ]
    }
    detail = zendesk_error_detail(answer(body))
    assert detail == (
        "InvalidValue: key is taken (/custom_object/key); TooManyJobs: 30 jobs queued"
    )


def test_edge_rate_limit_shape() -> None:
    body = {"error": {"title": "Too Many Requests", "message": "Rate limit exceeded"}}
    assert zendesk_error_detail(answer(body, 429)) == "Too Many Requests: Rate limit exceeded"


def test_oauth_error_shape() -> None:
    body = {"error": "invalid_client", "error_description": "Client authentication failed"}
    assert zendesk_error_detail(answer(body, 401)) == (
        "invalid_client: Client authentication failed"
    )


def test_text_plain_body() -> None:
    resp = answer(b"Rate limit exceeded.\n  Try again later\n", 429, "text/plain")
    assert zendesk_error_detail(resp) == "Rate limit exceeded. Try again later"


def test_empty_body_says_so() -> None:
    assert zendesk_error_detail(answer(b"", 502, "text/plain")) == "HTTP 502 with an empty body"


def test_long_body_is_cut_short() -> None:
    detail = zendesk_error_detail(answer(b"x" * 5000, 500, "text/plain"))
    assert len(detail) <= 300 and detail.endswith("…")


@pytest.mark.parametrize(
    "body",
    [
        {"error": "Unauthorized", "description": "Bearer abcdef123456 is not valid"},
        {"errors": [{"code": "Bad", "detail": "access_token=abcdef123456 expired"}]},
        b"token rejected: Authorization: Basic abcdef123456",
    ],
)
def test_secrets_in_bodies_are_redacted(body: object) -> None:
    detail = zendesk_error_detail(answer(body, 401))
    assert "abcdef123456" not in detail
    assert "[REDACTED]" in detail


async def test_transport_uses_it_for_rejections(session, mock, sleep, clock) -> None:
    url = f"{BASE}/api/v2/custom_objects/car"
    mock.post(url, status=422, payload={"error": "RecordInvalid", "description": "Bad key",
                                        "details": {"key": [{"description": "is taken"}]}})
    transport = make_transport(session, None, sleep, clock)

    with pytest.raises(RejectedError) as caught:
        await transport.request("POST", url, json={})

    assert caught.value.status == 422
    assert caught.value.detail == "RecordInvalid: Bad key; key: is taken"
