"""Outreach credentials: a fixed bearer token, or OAuth refresh with rotation.

Outreach rotates the refresh token on every refresh and lets a user mint at most one access
token per 60 s (api/outreach.md, Auth). So the newest refresh token is persisted through a
`TokenStore` before it is used, one process refreshes at a time (the store's lock), and a
process that finds a fresher token in the store uses it instead of minting again.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import pydantic
import structlog
from pydantic import BaseModel, ConfigDict

from bridge.errors import AuthError, RejectedError
from bridge.http.transport import HttpConfig, Response, Transport
from bridge.redact import redact_url

log = structlog.get_logger(__name__)

_DEFAULT_EXPIRES_IN = 7200.0  # seconds; Outreach access tokens live 2 h
_MINT_INTERVAL = timedelta(seconds=60)  # one access token per user per minute


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An OAuth token pair as persisted between processes and runs."""

    access_token: str
    refresh_token: str
    expires_at: datetime  # tz-aware UTC
    minted_at: datetime  # tz-aware UTC; enforces one mint per 60 s


class TokenStore(Protocol):
    """Persists rotated tokens; implemented by `bridge.store.tokens` (encrypted in Postgres)."""

    async def load(self, name: str) -> StoredToken | None: ...

    async def save(self, name: str, token: StoredToken) -> None: ...

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held while refreshing, so that only one process mints at a time."""
        ...


class StaticToken:
    """A fixed bearer token (OUTREACH_ACCESS_TOKEN); it cannot be renewed."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> None:
        raise AuthError(
            "outreach: the access token was refused; set a fresh OUTREACH_ACCESS_TOKEN or use "
            "OAuth refresh (OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET, OUTREACH_REFRESH_TOKEN)",
            api="outreach", status=401,
        )


class _TokenAnswer(BaseModel):
    """The token endpoint's answer; only what bridge uses (api/outreach.md, "Auth")."""

    model_config = ConfigDict(extra="ignore")

    access_token: str
    refresh_token: str | None = None
    expires_in: float = _DEFAULT_EXPIRES_IN


class OAuthRefresh:
    """Bearer tokens from the OAuth refresh grant, rotated and shared through a `TokenStore`.

    Invariants: one refresh at a time in this process (an asyncio.Lock) and across processes
    (the store's lock); inside it the store is re-read, and a newer valid token there is adopted
    instead of minting; a rotated token is saved before it is used; never two mints within
    `_MINT_INTERVAL` of each other.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        store: TokenStore,
        name: str = "outreach",
        clock: Callable[[], datetime] = _utc_now,
        margin: timedelta = timedelta(minutes=5),
    ) -> None:
        self._transport = Transport(
            session, HttpConfig(api="outreach", max_attempts=3), auth=None,
            error_parser=_oauth_error_detail,
        )
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._env_refresh_token = refresh_token
        self._store = store
        self._name = name
        self._clock = clock
        self._margin = margin
        self._lock = asyncio.Lock()
        self._current: StoredToken | None = None
        # The token this task last sent. A 401 refuses *that* token, which another task may
        # have replaced already; contextvars keep it per task without changing `Auth`.
        self._sent: contextvars.ContextVar[StoredToken | None] = contextvars.ContextVar(
            f"outreach_token_sent_{id(self)}", default=None
        )

    def __repr__(self) -> str:
        return f"OAuthRefresh(name={self._name!r}, token_url={self._token_url!r})"

    async def headers(self) -> dict[str, str]:
        token = self._current
        if token is None or not self._fresh(token):
            token = await self._stored_or_renewed()
        self._sent.set(token)
        return {"Authorization": f"Bearer {token.access_token}"}

    async def refresh(self) -> None:
        """After a 401: replace the token that was refused (unless someone already did)."""
        await self._renew(refused=self._sent.get() or self._current)

    async def _stored_or_renewed(self) -> StoredToken:
        """A valid token another process (or an earlier run) saved, else a renewed one."""
        stored = await self._store.load(self._name)  # no lock needed just to read
        if stored is not None and self._fresh(stored):
            current = self._current
            if current is None or stored.minted_at >= current.minted_at:
                self._current = stored
                return stored
        return await self._renew(refused=None)

    def _fresh(self, token: StoredToken) -> bool:
        return token.expires_at - self._margin > self._clock()

    async def _renew(self, refused: StoredToken | None) -> StoredToken:
        async with self._lock:
            current = self._current
            if current is not None and self._fresh(current) and (
                refused is None or current.access_token != refused.access_token
            ):
                return current  # another task renewed it while this one waited
            async with self._store.lock(self._name):
                stored = await self._store.load(self._name)
                if stored is not None and self._adoptable(stored, refused):
                    self._current = stored
                    return stored
                self._check_mint_interval(stored, refused)
                return await self._mint(stored)

    def _adoptable(self, stored: StoredToken, refused: StoredToken | None) -> bool:
        """A stored token is used instead of minting if valid and newer than the refused one."""
        if not self._fresh(stored):
            return False
        if refused is None:
            return True
        return stored.access_token != refused.access_token and stored.minted_at > refused.minted_at

    def _check_mint_interval(self, stored: StoredToken | None, refused: StoredToken | None) -> None:
        newest = max(
            (t for t in (stored, refused, self._current) if t is not None),
            key=lambda t: t.minted_at, default=None,
        )
        if newest is not None and self._clock() - newest.minted_at < _MINT_INTERVAL:
            raise AuthError(
                "outreach: the access token was refused right after a refresh (Outreach mints at "
                "most one token a minute); check the OAuth app's scopes and the user's access",
                api="outreach", method="POST", path=_path(self._token_url), status=401,
            )

    async def _mint(self, stored: StoredToken | None) -> StoredToken:
        refresh_token = stored.refresh_token if stored is not None else self._env_refresh_token
        answer = await self._post_refresh(refresh_token)
        now = self._clock()
        token = StoredToken(
            access_token=answer.access_token,
            refresh_token=answer.refresh_token or refresh_token,
            expires_at=now + timedelta(seconds=answer.expires_in),
            minted_at=now,
        )
        await self._store.save(self._name, token)  # persisted before anything uses it
        self._current = token
        log.info("outreach_token_refreshed", name=self._name, expires_at=token.expires_at.isoformat())
        return token

    async def _post_refresh(self, refresh_token: str) -> _TokenAnswer:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        path = _path(self._token_url)
        try:
            response = await self._transport.request(
                "POST", self._token_url, data=form, authenticated=False
            )
        except (RejectedError, AuthError) as exc:
            raise AuthError(
                f"outreach POST {path}: {exc.status} {exc.detail}; {_refused_todo(exc.detail)}",
                api="outreach", method="POST", path=path, status=exc.status, detail=exc.detail,
            ) from None
        try:
            return _TokenAnswer.model_validate(response.json())
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


def _oauth_error_detail(response: Response) -> str:
    """Only the OAuth error code: the endpoint's descriptions may echo what was sent."""
    try:
        body = json.loads(response.body)
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and code.replace("_", "").isalnum():
        return code[:64]
    return ""


def _path(url: str) -> str:
    return urlsplit(redact_url(url)).path or "/"
