"""Settings from the environment: names of DESIGN.md, clear errors, secrets hidden."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.settings import load_settings


def test_reads_the_design_environment_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZENDESK_SUBDOMAIN", "acme")
    monkeypatch.setenv("ZENDESK_CLIENT_SECRET", "zs-secret")
    monkeypatch.setenv("OUTREACH_ACCESS_TOKEN", "")  # empty counts as unset
    monkeypatch.setenv("BRIDGE_PAGE_SIZE", "250")
    settings = load_settings()
    assert settings.zendesk_base_url() == "https://acme.zendesk.com"
    assert settings.outreach_access_token is None
    assert settings.bridge_page_size == 250
    assert "zs-secret" not in repr(settings)


def test_zendesk_url_wins_and_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZENDESK_URL", "https://support.example.com/")
    monkeypatch.setenv("ZENDESK_SUBDOMAIN", "acme")
    assert load_settings().zendesk_base_url() == "https://support.example.com"


def test_missing_zendesk_location_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZENDESK_URL", raising=False)
    monkeypatch.delenv("ZENDESK_SUBDOMAIN", raising=False)
    with pytest.raises(ConfigError, match="ZENDESK_URL or ZENDESK_SUBDOMAIN"):
        load_settings().zendesk_base_url()


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_PAGE_SIZE", "5000")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "BRIDGE_PAGE_SIZE" in str(info.value) and "LOG_FORMAT" in str(info.value)
