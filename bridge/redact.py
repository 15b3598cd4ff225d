"""Scrubbing of secrets from URLs, headers, mappings and free text.

This is the last line of defence: code should not log secrets in the first place, but
anything that reaches a log line or an error message passes through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "dsn",
    "database_url",
)
_NOT_SECRET = frozenset({"object_key", "custom_object_key", "mapping_key", "sort_key", "token_type"})

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]+)(:[^/@\s]*)?@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:access_token|refresh_token|client_secret|token|api_token|password)=)[^&\s\"']+"
)
_KV_SECRET = re.compile(
    r"(?i)\b((?:access_token|refresh_token|client_secret|api_token|password|token|secret)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"'&,}]+"
)


def is_secret_key(name: str) -> bool:
    """True for dictionary keys whose values must never be shown."""
    lowered = name.lower()
    if lowered in _NOT_SECRET:
        return False
    return any(word in lowered for word in _SECRET_WORDS) or lowered.endswith("_key")


def redact_text(text: str) -> str:
    """Masks bearer tokens, URL passwords and secret query or key=value pairs in text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _KV_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_url(url: str) -> str:
    """Drops userinfo and masks secret query parameters, keeping the URL readable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc.rpartition("@")[2]
    if "@" in parts.netloc:
        netloc = f"{REDACTED}@{netloc}"
    query = urlencode(
        [(k, REDACTED if is_secret_key(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="[],:",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in headers.items()}


def redact_value(value: Any, key: str = "") -> Any:
    """Recursively masks secrets in dicts, lists and strings (used by the log processor)."""
    if key and is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if type(value).__name__ == "SecretStr":
        return REDACTED
    return value
