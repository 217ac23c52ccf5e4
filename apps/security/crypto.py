"""Envelope encryption: tenant data keys wrapped by the master keys.

Every tenant has its own Fernet data key. It is stored only wrapped (encrypted)
by the master keyring, a MultiFernet over settings.MASTER_KEYS: the first key
wraps, every key unwraps, so a new master key can be put in front and the old
ones retired after ``manage.py rotate_master_keys`` has re-wrapped every
tenant key. Task input and output are encrypted with the tenant's data key, so
one tenant's data is unreadable with another tenant's key, and nothing a
tenant wrote is stored in the clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """Ciphertext could not be decrypted: wrong key or tampered data."""


def _keyring() -> MultiFernet:
    return _keyring_for(tuple(settings.MASTER_KEYS))


@lru_cache(maxsize=4)
def _keyring_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def new_wrapped_data_key() -> bytes:
    """A fresh tenant data key, already wrapped by the primary master key."""
    return _keyring().encrypt(Fernet.generate_key())


def rewrap_data_key(wrapped: bytes | memoryview) -> bytes:
    """Re-wrap a tenant data key with the current primary master key."""
    try:
        return _keyring().rotate(bytes(wrapped))
    except InvalidToken as exc:
        raise DecryptionError("tenant data key does not unwrap with the master keys") from exc


class TenantCipher:
    """Encrypts and decrypts one tenant's data with its data key."""

    def __init__(self, data_key: bytes) -> None:
        self._fernet = Fernet(data_key)
        # A separate key for blind indexes, so a digest reveals nothing about
        # the encryption key and equal values stay searchable per tenant only.
        self._index_key = hmac.new(data_key, b"llmagentos:blind-index", hashlib.sha256).digest()

    def encrypt_json(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def decrypt_json(self, token: bytes | memoryview) -> Any:  # a BinaryField reads as either
        try:
            return json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken as exc:
            raise DecryptionError("ciphertext does not decrypt with this tenant's key") from exc

    def blind_index(self, value: str) -> str:
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()


def cipher_for_wrapped_key(wrapped: bytes | memoryview) -> TenantCipher:
    # A BinaryField reads as memoryview on PostgreSQL: bytes() makes it hashable for the cache.
    return _cipher_cache(bytes(wrapped), tuple(settings.MASTER_KEYS))


@lru_cache(maxsize=1024)
def _cipher_cache(wrapped: bytes, keys: tuple[str, ...]) -> TenantCipher:
    # Unwrapping costs an HMAC and an AES pass; tenants are few and hot, so the
    # unwrapped key is kept in this process's memory only (never persisted).
    try:
        data_key = _keyring_for(keys).decrypt(wrapped)
    except InvalidToken as exc:
        raise DecryptionError("tenant data key does not unwrap with the master keys") from exc
    return TenantCipher(data_key)
