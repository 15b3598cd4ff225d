"""Secrets are scrubbed from text, URLs, headers and nested values."""

from __future__ import annotations

from pydantic import SecretStr

from bridge.redact import REDACTED, redact_headers, redact_text, redact_url, redact_value


def test_bearer_and_basic_credentials_are_masked() -> None:
    text = redact_text("sent Authorization: Bearer abc.def-123 and Basic dXNlcjpwdw==")
    assert "abc.def-123" not in text and "dXNlcjpwdw==" not in text
    assert text.count(REDACTED) == 2


def test_url_passwords_and_secret_query_parameters_are_masked() -> None:
    url = redact_url("postgres://bridge:hunter2@db.example.com:5432/x?sslmode=require&password=p")
    assert "hunter2" not in url and "password=p" not in url
    assert "db.example.com:5432" in url and "sslmode=require" in url
    assert "=sekrit" not in redact_url("https://api.outreach.io/x?access_token=sekrit&page[size]=5")


def test_key_value_secrets_in_free_text_are_masked() -> None:
    text = redact_text('{"refresh_token": "r-123", "client_secret": "s-456", "token=t-789"}')
    for secret in ("r-123", "s-456", "t-789"):
        assert secret not in text


def test_headers_and_nested_values() -> None:
    assert redact_headers({"Authorization": "Bearer x", "Accept": "json"}) == {
        "Authorization": REDACTED,
        "Accept": "json",
    }
    value = redact_value({"outer": [{"api_token": "t"}], "key": "vehicle", "s": SecretStr("z")})
    assert value == {"outer": [{"api_token": REDACTED}], "key": "vehicle", "s": REDACTED}


def test_harmless_keys_are_left_alone() -> None:
    assert redact_value({"custom_object_key": "vehicle", "token_type": "bearer"}) == {
        "custom_object_key": "vehicle",
        "token_type": "bearer",
    }
