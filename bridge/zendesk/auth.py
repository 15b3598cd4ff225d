"""Zendesk credentials: OAuth client credentials (the main path), a fixed bearer, a legacy token.

API tokens stop working on 2027-04-30 (api/zendesk.md, "Auth"), so `ClientCredentials` is
the path bridge steers users to. Invariants: at most one token request is in flight (an
`asyncio.Lock`); a token is renewed `margin` seconds before it expires; concurrent 401s
trigger one renewal, not one each; no error message or log line carries a secret, a token or
the token endpoint's body; the token request never follows a redirect, since that would send
the client secret to wherever the `Location` points.

The token request goes through an unauthenticated `Transport` of its own, as the Outreach
refresh grant does, so aiohttp errors, statuses and `Retry-After` are read in one place. It
sends once and never waits: a 429 or 5xx from the token endpoint is a `TransientApiError`
raised out of `headers()`, which the request loop that asked for the token waits out and
retries like any other (api/zendesk.md, "Rate limits and errors").
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp

from bridge.errors import AuthError, RejectedError, TransientApiError
from bridge.http.ratelimit import RateLimiter
from bridge.http.transport import HttpConfig, Response, Transport
from bridge.redact import redact_url
from bridge.zendesk.wire import API, TokenAnswer, error_detail

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
        limiter: RateLimiter | None = None,
    ) -> None:
        # One send, no waiting: the request that needs the token retries (honouring the token
        # endpoint's Retry-After) in its own loop, which calls `headers()` again. The API's
        # limiter, when given, holds token requests too: a 429 one caller saw pauses the
        # others' token requests as well as their API requests.
        self._transport = Transport(
            session, HttpConfig(api=API, timeout=timeout, max_attempts=1, deadline=0.0),
            auth=None, limiter=limiter, error_parser=self._detail,
        )
        self._token_url = token_url
        self._shown = redact_url(token_url)
        self._path = urlsplit(self._shown).path or "/"
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._clock = clock
        self._margin = margin
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at: float | None = None  # None: long-lived, renewed only after a 401
        self._generation = 0

    def __repr__(self) -> str:
        return f"ClientCredentials(token_url={self._shown!r})"

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._token is None or self._expiring():
                await self._fetch()
            assert self._token is not None
            return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> None:
        """Called after a 401: fetch a new token unless another caller just did.

        The refused token is dropped first, so if the fetch fails transiently the request
        loop's next `headers()` fetches again rather than resend a token known to be dead.
        """
        seen = self._generation
        async with self._lock:
            if self._generation == seen:
                self._token = None
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
        try:
            resp = await self._transport.request(
                "POST", self._token_url, json=body, headers={"Accept": "application/json"},
                authenticated=False,
            )
        except (RejectedError, AuthError) as exc:
            raise self._refused(exc.status, exc.detail) from None
        except TransientApiError as exc:
            raise self._unavailable(exc) from exc
        if 300 <= resp.status < 400:
            self._redirected(resp)
        try:
            return TokenAnswer.model_validate(resp.json())
        except (ValueError, TransientApiError):  # not JSON, or JSON without a token
            raise self._refused(resp.status, "the answer carries no access_token") from None

    def _detail(self, resp: Response) -> str:
        return self._scrub(error_detail(resp))

    def _unavailable(self, exc: TransientApiError) -> TransientApiError:
        """The transport's error, worded for the token endpoint; retried by the caller's loop."""
        if exc.status is None:
            what = f"could not reach the Zendesk token endpoint {self._shown} ({exc.detail})"
        else:
            what = (
                f"the Zendesk token endpoint {self._shown} answered HTTP {exc.status} "
                f"({exc.detail})"
            )
        return TransientApiError(
            f"{what}; bridge will retry, check ZENDESK_URL and the network if this persists",
            retry_after=exc.retry_after, api=API, method="POST", path=self._path,
            status=exc.status, detail=f"token endpoint: {exc.detail}",
        )

    def _refused(self, status: int | None, detail: str) -> AuthError:
        return AuthError(
            f"Zendesk refused the OAuth client-credentials token request to "
            f"{self._shown} (HTTP {status}: {detail}); {_CHECK_CLIENT}",
            api=API,
            method="POST",
            path=self._path,
            status=status,
            detail=detail,
        )

    def _redirected(self, resp: Response) -> NoReturn:
        location = redact_url(resp.headers.get("Location", "")) or "nowhere given"
        detail = f"a redirect to {location}"
        raise AuthError(
            f"the Zendesk token endpoint {self._shown} answered HTTP "
            f"{resp.status}, {detail}; bridge does not follow it, so the client secret is not "
            "sent there. Set ZENDESK_URL to the account's own https://<subdomain>.zendesk.com",
            api=API,
            method="POST",
            path=self._path,
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
