"""The configuration mistakes a new user makes first, run as they run them (`bridge backfill`).

Each must exit 2 before anything is touched, name the variable, say how to fix it, and never
echo a secret it was given. The database is never reached: DATABASE_URL points at a port
where nothing listens, so a message about the database would mean the check came too late.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from bridge import cli
from tests.fixtures_sandbox import REPO

SECRET = "s3cret-Value-42"
UNREACHABLE_DB = "postgresql://bridge@127.0.0.1:9/bridge"
GOOD = {
    "DATABASE_URL": UNREACHABLE_DB,
    "BRIDGE_MAPPINGS": str(REPO / "mappings"),
    "OUTREACH_ACCESS_TOKEN": SECRET,
    "ZENDESK_URL": "https://acme.zendesk.com",
    "ZENDESK_CLIENT_ID": "bridge",
    "ZENDESK_CLIENT_SECRET": SECRET,
}


@dataclass(frozen=True)
class Mistake:
    name: str
    env: dict[str, str | None]  # None removes a variable from GOOD
    says: tuple[str, ...]  # the variable(s), and the fix
    command: tuple[str, ...] = ("backfill",)
    never: tuple[str, ...] = field(default=(SECRET,))


MISTAKES = [
    Mistake("zendesk url without https", {"ZENDESK_URL": "acme.zendesk.com"},
            ("ZENDESK_URL", "ZENDESK_URL=https://acme.zendesk.com")),
    Mistake("zendesk url with a path", {"ZENDESK_URL": "https://acme.zendesk.com/api/v2"},
            ("ZENDESK_URL", "'/api/v2'", "ZENDESK_URL=https://acme.zendesk.com")),
    Mistake("zendesk url over http", {"ZENDESK_URL": "http://acme.zendesk.com"},
            ("ZENDESK_URL", "https://acme.zendesk.com")),
    Mistake("subdomain with the domain", {"ZENDESK_URL": None, "ZENDESK_SUBDOMAIN": "acme.zendesk.com"},
            ("ZENDESK_SUBDOMAIN", "ZENDESK_SUBDOMAIN=acme", "ZENDESK_URL")),
    Mistake("outreach url with the api path", {"OUTREACH_API_URL": "https://api.outreach.io/api/v2"},
            ("OUTREACH_API_URL", "'/api/v2'", "OUTREACH_API_URL=https://api.outreach.io")),
    Mistake("refresh token without the secret key",
            {"OUTREACH_ACCESS_TOKEN": None, "OUTREACH_CLIENT_ID": "cid", "OUTREACH_CLIENT_SECRET": SECRET,
             "OUTREACH_REFRESH_TOKEN": SECRET},
            ("BRIDGE_SECRET_KEY", "secrets.token_urlsafe")),
    Mistake("refresh token without the client", {"OUTREACH_ACCESS_TOKEN": None, "OUTREACH_REFRESH_TOKEN": SECRET,
                                                 "BRIDGE_SECRET_KEY": SECRET},
            ("OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET", "OAuth app")),
    Mistake("both outreach token kinds", {"OUTREACH_CLIENT_ID": "cid", "OUTREACH_CLIENT_SECRET": SECRET,
                                          "OUTREACH_REFRESH_TOKEN": SECRET, "BRIDGE_SECRET_KEY": SECRET},
            ("OUTREACH_ACCESS_TOKEN", "OUTREACH_REFRESH_TOKEN", "unset")),
    Mistake("no outreach credentials", {"OUTREACH_ACCESS_TOKEN": None},
            ("OUTREACH_ACCESS_TOKEN", "OUTREACH_REFRESH_TOKEN")),
    Mistake("half the zendesk client", {"ZENDESK_CLIENT_SECRET": None},
            ("ZENDESK_CLIENT_SECRET", "ZENDESK_CLIENT_ID", "OAuth client")),
    Mistake("database url without a scheme", {"DATABASE_URL": f"bridge:{SECRET}@localhost:5432/bridge"},
            ("DATABASE_URL", "postgresql://"), command=("migrate",)),
    Mistake("database url with a bad port", {"DATABASE_URL": f"postgresql://bridge:{SECRET}@localhost:54x2/bridge"},
            ("DATABASE_URL", "port"), command=("migrate",)),
    Mistake("mappings folder missing", {"BRIDGE_MAPPINGS": "/nonexistent/mappings"},
            ("BRIDGE_MAPPINGS", "/nonexistent/mappings", "does not exist")),
    Mistake("port not a number", {"PORT": "http"}, ("PORT", "whole number", "PORT=8080"), command=("worker",)),
    Mistake("unknown log level", {"LOG_LEVEL": "verbose"}, ("LOG_LEVEL", "DEBUG", "INFO", "WARNING")),
    Mistake("duration with a unit", {"BRIDGE_LEASE_TTL_SECONDS": "30s"},
            ("BRIDGE_LEASE_TTL_SECONDS", "seconds", "without a unit", "BRIDGE_LEASE_TTL_SECONDS=30")),
    Mistake("page size too large", {"BRIDGE_PAGE_SIZE": "5000"}, ("BRIDGE_PAGE_SIZE", "1000")),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """cli.main points structlog at this test's captured stderr; later tests must not log there."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def newcomer_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A shell with only the good settings, in a folder without a .env file."""
    import os

    for name in list(os.environ):
        if name.startswith(("OUTREACH_", "ZENDESK_", "BRIDGE_", "LOG_")) or name in ("DATABASE_URL", "PORT"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOG_FORMAT", "json")
    return monkeypatch


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_each_mistake_names_the_variable_and_the_fix(
    mistake: Mistake, newcomer_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in mistake.env.items():
        if value is None:
            newcomer_env.delenv(name, raising=False)
        else:
            newcomer_env.setenv(name, value)
    code = cli.main(list(mistake.command))
    err = capsys.readouterr().err
    assert code == 2, err
    for text in mistake.says:
        assert text in err, f"{text!r} missing from: {err}"
    for text in mistake.never:
        assert text not in err
    assert "127.0.0.1:9" not in err  # decided from the environment alone, before the database


def test_the_good_environment_gets_as_far_as_the_database(
    newcomer_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The baseline of the cases above is right: only the unreachable database stops it."""
    assert cli.main(["backfill"]) == 3
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and SECRET not in err
