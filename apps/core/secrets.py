"""Secret tokens, one way for all of them: API keys (``lla_…``), operator tokens
(``llo_…``) and signed stream tokens; and the one parser of ``Authorization:
Bearer <credential>``.

Stored secrets have the shape ``<kind>_<public id>_<secret>``: the public id
finds the row, a SHA-256 of the whole value is all that is stored, and the
comparison takes the same time whether or not a row was found (timing must
not tell a known id apart). The full value is shown once, at issue.

Signed tokens are not stored: they carry their claims, signed with
SECRET_KEY and a salt per purpose, and expire by age.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.core import signing

_NO_HASH = "0" * 64


@dataclass(frozen=True)
class NewSecret:
    public_id: str  # stored in clear: finds the row
    value: str  # the whole secret, to show once
    digest: str  # what is stored


@dataclass(frozen=True)
class SecretKind:
    """One kind of stored secret, named by its prefix (``lla``, ``llo``)."""

    prefix: str

    def issue(self) -> NewSecret:
        public_id = secrets.token_hex(6)
        value = f"{self.prefix}_{public_id}_{secrets.token_urlsafe(32)}"
        return NewSecret(public_id=public_id, value=value, digest=digest(value))

    def owns(self, value: str) -> bool:
        """Shaped like this kind (not whether it is valid)."""
        return value.startswith(f"{self.prefix}_")

    def public_id(self, value: str) -> str | None:
        """The public id of a value of this kind; None when it is not one."""
        parts = value.split("_", 2)
        if len(parts) != 3 or parts[0] != self.prefix:
            return None
        return parts[1]

    @staticmethod
    def matches(stored_digest: str | None, value: str) -> bool:
        """Whether ``value`` hashes to ``stored_digest`` (None: no row was found —
        compared anyway, so a missing row costs the same time)."""
        return hmac.compare_digest(stored_digest or _NO_HASH, digest(value)) and stored_digest is not None


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hmac_sha256(key: str, message: bytes) -> str:
    """The hex HMAC-SHA256 of ``message`` under ``key`` (webhook signatures)."""
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def random_secret(prefix: str) -> str:
    """A new secret kept to be used again (not only compared): ``<prefix>_<random>``."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def bearer(header: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``; None when the
    header is absent, of another scheme, or empty."""
    scheme, _, credential = (header or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def sign(purpose: str, claims: dict[str, Any]) -> str:
    """A signed token carrying ``claims``; only characters allowed in a WebSocket
    subprotocol (browsers send stream tokens as one)."""
    return signing.TimestampSigner(salt=f"llmagentos.{purpose}", sep=".").sign_object(claims)


def unsign(purpose: str, token: str, max_age_seconds: float) -> dict[str, Any] | None:
    """The claims of a token signed for ``purpose`` no longer ago than ``max_age_seconds``; else None."""
    try:
        claims = signing.TimestampSigner(salt=f"llmagentos.{purpose}", sep=".").unsign_object(
            token, max_age=max_age_seconds
        )
    except (signing.BadSignature, ValueError):
        return None
    return claims if isinstance(claims, dict) else None
