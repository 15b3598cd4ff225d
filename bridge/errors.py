"""Every error bridge raises, grouped by what the caller does about it.

```
BridgeError
├─ ConfigError           bad environment or input; exit 2, nothing touched
│  └─ MappingError       every problem in the mapping files, reported together
├─ ApiError              api, method, redacted path, status, the API's own detail
│  ├─ TransientApiError  429, 5xx, timeout, dropped connection; carries retry_after; retried
│  ├─ AuthError          credentials refused even after one refresh; stops the run
│  └─ RejectedError      other 4xx; for one record → dead letter, for the run → fatal
│     ├─ ExportUnavailable     the account has no such export (403/404): read another way
│     └─ ExportCursorInvalid   a stored export cursor is refused: restart from a start time
├─ RecordError           one record cannot be translated or written → dead letter
└─ StoreError            database unreachable or inconsistent
   ├─ MigrationError     a migration failed or was edited after it was applied
   └─ LeaseLost          another process took a mapping this one was running
```

Context is kept as attributes, never parsed back out of the message. Messages carry
redacted values only: the caller redacts before building them.
"""

from __future__ import annotations

from dataclasses import dataclass


class BridgeError(Exception):
    """Root of every error bridge raises on purpose."""


class ConfigError(BridgeError):
    """Bad environment, arguments or input files; nothing has been changed."""


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One thing wrong in one mapping file, located by key path."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class MappingError(ConfigError):
    """All problems found in the mapping files, so a user fixes them in one pass."""

    def __init__(self, problems: list[MappingProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the mapping files; fix them and run "
            f"`bridge validate` again:\n{lines}"
        )


class ApiError(BridgeError):
    """An API answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        api: str,
        method: str = "",
        path: str = "",
        status: int | None = None,
        detail: str = "",
    ) -> None:
        self.api = api
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        super().__init__(message)


class TransientApiError(ApiError):
    """Worth retrying: rate limited, server error, timeout or dropped connection."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **context)  # type: ignore[arg-type]


class AuthError(ApiError):
    """Credentials were refused even after one refresh; the run cannot go on."""


class RejectedError(ApiError):
    """The API refused the request as given (a 4xx other than 401 and 429)."""


class ExportUnavailable(RejectedError):
    """Zendesk refused an incremental export as not available to this account or token (a plan,
    a feature or a role without it): the caller reads the same data another way, and says so."""


class ExportCursorInvalid(RejectedError):
    """Zendesk refused a stored export cursor (`InvalidCursor`: unreadable or expired): the
    caller starts the export again from a start time."""


class RecordError(BridgeError):
    """One record cannot be translated or written; it goes to the dead letters."""

    def __init__(self, message: str, *, source_id: str = "", mapping: str = "") -> None:
        self.source_id = source_id
        self.mapping = mapping
        super().__init__(message)


class StoreError(BridgeError):
    """The database is unreachable or its state is not what bridge expects."""


class MigrationError(StoreError):
    """A migration failed, or one already applied was edited since."""


class LeaseLost(StoreError):
    """Another process holds the mapping this one was about to write for."""
