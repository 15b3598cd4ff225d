from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.store.crypto import TokenCipher, derive_key


def test_round_trip_with_any_string_key() -> None:
    for secret in ("x", "correct horse battery staple", "ü" * 200):
        cipher = TokenCipher(secret)
        ciphertext = cipher.encrypt(b"refresh-token-value")
        assert b"refresh-token-value" not in ciphertext
        assert TokenCipher(secret).decrypt(ciphertext) == b"refresh-token-value"


def test_key_derivation_is_stable_and_key_specific() -> None:
    assert derive_key("a") == derive_key("a")
    assert derive_key("a") != derive_key("b")


def test_wrong_key_is_a_config_error_that_says_what_to_do() -> None:
    ciphertext = TokenCipher("old").encrypt(b"t")
    with pytest.raises(ConfigError, match="BRIDGE_SECRET_KEY") as info:
        TokenCipher("new").decrypt(ciphertext)
    assert "OUTREACH_REFRESH_TOKEN" in str(info.value)


def test_empty_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SECRET_KEY is empty"):
        TokenCipher("")
