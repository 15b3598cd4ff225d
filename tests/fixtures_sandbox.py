"""Pytest plugin: the sandbox APIs on loopback and Settings that point bridge at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.sandbox.seed import SeedInfo, seed_demo
from bridge.sandbox.server import Sandbox
from bridge.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass
class SandboxWorld:
    """A started sandbox, what was seeded in it, and settings for bridge to use it."""

    sandbox: Sandbox
    seed: SeedInfo
    settings: Settings

    def env(self) -> dict[str, str]:
        """The same settings as environment variables, for a `bridge` subprocess."""
        s = self.settings
        assert s.database_url is not None
        return {
            "DATABASE_URL": s.database_url.get_secret_value(),
            "BRIDGE_MAPPINGS": str(s.bridge_mappings),
            "OUTREACH_API_URL": s.outreach_api_url,
            "OUTREACH_ACCESS_TOKEN": self.seed.outreach_token,
            "ZENDESK_URL": s.zendesk_url or "",
            "ZENDESK_CLIENT_ID": self.seed.zendesk_client_id,
            "ZENDESK_CLIENT_SECRET": self.seed.zendesk_client_secret,
            "BRIDGE_PAGE_SIZE": str(s.bridge_page_size),
            "LOG_FORMAT": "json",
        }


def settings_for(sandbox: Sandbox, seed: SeedInfo, dsn: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": SecretStr(dsn),
        "bridge_mappings": REPO / "mappings",
        "outreach_api_url": sandbox.outreach_url,
        "outreach_access_token": SecretStr(seed.outreach_token),
        "zendesk_url": sandbox.zendesk_url,
        "zendesk_client_id": seed.zendesk_client_id,
        "zendesk_client_secret": SecretStr(seed.zendesk_client_secret),
        "bridge_page_size": 50,
        "bridge_overlap_seconds": 1.0,
    }
    values.update(overrides)
    return Settings.model_construct(**{**Settings().model_dump(), **values})


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sb:
        yield sb


@pytest.fixture
async def world(sandbox: Sandbox, db_dsn: str) -> SandboxWorld:
    seed = seed_demo(sandbox, vehicles=230, brands=6, prospects=20)
    return SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn))


def exports_refused(sandbox: Sandbox) -> None:
    """Zendesk refuses the incremental exports (they are for admins; an agent's token gets 403),
    so the people directory never loads and lookups go the old way: show_many, then searches."""
    sandbox.faults.add("zendesk", "status", status=403, path_contains="/api/v2/incremental/", times=-1)
