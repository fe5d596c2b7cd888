"""Signing secrets at rest: encrypted with WEBHOOKS_ENCRYPTION_KEYS (newest first), so a
database dump holds no usable secret and keys can be rotated (MultiFernet)."""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@functools.cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.WEBHOOKS_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    """Always with the newest key."""
    return _keys().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """With whichever configured key made it. The error never contains the secret."""
    try:
        return _keys().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise ValueError("A signing secret could not be decrypted with WEBHOOKS_ENCRYPTION_KEYS.") from None


def rotate(token: str) -> str:
    """Re-encrypt with the newest key."""
    return _keys().rotate(token.encode("ascii")).decode("ascii")
