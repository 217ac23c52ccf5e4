"""Envelope encryption: tenant data keys, blind indexes, master key rotation."""

from __future__ import annotations

import hashlib
import json
import re

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


# Texts whose every stored form holds a character a Fernet token (url-safe base64:
# A-Z a-z 0-9 - _ =) never has: spaces and punctuation, non-ASCII bytes, and the
# backslash of JSON's \u escapes. A token holds one only if the text was stored as is.
ASCII_MARKER = "plaintext marker: zebra quasar, do not store!"
UNICODE_MARKER = "Grüße aus 世界"


def _plaintext_forms(text: str) -> list[bytes]:
    """The bytes ``text`` becomes in an unencrypted JSON document: escaped (json.dumps's
    default, what encrypt_json serialises with) or as UTF-8."""
    return [json.dumps(text)[1:-1].encode(), json.dumps(text, ensure_ascii=False)[1:-1].encode()]


def test_tenant_cipher_round_trips_json():
    cipher = TenantCipher(Fernet.generate_key())
    value = {"prompt": UNICODE_MARKER, "messages": [{"role": "user", "content": ASCII_MARKER}], "n": 3, "none": None}

    token = cipher.encrypt_json(value)

    assert cipher.decrypt_json(token) == value
    # A memoryview, as the database returns BinaryField values, decrypts too.
    assert cipher.decrypt_json(memoryview(token)) == value


def test_ciphertext_holds_no_plaintext_form_of_the_value():
    cipher = TenantCipher(Fernet.generate_key())
    value = {"prompt": UNICODE_MARKER, "messages": [{"role": "user", "content": ASCII_MARKER}]}

    token = cipher.encrypt_json(value)

    for text in (ASCII_MARKER, UNICODE_MARKER):
        for form in _plaintext_forms(text):
            # The form is what storing the value unencrypted would write...
            assert form in json.dumps(value).encode() or form in json.dumps(value, ensure_ascii=False).encode()
            # ...and it cannot occur in base64 by chance: only a plaintext token holds it.
            assert not re.fullmatch(rb"[A-Za-z0-9_=-]*", form)
            assert form not in token


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
    # Not a plain hash of the value, which anyone could compute from a guess.
    assert digest != hashlib.sha256(b"client-ref-42").hexdigest()


def test_blind_index_is_a_fixed_size_hex_digest_whatever_the_value():
    # 64 hex characters fit the digest columns (CharField(max_length=64)); a value
    # encoded or kept in the index would be longer for the long value, or not hex.
    cipher = TenantCipher(Fernet.generate_key())
    for value in ("client-ref-42", "", "é" * 1000):
        assert re.fullmatch(r"[0-9a-f]{64}", cipher.blind_index(value))


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


@pytest.mark.django_db
def test_rewrapping_covers_a_retired_key_and_the_blind_index_key(settings):
    # A master-key rotation while a tenant's data key is being replaced: the key
    # being retired (it still decrypts) and the pinned blind-index key are re-wrapped too.
    from apps.tenants.data_keys import begin_rekey
    from apps.tenants.services import create_tenant, rewrap_all_data_keys

    old, new = _master_key(), _master_key()
    settings.MASTER_KEYS = [old]
    tenant = create_tenant("Rekeying Corp", "rekeying")
    token = tenant.cipher.encrypt_json({"prompt": "under the first data key"})
    index = tenant.cipher.blind_index("ref")
    assert begin_rekey(tenant)

    settings.MASTER_KEYS = [new, old]
    rewrap_all_data_keys()

    settings.MASTER_KEYS = [new]
    tenant.refresh_from_db()
    assert tenant.cipher.decrypt_json(token) == {"prompt": "under the first data key"}
    assert not tenant.cipher.is_current(token)
    assert tenant.cipher.blind_index("ref") == index
