"""Outreach credentials: a fixed bearer token, or OAuth refresh with rotation.

Outreach rotates the refresh token on every refresh and lets a user mint at most one access
token per 60 s, answering 429 otherwise (api/outreach.md, Auth). So the newest refresh token
is persisted through a `TokenStore`, one process refreshes at a time (the store's lock), and a
process that finds a fresher token in the store uses it instead of minting again.

Timing follows each token's own `expires_in`: a token is renewed ahead of its expiry by a
quarter of its lifetime (at most five minutes), so a 30 s token is good for about 22 s and a
2 h one for 1 h 55 min. Minting too soon, by our own spacing or by the server's 429, means
waiting (while a still valid token keeps being used), never failing: only a refused grant
(`invalid_grant`, `invalid_client`) is an `AuthError`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp
import structlog

from bridge.errors import AuthError, BridgeError, TransientApiError
from bridge.outreach.grant import RefreshGrant, TokenAnswer

log = structlog.get_logger(__name__)

_MINT_INTERVAL = timedelta(seconds=60)  # one access token per user per minute
_MAX_MARGIN = timedelta(minutes=5)
_LEAD = 0.25  # of a token's lifetime: how early it is renewed, and the least spacing of mints
_SAVE_RETRY = timedelta(seconds=5)  # how often an unsaved rotated token is saved again


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An OAuth token pair as persisted between processes and runs.

    `seed` is the store's fingerprint of the configured OUTREACH_REFRESH_TOKEN this chain of
    rotations began with, so a different configured token can be noticed and taken; None for
    tokens stored before fingerprints existed.
    """

    access_token: str
    refresh_token: str
    expires_at: datetime  # tz-aware UTC
    minted_at: datetime  # tz-aware UTC
    seed: str | None = None

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.minted_at


class TokenStore(Protocol):
    """Persists rotated tokens; implemented by `bridge.store.tokens` (encrypted in Postgres)."""

    async def load(self, name: str) -> StoredToken | None: ...

    async def save(self, name: str, token: StoredToken) -> None: ...

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held while refreshing, so that only one process mints at a time."""
        ...

    def fingerprint(self, refresh_token: str) -> str:
        """A keyed one-way digest of a refresh token: equal tokens, equal fingerprints."""
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


class OAuthRefresh:
    """Bearer tokens from the OAuth refresh grant, rotated and shared through a `TokenStore`.

    Invariants: one refresh at a time in this process (an asyncio.Lock) and across processes
    (the store's lock); inside it the store is re-read, and a newer valid token there is adopted
    instead of minting; mints are spaced by the lesser of 60 s and a quarter of the token's
    lifetime, and by whatever a 429 asks; the newest refresh token is never dropped: if saving
    it fails it stays in memory, is used, and is saved again before the next mint.
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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin: timedelta = _MAX_MARGIN,
        mint_interval: timedelta = _MINT_INTERVAL,
    ) -> None:
        self._grant = RefreshGrant(session, token_url, client_id, client_secret, sleep=sleep)
        self._env_refresh_token = refresh_token
        self._env_seed = store.fingerprint(refresh_token)
        self._env_refused = False
        self._store = store
        self._name = name
        self._clock = clock
        self._sleep = sleep
        self._max_margin = margin
        self._mint_interval = mint_interval
        self._lock = asyncio.Lock()
        self._current: StoredToken | None = None
        self._refused: str | None = None  # access token a 401 refused: never sent again
        self._not_before: datetime | None = None  # the token endpoint's last Retry-After
        self._unsaved = False  # _current holds a rotated token the store does not have yet
        self._next_save = datetime.min.replace(tzinfo=UTC)
        # The token this task last sent. A 401 refuses *that* token, which another task may
        # have replaced already; contextvars keep it per task without changing `Auth`.
        self._sent: contextvars.ContextVar[StoredToken | None] = contextvars.ContextVar(
            f"outreach_token_sent_{id(self)}", default=None
        )

    def __repr__(self) -> str:
        return f"OAuthRefresh(name={self._name!r}, token_url={self._grant.token_url!r})"

    async def headers(self) -> dict[str, str]:
        token = self._in_use()
        if token is None:
            token = await self._stored_or_renewed()
        elif self._unsaved and self._clock() >= self._next_save:
            await self._save_again()
        self._sent.set(token)
        return {"Authorization": f"Bearer {token.access_token}"}

    async def refresh(self) -> None:
        """After a 401: replace the token that was refused (unless someone already did).

        A token endpoint that fails transiently is not fatal here: the next `headers()` call,
        inside the request's retry loop, renews again.
        """
        refused = self._sent.get() or self._current
        current = self._current
        if refused is not None and current is not None:
            if current.access_token != refused.access_token:
                return  # another task replaced it already
            self._refused = refused.access_token
        try:
            await self._renew()
        except TransientApiError as exc:
            log.warning("outreach_token_refresh_deferred", name=self._name, status=exc.status)

    def _in_use(self) -> StoredToken | None:
        """The current token if it may be sent without renewing first."""
        token = self._current
        if token is None or not self._valid(token):
            return None
        if not self._due(token) or self._clock() < self._mint_allowed_at(token):
            return token  # fresh, or due but a mint is not allowed yet: keep using it
        return None

    async def _stored_or_renewed(self) -> StoredToken:
        """A valid token another process (or an earlier run) saved, else a renewed one."""
        stored = await self._store.load(self._name)  # no lock needed just to read
        if stored is not None and self._adoptable(stored):
            self._current, self._unsaved = stored, False
            return stored
        return await self._renew()

    async def _renew(self) -> StoredToken:
        async with self._lock:
            token = self._in_use()
            if token is not None:
                return token  # another task renewed it while this one waited
            async with self._store.lock(self._name):
                return await self._renew_locked()

    async def _renew_locked(self) -> StoredToken:
        while True:
            await self._save_pending()
            stored = await self._store.load(self._name)
            if stored is not None and self._adoptable(stored):
                self._current, self._unsaved = stored, False
                return stored
            newest = self._newest(stored)
            wait = (self._mint_allowed_at(newest) - self._clock()).total_seconds()
            if wait > 0:
                still_valid = self._still_valid(stored)
                if still_valid is not None:
                    self._current = still_valid
                    return still_valid  # renew once minting is allowed; this one still works
                log.info("outreach_token_mint_wait", name=self._name, seconds=round(wait, 3))
                await self._sleep(wait)
                continue
            try:
                return await self._mint(newest)
            except TransientApiError as exc:
                if exc.status != 429:
                    raise
                delay = exc.retry_after  # without one, wait our own spacing from now
                if delay is None:
                    delay = self._spacing(newest).total_seconds()
                self._not_before = self._clock() + timedelta(seconds=delay)
                log.info("outreach_token_mint_throttled", name=self._name, retry_after=delay)

    def _margin(self, token: StoredToken) -> timedelta:
        return min(self._max_margin, token.lifetime * _LEAD)

    def _due(self, token: StoredToken) -> bool:
        return token.expires_at - self._margin(token) <= self._clock()

    def _valid(self, token: StoredToken) -> bool:
        return token.access_token != self._refused and token.expires_at > self._clock()

    def _mint_allowed_at(self, newest: StoredToken | None) -> datetime:
        """The newest mint plus our spacing, or later if the token endpoint asked for that."""
        allowed = datetime.min.replace(tzinfo=UTC)
        if newest is not None:
            allowed = newest.minted_at + self._spacing(newest)
        return allowed if self._not_before is None else max(allowed, self._not_before)

    def _spacing(self, newest: StoredToken | None) -> timedelta:
        """Least time between two mints: Outreach's 60 s, less for short-lived tokens (a server
        that issues 30 s tokens must let them be renewed more often than once a minute)."""
        if newest is None:
            return self._mint_interval
        return min(self._mint_interval, newest.lifetime * _LEAD)

    def _adoptable(self, stored: StoredToken) -> bool:
        """A stored token is used instead of minting if fresh, not refused, newer than ours,
        and from the chain the configured refresh token seeded."""
        if not self._valid(stored) or self._due(stored) or self._reseed(stored):
            return False
        current = self._current
        if current is None:
            return True
        return stored.access_token != current.access_token and stored.minted_at >= current.minted_at

    def _reseed(self, stored: StoredToken) -> bool:
        """Whether OUTREACH_REFRESH_TOKEN changed since it seeded the stored chain.

        A row without a seed predates fingerprints and is taken as seeded by the configured
        token: deployments that upgrade keep their chain (their configured token was rotated
        away long ago), and a chain that is refused still falls back to the configured token.
        """
        return (
            stored.seed is not None and stored.seed != self._env_seed and not self._env_refused
        )

    def _still_valid(self, stored: StoredToken | None) -> StoredToken | None:
        """Ours, or else the stored one, if it is not expired yet (though due for renewal)."""
        if self._current is not None and self._valid(self._current):
            return self._current
        if stored is not None and self._valid(stored) and not self._reseed(stored):
            return stored
        return None

    def _newest(self, stored: StoredToken | None) -> StoredToken | None:
        known = [t for t in (stored, self._current) if t is not None]
        return max(known, key=lambda t: t.minted_at, default=None)

    async def _mint(self, chain: StoredToken | None) -> StoredToken:
        """Mints from the preferred refresh token, falling back to the other on invalid_grant."""
        grants = self._grants(chain)
        for i, (refresh_token, seed, source) in enumerate(grants):
            try:
                answer = await self._grant.exchange(refresh_token)
            except AuthError as exc:
                if exc.detail != "invalid_grant" or i == len(grants) - 1:
                    raise
                if source == "environment":
                    self._env_refused = True
                log.warning(
                    "outreach_refresh_token_refused", name=self._name, source=source,
                    fallback=grants[i + 1][2],
                )
                continue
            if source == "environment" and chain is not None:
                log.warning("outreach_token_reseeded", name=self._name)
            return await self._keep(self._token_from(answer, refresh_token, seed))
        raise AssertionError("unreachable: the last grant raises")

    def _grants(self, chain: StoredToken | None) -> list[tuple[str, str, str]]:
        """(refresh token, seed, source) to try in order."""
        env = (self._env_refresh_token, self._env_seed, "environment")
        if chain is None:
            return [env]
        stored = (chain.refresh_token, chain.seed or self._env_seed, "store")
        if self._reseed(chain):
            return [env, stored]
        if chain.refresh_token == self._env_refresh_token or self._env_refused:
            return [stored]
        return [stored, env]

    def _token_from(self, answer: TokenAnswer, used: str, seed: str) -> StoredToken:
        now = self._clock()
        return StoredToken(
            access_token=answer.access_token,
            refresh_token=answer.refresh_token or used,
            expires_at=now + timedelta(seconds=answer.expires_in),
            minted_at=now,
            seed=seed,
        )

    async def _keep(self, token: StoredToken) -> StoredToken:
        """Makes a freshly minted token current, saved if the store lets us."""
        self._current, self._refused, self._not_before = token, None, None
        self._unsaved = True
        await self._save_pending()
        log.info(
            "outreach_token_refreshed", name=self._name, expires_at=token.expires_at.isoformat(),
            saved=not self._unsaved,
        )
        return token

    async def _save_pending(self) -> None:
        """Saves the current token if an earlier save failed (or it was just minted)."""
        token = self._current
        if not self._unsaved or token is None:
            return
        try:
            await self._store.save(self._name, token)
        except Exception as exc:  # whatever the store raises, the new refresh token must live
            self._next_save = self._clock() + _SAVE_RETRY
            reason = str(exc) if isinstance(exc, BridgeError) else type(exc).__name__
            log.warning(
                "outreach_token_save_failed", name=self._name, reason=reason,
                retry_in=_SAVE_RETRY.total_seconds(),
            )
            return
        self._unsaved = False

    async def _save_again(self) -> None:
        """Retries a failed save between mints, so a crash loses as little as possible."""
        async with self._lock:
            if not self._unsaved:
                return
            try:
                async with self._store.lock(self._name):
                    await self._save_pending()
            except BridgeError as exc:
                self._next_save = self._clock() + _SAVE_RETRY
                log.warning("outreach_token_save_failed", name=self._name, reason=str(exc))
        if not self._unsaved:
            log.info("outreach_token_saved", name=self._name)
