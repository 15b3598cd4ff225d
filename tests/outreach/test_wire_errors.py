"""wire.error_detail: Outreach's error bodies (api/outreach.md, "Rate limits and errors" and
"Auth"), short and redacted; at the token endpoint, codes only."""

from __future__ import annotations

import json

import pytest

from bridge.http.transport import Response
from bridge.outreach.wire import error_detail

URL = "https://api.outreach.io/api/v2/prospects"


def answer(body: object, status: int = 422, content_type: str = "application/vnd.api+json") -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {"Content-Type": content_type}, raw, URL)


def errors(*items: dict[str, object]) -> dict[str, object]:
    return {"errors": list(items)}


@pytest.mark.parametrize(("body", "expected"), [
    (errors({"id": "validationError", "title": "Validation Error", "detail": "Name can't be blank",
             "source": {"pointer": "/data/attributes/name"}}),
     "validationError: Name can't be blank (at /data/attributes/name)"),
    (errors({"id": "validationError", "details": "bad name"}), "validationError: bad name"),
    (errors({"id": "unauthorizedOauthScope", "title": "Unauthorized OAuth Scope",
             "detail": "Missing scope prospects.read"}),
     "unauthorizedOauthScope: Missing scope prospects.read"),
    (errors({"id": "resourceNotFound", "title": "resourceNotFound"}), "resourceNotFound"),
    (errors({"title": "Only title"}, {"id": "x"}), "Only title; x"),
    (errors({"id": "rateLimitExceeded", "detail": "Rate limit exceeded"},
            {"id": "scheduledServerMaintenance", "detail": "Back at 10:00"}),
     "rateLimitExceeded: Rate limit exceeded; scheduledServerMaintenance: Back at 10:00"),
    (b"Too Many Requests", "Too Many Requests"),
    (b"<html><body>Bad gateway</body></html>", ""),
    (b"", ""),
    ({"error": "server_error", "message": "try later"}, "server_error: try later"),
])
def test_api_error_shapes(body: object, expected: str) -> None:
    assert error_detail(answer(body)) == expected


def test_only_the_first_five_errors_are_kept() -> None:
    detail = error_detail(answer(errors(*({"id": f"e{n}"} for n in range(9)))))
    assert detail == "e0; e1; e2; e3; e4"


@pytest.mark.parametrize("body", [
    errors({"id": "e", "detail": "Bearer SECRET-abc was bad"}),
    errors({"id": "e", "detail": "see https://x.test/?access_token=SECRET-abc"}),
    b"refused: Authorization: Bearer SECRET-abc",
])
def test_secrets_in_bodies_are_redacted(body: object) -> None:
    assert "SECRET-abc" not in error_detail(answer(body, 401))


@pytest.mark.parametrize(("body", "expected"), [
    ({"error": "invalid_grant", "error_description": "refresh_token R-SECRET is revoked"},
     "invalid_grant"),
    ({"error": "invalid_client"}, "invalid_client"),
    ({"error": "not a code: R-SECRET"}, ""),
    (errors({"id": "rateLimitExceeded", "detail": "token R-SECRET minted too often"}),
     "rateLimitExceeded"),
    (b"refresh_token=R-SECRET unknown", ""),
    ([1, 2], ""),
])
def test_the_token_endpoint_gives_codes_only(body: object, expected: str) -> None:
    detail = error_detail(answer(body, 400, "application/json"), codes_only=True)
    assert detail == expected
    assert "R-SECRET" not in detail
