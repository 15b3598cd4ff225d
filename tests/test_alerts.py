"""The alert message and its signature, as a receiver checks them."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from bridge.alerts import AlertConfig, Message, body_of, retry_delay, signature


def test_the_signature_is_the_documented_hmac_of_timestamp_dot_body() -> None:
    body = b'{"text":"bridge: mapping vehicles is failing"}'
    expected = hmac.new(b"s3cret", b"1764300000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1764300000", body) == f"sha256={expected}"


def test_the_body_is_a_slack_message_with_structured_fields() -> None:
    message = Message("vehicles", "mapping_failing", "critical", "mapping 'vehicles' is failing: 403", {"run_id": 7})
    body = body_of(message, datetime(2026, 1, 1, tzinfo=UTC))
    assert body["text"] == ":rotating_light: bridge: mapping 'vehicles' is failing: 403"
    assert {k: body[k] for k in ("event", "severity", "mapping", "occurred_at", "details")} == {
        "event": "mapping_failing", "severity": "critical", "mapping": "vehicles",
        "occurred_at": "2026-01-01T00:00:00+00:00", "details": {"run_id": 7},
    }  # fmt: skip


def test_retries_back_off_doubling_up_to_a_cap() -> None:
    assert [retry_delay(n, 10.0) for n in (1, 2, 3, 7, 20)] == [10.0, 20.0, 40.0, 600.0, 600.0]


def test_the_config_never_shows_its_url_or_secret() -> None:
    config = AlertConfig(url="https://hooks.example/services/T0/B0/tok", secret="s3cret")
    assert "tok" not in repr(config) and "s3cret" not in repr(config)
