"""Encrypting small secrets at rest (webhook secrets) with Fernet.

The key is FIELD_ENCRYPTION_KEY when set, otherwise one derived from SECRET_KEY. To change the
key without losing stored secrets, list the new key first and the old one after it
(FIELD_ENCRYPTION_KEY=new,old): new secrets use the first, and every listed key still decrypts.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_HKDF_INFO = b"aiworkforce field encryption"


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with the current key."""


@lru_cache(maxsize=4)
def _fernet(configured_key: str, secret_key: str) -> MultiFernet:
    if configured_key:
        try:
            return MultiFernet([Fernet(key.strip()) for key in configured_key.split(",")])
        except (ValueError, binascii.Error):
            raise ImproperlyConfigured(
                "FIELD_ENCRYPTION_KEY must be one or more comma-separated Fernet keys (32 bytes, "
                "urlsafe base64), for "
                "example from `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def _current() -> MultiFernet:
    # Read the settings on every call, so a test's override (or a reload) is honoured.
    return _fernet(settings.FIELD_ENCRYPTION_KEY or "", settings.SECRET_KEY)


def encrypt_secret(text: str) -> str:
    """Encrypt a secret for storage in a text column."""
    return _current().encrypt(text.encode()).decode()


def decrypt_secret(token: str) -> str:
    """Decrypt a stored secret; SecretDecryptionError when the key has changed since."""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "A stored secret cannot be decrypted: FIELD_ENCRYPTION_KEY (or SECRET_KEY, when "
            "FIELD_ENCRYPTION_KEY is unset) changed since it was saved. Rotate the secret."
        ) from None


def reencrypt_secret(token: str) -> str:
    """The same secret encrypted with the first key of FIELD_ENCRYPTION_KEY (after a rotation,
    so that the old key can be dropped); SecretDecryptionError when no listed key opens it."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEY: keep the "
            "old key listed after the new one until the rotation is done."
        ) from None
