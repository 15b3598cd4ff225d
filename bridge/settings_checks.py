"""The checks behind Settings' validators: the mistakes a new user makes first, explained.

Each message names the variable, says what is wrong and gives the value to set, from what
the user typed when that is safe to repeat (addresses, levels) and never from a secret (a
DATABASE_URL carries a password, so its messages describe it instead). `explain` turns the
rest of pydantic's errors (a number that is not a number, a value out of range) into the
same shape, with an example taken from the variable's default.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic.fields import FieldInfo

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_SUBDOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
DSN_EXAMPLE = "DATABASE_URL=postgresql://user:password@host:5432/dbname"


def log_level(value: str) -> str:
    level = value.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL {value!r} is not a level; set LOG_LEVEL to one of {', '.join(LEVELS)}")
    return level


def secure_or_loopback(parts: SplitResult) -> bool:
    """https, or plain http to this machine (the sandbox and local tries)."""
    host = parts.hostname or ""
    return parts.scheme == "https" or (parts.scheme == "http" and (host in _LOOPBACK or host.startswith("127.")))


def origin(name: str, value: str, example: str) -> str:
    """An API's address: scheme and host only (bridge adds the paths); https unless loopback."""
    text = value.strip()
    parts = urlsplit(text if "://" in text else "")
    host = parts.hostname or ""
    if not host:
        guess = text.split("/")[0] or urlsplit(example).hostname
        raise ValueError(f"{name} {value!r} is not a full address; set it with https://, e.g. {name}=https://{guess}")
    if parts.username or parts.password:
        raise ValueError(f"{name} must not carry credentials; set {name}=https://{host} and the credentials in "
                         "their own variables")  # fmt: skip
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if not secure_or_loopback(parts):
        raise ValueError(f"{name} must use https (the API refuses plain http); set {name}=https://{netloc}")
    extra = parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
    if extra:
        raise ValueError(f"{name} must be the address only, without {extra!r} (bridge adds the API paths); "
                         f"set {name}={parts.scheme}://{netloc}")  # fmt: skip
    return f"{parts.scheme}://{netloc}"


def subdomain(value: str) -> str:
    text = value.strip()
    if _SUBDOMAIN.fullmatch(text):
        return text
    bare = text.split("://")[-1].split("/")[0].split(".")[0] or "acme"
    raise ValueError(f"ZENDESK_SUBDOMAIN must be the subdomain alone ({bare} for https://{bare}.zendesk.com); set "
                     f"ZENDESK_SUBDOMAIN={bare}, or set ZENDESK_URL to the full address instead")  # fmt: skip


def database_url(dsn: str) -> None:
    """Only the shape: whether the server answers is the store's to say."""
    parts = urlsplit(dsn.strip())
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL is not a Postgres URL (it must start with postgresql://); set it like {DSN_EXAMPLE}")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ValueError(
            "DATABASE_URL has a port that is not a number (or a password with an unencoded @ : or /; "
            f"percent-encode them as %40 %3A %2F); set it like {DSN_EXAMPLE}"
        ) from None


def explain(error: Any, fields: dict[str, FieldInfo]) -> str:
    """One pydantic error as `VARIABLE: what is wrong; what to set` (never the value given)."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])  # our own checks above: already complete
    field = str(error["loc"][0]) if error["loc"] else ""
    name = field.upper()
    message = f"{name}: {error['msg']}"
    info = fields.get(field)
    if info is None:
        return message
    default = info.default
    if info.annotation is int:
        return f"{message}; set {name} to a whole number, e.g. {name}={default}"
    if info.annotation is float:
        unit = " of seconds without a unit" if _seconds(field) else ""
        return f"{message}; set {name} to a number{unit}, e.g. {name}={default:g}"
    return f"{message}; see the Configuration section of the README"


def _seconds(field: str) -> bool:
    return field.endswith(("_seconds", "_timeout"))
