"""Envelope encryption: tenant data keys, blind indexes, master key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from apps.security.crypto import (
    DecryptionError,
    TenantCipher,
    cipher_for_wrapped_key,
    new_wrapped_data_key,
    rewrap_data_key,
)


def _master_key() -> str:
    return Fernet.generate_key().decode()


def test_tenant_cipher_round_trips_json():
    cipher = TenantCipher(Fernet.generate_key())
    value = {"prompt": "Grüße, 世界", "messages": [{"role": "user", "content": "hi"}], "n": 3, "none": None}

    token = cipher.encrypt_json(value)

    assert cipher.decrypt_json(token) == value
    assert b"Gr" not in token and "世界".encode() not in token
    # A memoryview, as the database returns BinaryField values, decrypts too.
    assert cipher.decrypt_json(memoryview(token)) == value


def test_ciphertext_does_not_decrypt_with_another_data_key():
    token = TenantCipher(Fernet.generate_key()).encrypt_json({"secret": 1})
    with pytest.raises(DecryptionError):
        TenantCipher(Fernet.generate_key()).decrypt_json(token)


def test_tampered_ciphertext_is_refused():
    cipher = TenantCipher(Fernet.generate_key())
    token = bytearray(cipher.encrypt_json({"secret": 1}))
    token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
    with pytest.raises(DecryptionError):
        cipher.decrypt_json(bytes(token))


def test_blind_index_is_stable_per_key_and_differs_across_keys():
    key = Fernet.generate_key()
    first, same_key = TenantCipher(key), TenantCipher(key)
    other = TenantCipher(Fernet.generate_key())

    digest = first.blind_index("client-ref-42")
    assert digest == first.blind_index("client-ref-42")
    assert digest == same_key.blind_index("client-ref-42")
    assert digest != other.blind_index("client-ref-42")
    assert digest != first.blind_index("client-ref-43")
    assert "client-ref-42" not in digest
    assert len(digest) == 64


def test_blind_index_key_is_not_the_encryption_key():
    # Digesting with the data key itself would tie the index to the cipher key.
    import hashlib
    import hmac

    key = Fernet.generate_key()
    assert TenantCipher(key).blind_index("v") != hmac.new(key, b"v", hashlib.sha256).hexdigest()


def test_a_data_key_wrapped_under_an_old_master_key_unwraps_after_rotation(settings):
    old, new = _master_key(), _master_key()
    settings.MASTER_KEYS = [old]
    wrapped = new_wrapped_data_key()
    token = cipher_for_wrapped_key(wrapped).encrypt_json({"prompt": "before rotation"})

    settings.MASTER_KEYS = [new, old]
    assert cipher_for_wrapped_key(wrapped).decrypt_json(token) == {"prompt": "before rotation"}

    rewrapped = rewrap_data_key(wrapped)
    assert rewrapped != wrapped

    settings.MASTER_KEYS = [new]
    assert cipher_for_wrapped_key(rewrapped).decrypt_json(token) == {"prompt": "before rotation"}
    with pytest.raises(DecryptionError):
        cipher_for_wrapped_key(wrapped)


def test_new_data_keys_are_wrapped_by_the_first_master_key(settings):
    old, new = _master_key(), _master_key()
    settings.MASTER_KEYS = [new, old]
    wrapped = new_wrapped_data_key()

    settings.MASTER_KEYS = [new]
    cipher_for_wrapped_key(wrapped)  # unwraps with the primary alone
    settings.MASTER_KEYS = [old]
    with pytest.raises(DecryptionError):
        cipher_for_wrapped_key(wrapped)


def test_each_new_data_key_is_different(settings):
    settings.MASTER_KEYS = [_master_key()]
    first, second = new_wrapped_data_key(), new_wrapped_data_key()
    token = cipher_for_wrapped_key(first).encrypt_json("x")
    with pytest.raises(DecryptionError):
        cipher_for_wrapped_key(second).decrypt_json(token)


@pytest.mark.django_db
def test_rewrapping_every_tenant_lets_the_old_master_key_retire(settings):
    from apps.tenants.models import Tenant
    from apps.tenants.services import create_tenant, rewrap_all_data_keys

    old, new = _master_key(), _master_key()
    settings.MASTER_KEYS = [old]
    tenant = create_tenant("Rotating Corp", "rotating")
    token = tenant.cipher.encrypt_json({"prompt": "kept across rotation"})
    index = tenant.cipher.blind_index("ref")

    settings.MASTER_KEYS = [new, old]
    assert rewrap_all_data_keys() == Tenant.objects.count()

    settings.MASTER_KEYS = [new]
    tenant.refresh_from_db()
    assert tenant.cipher.decrypt_json(token) == {"prompt": "kept across rotation"}
    assert tenant.cipher.blind_index("ref") == index  # the data key itself did not change
