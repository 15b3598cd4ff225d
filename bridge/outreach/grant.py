"""The OAuth refresh grant: one POST to Outreach's token endpoint, and what its answer means.

Kept apart from `auth.py`, which decides *when* to mint; this module only knows *how*
(api/outreach.md, Auth). Invariants: one attempt per call (the caller waits out a 429 and the
calling request's retry loop handles 5xx and timeouts); a refused grant (`invalid_grant`,
`invalid_client`, any other 4xx) is an `AuthError` whose `detail` is the bare OAuth error code;
messages never carry the form, the answer or any part of a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlsplit

import aiohttp
import pydantic
from pydantic import BaseModel, ConfigDict

from bridge.errors import AuthError, RejectedError
from bridge.http.transport import HttpConfig, Transport
from bridge.outreach import wire
from bridge.redact import redact_url

_DEFAULT_EXPIRES_IN = 7200.0  # seconds; Outreach access tokens live 2 h


class TokenAnswer(BaseModel):
    """The token endpoint's answer; only what bridge uses (api/outreach.md, "Auth")."""

    model_config = ConfigDict(extra="ignore")

    access_token: str
    refresh_token: str | None = None
    expires_in: float = _DEFAULT_EXPIRES_IN


class RefreshGrant:
    """Exchanges a refresh token for a token answer at `token_url`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # One send, no waiting: OAuthRefresh decides what a 429 or a 5xx here means.
        self._transport = Transport(
            session, HttpConfig(api="outreach", max_attempts=1, deadline=0.0), auth=None,
            error_parser=partial(wire.error_detail, codes_only=True), sleep=sleep,
        )
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"RefreshGrant(token_url={self.token_url!r})"

    async def exchange(self, refresh_token: str) -> TokenAnswer:
        """One POST; a 429 or 5xx is a TransientApiError, a refusal an AuthError."""
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        path = _path(self.token_url)
        try:
            response = await self._transport.request(
                "POST", self.token_url, data=form, authenticated=False
            )
        except (RejectedError, AuthError) as exc:
            raise AuthError(
                f"outreach POST {path}: {exc.status} {exc.detail}; {_refused_todo(exc.detail)}",
                api="outreach", method="POST", path=path, status=exc.status, detail=exc.detail,
            ) from None
        try:
            return TokenAnswer.model_validate(response.json())
        except pydantic.ValidationError:
            raise AuthError(
                f"outreach POST {path}: {response.status} answer has no usable access_token; "
                "check the token URL (OUTREACH_API_URL)",
                api="outreach", method="POST", path=path, status=response.status,
            ) from None


def _refused_todo(detail: str) -> str:
    if "invalid_grant" in detail:
        return "refresh token refused; re-authorise and set OUTREACH_REFRESH_TOKEN"
    if "invalid_client" in detail:
        return "client refused; check OUTREACH_CLIENT_ID and OUTREACH_CLIENT_SECRET"
    return "token refresh refused; check the OAuth settings and re-authorise if needed"


def _path(url: str) -> str:
    return urlsplit(redact_url(url)).path or "/"
