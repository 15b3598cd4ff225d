"""Encryption of the OAuth tokens bridge keeps in Postgres.

A database dump must not hand out a live refresh token, so tokens are stored as Fernet
ciphertext (AES-128-CBC + HMAC-SHA256, with a timestamp). The Fernet key is derived from
BRIDGE_SECRET_KEY with HKDF/SHA-256, so any non-empty string is a usable secret and the
same secret always yields the same key. A second key, derived the same way, keys the
fingerprints of refresh tokens (HMAC-SHA256), so they can be compared without being kept.
Decrypting with another secret fails loudly with a
ConfigError that says how to recover; it never returns garbage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.errors import ConfigError

_SALT = b"bridge/store/crypto"
_INFO = b"bridge oauth token encryption v1"
_FINGERPRINT_INFO = b"bridge oauth token fingerprint v1"


def derive_key(secret: str, info: bytes = _INFO) -> bytes:
    """A urlsafe-base64 Fernet key derived from `secret`."""
    if not secret:
        raise ConfigError(
            "BRIDGE_SECRET_KEY is empty; set it to a long random string (it encrypts the "
            "OAuth tokens bridge stores in Postgres)"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8")))


class TokenCipher:
    """Encrypts and decrypts stored tokens with a key derived from BRIDGE_SECRET_KEY."""

    __slots__ = ("_fernet", "_mac_key")

    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(derive_key(secret))
        self._mac_key = derive_key(secret, _FINGERPRINT_INFO)

    def fingerprint(self, plaintext: bytes) -> str:
        """A keyed one-way digest (hex): equal inputs match, the input cannot be recovered."""
        return hmac.new(self._mac_key, plaintext, hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext)
        except InvalidToken as exc:
            raise ConfigError(
                "stored tokens cannot be decrypted with this BRIDGE_SECRET_KEY; set the key "
                "they were stored with, or delete the row from the oauth_tokens table and set "
                "a fresh OUTREACH_REFRESH_TOKEN"
            ) from exc
