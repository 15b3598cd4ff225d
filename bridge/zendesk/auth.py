"""Zendesk credentials: OAuth client credentials (the main path), a fixed bearer, a legacy token.

API tokens stop working on 2027-04-30 (api/zendesk.md, "Auth"), so `ClientCredentials` is
the path bridge steers users to. Invariants: at most one token request is in flight (an
`asyncio.Lock`); a token is renewed `margin` seconds before it expires; concurrent 401s
trigger one renewal, not one each; no error message or log line carries a secret, a token or
the token endpoint's body; the token request never follows a redirect, since that would send
the client secret to wherever the `Location` points. The token request goes straight to the
session, not through the transport, because the transport itself asks this object for headers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import aiohttp

from bridge.errors import AuthError, TransientApiError
from bridge.http.transport import Response
from bridge.redact import redact_text, redact_url
from bridge.zendesk.wire import API, TokenAnswer

_DETAIL_LIMIT = 300
_CHECK_CLIENT = (
    "check ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET (an active OAuth client of kind "
    "'confidential' with the client_credentials grant) and ZENDESK_URL"
)


def token_request_body(client_id: str, client_secret: str, scope: str) -> dict[str, str]:
    """The JSON body of `POST /oauth/tokens` for the client_credentials grant."""
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": scope,
    }


class ClientCredentials:
    """Fetches and renews OAuth access tokens with the client_credentials grant."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "read write",
        clock: Callable[[], float] = time.monotonic,
        margin: float = 300.0,
        timeout: float = 30.0,
    ) -> None:
        self._session = session
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._clock = clock
        self._margin = margin
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at: float | None = None  # None: long-lived, renewed only after a 401
        self._generation = 0

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._token is None or self._expiring():
                await self._fetch()
            assert self._token is not None
            return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> None:
        """Called after a 401: fetch a new token unless another caller just did."""
        seen = self._generation
        async with self._lock:
            if self._generation == seen:
                await self._fetch()

    def _expiring(self) -> bool:
        return self._renew_at is not None and self._clock() >= self._renew_at

    async def _fetch(self) -> None:
        answer = await self._request_token()
        self._token = answer.access_token
        self._generation += 1
        if answer.expires_in is None:
            self._renew_at = None
        else:
            # A short-lived token must not be "expiring" the moment it arrives.
            margin = min(self._margin, answer.expires_in / 2)
            self._renew_at = self._clock() + answer.expires_in - margin

    async def _request_token(self) -> TokenAnswer:
        body = token_request_body(self._client_id, self._client_secret, self._scope)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        try:
            async with self._session.post(
                self._token_url, json=body, headers=headers, timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                answer = Response(resp.status, resp.headers, raw, str(resp.url))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientApiError(
                f"could not reach the Zendesk token endpoint {redact_url(self._token_url)} "
                f"({type(exc).__name__}); check ZENDESK_URL and the network, bridge will retry",
                api=API,
                method="POST",
                path=redact_url(self._token_url),
            ) from exc
        return self._parse(answer)

    def _parse(self, resp: Response) -> TokenAnswer:
        if resp.status == 429 or resp.status >= 500:
            raise TransientApiError(
                f"the Zendesk token endpoint answered HTTP {resp.status}; bridge will retry",
                api=API,
                method="POST",
                path=redact_url(self._token_url),
                status=resp.status,
                retry_after=_retry_after(resp.headers),
            )
        if 300 <= resp.status < 400:
            self._redirected(resp)
        if resp.status >= 300:
            self._fail(resp.status, self._scrub(zendesk_error_detail(resp)))
        try:
            return TokenAnswer.model_validate(json.loads(resp.body))
        except ValueError:
            self._fail(resp.status, "the answer carries no access_token")

    def _fail(self, status: int, detail: str) -> NoReturn:
        raise AuthError(
            f"Zendesk refused the OAuth client-credentials token request to "
            f"{redact_url(self._token_url)} (HTTP {status}: {detail}); {_CHECK_CLIENT}",
            api=API,
            method="POST",
            path=redact_url(self._token_url),
            status=status,
            detail=detail,
        )

    def _redirected(self, resp: Response) -> NoReturn:
        location = redact_url(resp.headers.get("Location", "")) or "nowhere given"
        detail = f"a redirect to {location}"
        raise AuthError(
            f"the Zendesk token endpoint {redact_url(self._token_url)} answered HTTP "
            f"{resp.status}, {detail}; bridge does not follow it, so the client secret is not "
            "sent there. Set ZENDESK_URL to the account's own https://<subdomain>.zendesk.com",
            api=API,
            method="POST",
            path=redact_url(self._token_url),
            status=resp.status,
            detail=detail,
        )

    def _scrub(self, text: str) -> str:
        """Belt and braces: an endpoint that echoes the request must not leak the secret."""
        for secret in (self._client_secret, self._token):
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text


class BearerToken:
    """A fixed OAuth access token (ZENDESK_OAUTH_TOKEN); it cannot be renewed."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> None:
        raise AuthError(
            "Zendesk refused the fixed OAuth token from ZENDESK_OAUTH_TOKEN and bridge cannot "
            "renew it; issue a new token, or set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET "
            "so bridge fetches and renews tokens itself",
            api=API,
            status=401,
        )


class LegacyApiToken:
    """`{email}/token:{api_token}` Basic auth; Zendesk retires API tokens on 2027-04-30."""

    def __init__(self, email: str, api_token: str) -> None:
        raw = f"{email}/token:{api_token}".encode()
        self._header = f"Basic {base64.b64encode(raw).decode('ascii')}"

    async def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}

    async def refresh(self) -> None:
        raise AuthError(
            "Zendesk refused the API token from ZENDESK_EMAIL and ZENDESK_API_TOKEN; check "
            "both. API tokens stop working on 2027-04-30: move to OAuth client credentials "
            "(set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET)",
            api=API,
            status=401,
        )


def zendesk_error_detail(resp: Response) -> str:
    """The API's own words about an error, short and redacted, from any of its body shapes."""
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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None
