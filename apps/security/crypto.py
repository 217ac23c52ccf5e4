"""Envelope encryption: tenant data keys wrapped by the master keys.

Every tenant has its own Fernet data key. It is stored only wrapped (encrypted)
by the master keyring, a MultiFernet over settings.MASTER_KEYS: the first key
wraps, every key unwraps, so a new master key can be put in front and the old
ones retired after ``manage.py rotate_master_keys`` has re-wrapped every
tenant key. Task input and output are encrypted with the tenant's data key, so
one tenant's data is unreadable with another tenant's key, and nothing a
tenant wrote is stored in the clear.

A tenant's data key itself can be replaced while the platform serves
(``manage.py rotate_master_keys --reencrypt SLUG``, apps.tenants.data_keys):
the new key encrypts at once, the retired ones still decrypt until every
stored value has been re-encrypted, then they are dropped. Its blind-index key
is kept apart from the data key (``rekeyed``) so digests outlive that.
Destroying the wrapped keys (``destroyed_key``, ``forget_cached_keys``)
crypto-shreds a tenant: what is left of its ciphertext decrypts with nothing
the database holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
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


def _derived_index_key(data_key: bytes) -> bytes:
    # A separate key for blind indexes, so a digest reveals nothing about the
    # encryption key and equal values stay searchable per tenant only.
    return hmac.new(data_key, b"llmagentos:blind-index", hashlib.sha256).digest()


class TenantCipher:
    """Encrypts and decrypts one tenant's data with its data key.

    ``retired`` keys (during a re-encryption) still decrypt; only ``data_key``
    encrypts. ``index_key`` keys the blind indexes; None: derived from
    ``data_key``, as for every tenant whose data key was never replaced.
    """

    def __init__(self, data_key: bytes, retired: Sequence[bytes] = (), index_key: bytes | None = None) -> None:
        self._primary = Fernet(data_key)
        self._fernet = MultiFernet([self._primary, *(Fernet(key) for key in retired)])
        self._index_key = index_key if index_key is not None else _derived_index_key(data_key)

    def encrypt_json(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def decrypt_json(self, token: bytes | memoryview) -> Any:  # a BinaryField reads as either
        try:
            return json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken as exc:
            raise DecryptionError("ciphertext does not decrypt with this tenant's key") from exc

    def is_current(self, token: bytes | memoryview) -> bool:
        """Whether ``token`` is encrypted with the primary data key (not a retired one)."""
        try:
            self._primary.decrypt(bytes(token))
        except InvalidToken:
            return False
        return True

    def reencrypt(self, token: bytes | memoryview) -> bytes:
        """``token`` encrypted anew with the primary data key (same plaintext, same timestamp)."""
        try:
            return self._fernet.rotate(bytes(token))
        except InvalidToken as exc:
            raise DecryptionError("ciphertext does not decrypt with this tenant's keys") from exc

    def blind_index(self, value: str) -> str:
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WrappedKeys:
    """A tenant's key material as stored, every part wrapped by the master keys.

    ``retired``: the data keys being replaced (a JSON list), None when none;
    ``index``: the blind-index key, None while it is still derived from ``data``.
    """

    data: bytes
    retired: bytes | None = None
    index: bytes | None = None


def _unwrap(wrapped: bytes, keys: tuple[str, ...] | None = None) -> bytes:
    try:
        return _keyring_for(keys or tuple(settings.MASTER_KEYS)).decrypt(wrapped)
    except InvalidToken as exc:
        raise DecryptionError("tenant data key does not unwrap with the master keys") from exc


def rekeyed(current: WrappedKeys) -> WrappedKeys:
    """A fresh data key in front, the current one retired (still decrypting).

    The blind-index key is pinned first: it is the one ``current`` uses (derived
    from its data key unless already pinned), now stored wrapped on its own.
    The stored digests (Idempotency-Key, client_ref: HMACs, which cannot be
    re-encrypted like ciphertext) thereby stay valid across every rotation
    without being recomputed, and are never out of step with the key in use.
    """
    old_key = _unwrap(bytes(current.data))
    index_key = _unwrap(bytes(current.index)) if current.index is not None else _derived_index_key(old_key)
    retired = json.loads(_unwrap(bytes(current.retired))) if current.retired is not None else []
    keyring = _keyring()
    return WrappedKeys(
        data=keyring.encrypt(Fernet.generate_key()),
        retired=keyring.encrypt(json.dumps([old_key.decode(), *retired]).encode()),
        index=keyring.encrypt(index_key),
    )


# What a crypto-shredded tenant's wrapped data key is overwritten with: it unwraps to nothing.
destroyed_key = b""


def forget_cached_keys() -> None:
    """Drop every unwrapped key this process keeps (the cipher cache): after a
    tenant's keys were destroyed or retired, none of them stays in memory here."""
    _cipher_cache.cache_clear()


def cipher_for_wrapped_key(
    wrapped: bytes | memoryview, retired: bytes | memoryview | None = None, index: bytes | memoryview | None = None
) -> TenantCipher:
    # A BinaryField reads as memoryview on PostgreSQL: bytes() makes it hashable for the cache.
    # The cache key is the stored (wrapped) material itself, so a tenant row read
    # after its keys changed never gets the cipher of the keys it had before.
    return _cipher_cache(
        bytes(wrapped),
        None if retired is None else bytes(retired),
        None if index is None else bytes(index),
        tuple(settings.MASTER_KEYS),
    )


@lru_cache(maxsize=1024)
def _cipher_cache(wrapped: bytes, retired: bytes | None, index: bytes | None, keys: tuple[str, ...]) -> TenantCipher:
    # Unwrapping costs an HMAC and an AES pass; tenants are few and hot, so the
    # unwrapped key is kept in this process's memory only (never persisted).
    data_key = _unwrap(wrapped, keys)
    retired_keys = [key.encode() for key in json.loads(_unwrap(retired, keys))] if retired is not None else []
    index_key = _unwrap(index, keys) if index is not None else None
    return TenantCipher(data_key, retired_keys, index_key)
