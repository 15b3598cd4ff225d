"""The configured API origin, and the one check that keeps credentials on it.

Both clients follow a listing's next links verbatim and send their credentials with every
request, so a link on another origin would carry the token (or the Basic credentials) there:
api/outreach.md's own example points at a staging host. `SameOrigin` is the single check both
paginators use, for next links and for stored resume URLs alike. An origin is (scheme, host,
port), compared case-insensitively with the scheme's default port filled in, so
`https://API.example:443` is the configured `https://api.example` and `http://api.example`
is not. This module knows no API: callers name theirs and the setting that configures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.errors import RejectedError
from bridge.redact import redact_url

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of `url`; an unreadable port is -1, never the configured one's."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            port = -1
        return cls(scheme, (parts.hostname or "").lower(), port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


class SameOrigin:
    """The configured origin of one API; refuses next links that leave it."""

    def __init__(self, configured_url: str, *, api: str, setting: str) -> None:
        self.origin = Origin.of(configured_url)
        self._api = api
        self._setting = setting

    def holds(self, url: str) -> bool:
        """Whether `url` (absolute) is on the configured origin."""
        return Origin.of(url) == self.origin

    def check_next(self, current_url: str, next_url: str) -> None:
        """Raises a `RejectedError` (following it again cannot help) when `next_url`, the link
        after the page read from `current_url`, is on another origin."""
        if self.holds(next_url):
            return
        what = (
            f"next page link points to another origin, {redact_url(next_url)}, outside the "
            f"configured API origin {self.origin}; refusing to send the credentials there. "
            f"Check {self._setting} matches the host the API answers from"
        )
        path = redact_url(current_url)
        raise RejectedError(
            f"{self._api} GET {path}: {what}", api=self._api, method="GET", path=path, detail=what
        )
