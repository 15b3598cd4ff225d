"""Outreach credentials: a fixed bearer token, or OAuth refresh with rotation.

Outreach rotates the refresh token on every refresh and lets a user mint at most one access
token per 60 s (api/outreach.md, Auth). So the newest refresh token is persisted through a
`TokenStore` before it is used, one process refreshes at a time (the store's lock), and a
process that finds a fresher token in the store uses it instead of minting again.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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
