"""Which credentials win, and what a user is told when some are missing."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bridge import wiring
from bridge.directory import Directory
from bridge.errors import ConfigError
from bridge.outreach.auth import OAuthRefresh, StaticToken
from bridge.settings import Settings
from bridge.zendesk.auth import BearerToken, ClientCredentials, LegacyApiToken
from tests.fixtures_sandbox import SandboxWorld


def settings(**values: object) -> Settings:
    base = {name: None for name, f in Settings.model_fields.items() if f.default is None}
    return Settings.model_construct(**{**Settings().model_dump(), **base, **values})


async def test_outreach_static_token_wins() -> None:
    s = settings(outreach_access_token=SecretStr("t"), outreach_client_id="c")
    assert isinstance(wiring._outreach_auth(s, None, None), StaticToken)  # type: ignore[arg-type]


async def test_outreach_oauth_needs_all_four_and_names_the_missing() -> None:
    s = settings(outreach_client_id="c", outreach_client_secret=SecretStr("s"))
    with pytest.raises(ConfigError) as info:
        wiring._outreach_auth(s, None, None)  # type: ignore[arg-type]
    assert "OUTREACH_REFRESH_TOKEN" in str(info.value) and "BRIDGE_SECRET_KEY" in str(info.value)
    assert "OUTREACH_CLIENT_ID," not in str(info.value).split("missing:")[1]
    full = settings(
        outreach_client_id="c", outreach_client_secret=SecretStr("s"),
        outreach_refresh_token=SecretStr("r"), bridge_secret_key=SecretStr("k"),
    )
    assert isinstance(wiring._outreach_auth(full, None, None), OAuthRefresh)  # type: ignore[arg-type]


async def test_zendesk_prefers_client_credentials_then_bearer_then_legacy() -> None:
    url = "https://acme.zendesk.com"
    cc = settings(zendesk_client_id="i", zendesk_client_secret=SecretStr("s"), zendesk_oauth_token=SecretStr("b"))
    assert isinstance(wiring._zendesk_auth(cc, None, url), ClientCredentials)  # type: ignore[arg-type]
    bearer = settings(zendesk_oauth_token=SecretStr("b"), zendesk_email="a@b.c", zendesk_api_token=SecretStr("t"))
    assert isinstance(wiring._zendesk_auth(bearer, None, url), BearerToken)  # type: ignore[arg-type]
    legacy = settings(zendesk_email="a@b.c", zendesk_api_token=SecretStr("t"))
    assert isinstance(wiring._zendesk_auth(legacy, None, url), LegacyApiToken)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET"):
        wiring._zendesk_auth(settings(), None, url)  # type: ignore[arg-type]


async def test_request_deadline_reaches_the_transport() -> None:
    s = settings(bridge_request_deadline_seconds=42.0, bridge_max_attempts=3)
    transport = wiring._transport(
        None, s, "zendesk", BearerToken("b"), None, lambda r: "", []  # type: ignore[arg-type]
    )
    assert (transport.config.deadline, transport.config.max_attempts) == (42.0, 3)


async def test_the_record_export_shares_the_people_directorys_export_pacer(world: SandboxWorld) -> None:
    """Zendesk's 10 export requests a minute are one budget for every incremental export."""
    zd = world.sandbox.zendesk
    zd.add_object("vehicle", "Vehicle", "Vehicles")
    made = zd.create_record("vehicle", {"name": "Car", "external_id": "outreach:vehicles:1"})
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as s:
        assert s.record_export is not None and isinstance(s.directory, Directory)
        assert s.record_export._pacer is s.directory._exports._pacer
        pages = [p async for p in s.record_export.pages("vehicle")]
    assert [r.id for p in pages for r in p.records] == [made["id"]]
