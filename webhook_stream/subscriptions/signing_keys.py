"""ed25519 signing keys of an endpoint (Standard Webhooks ``v1a``): make, check, derive.

The private key is ``whsk_`` + base64 of its 32-byte seed (stored sealed, never shown); the
public key a receiver verifies with is ``whpk_`` + base64 of its 32 raw bytes, derived from
it (never stored, always shown). Loaded keys are cached: signing is on the hot path.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from webhook_stream.core.errors import InvalidSubscription

__all__ = [
    "PRIVATE_PREFIX",
    "PUBLIC_PREFIX",
    "SCHEMES",
    "generate_signing_key",
    "private_key",
    "public_key_of",
    "validate_signing_key",
]

PRIVATE_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"
#: ``signature_scheme`` values: HMAC ``v1`` (the default), ed25519 ``v1a``, or both.
SCHEMES = ("hmac-sha256", "ed25519", "both")


def generate_signing_key() -> str:
    """A fresh private key: ``whsk_`` + base64 of a random 32-byte seed."""
    return PRIVATE_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def validate_signing_key(value: object, f: str) -> str:
    # Never echo the value: this message reaches API responses and logs.
    rule = "must be 'whsk_' followed by base64 of 32 bytes"
    if not isinstance(value, str) or not value.startswith(PRIVATE_PREFIX):
        raise InvalidSubscription(f, rule)
    try:
        seed = base64.b64decode(value[len(PRIVATE_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubscription(f, rule) from None
    if len(seed) != 32:
        raise InvalidSubscription(f, rule)
    return value


@lru_cache(maxsize=4096)
def private_key(value: str) -> Ed25519PrivateKey:
    """The loaded key of a (validated) ``whsk_`` value."""
    seed = base64.b64decode(value[len(PRIVATE_PREFIX) :])
    return Ed25519PrivateKey.from_private_bytes(seed)


@lru_cache(maxsize=4096)
def public_key_of(value: str) -> str:
    """``whpk_`` + base64 of the raw public key of a ``whsk_`` value."""
    raw = private_key(value).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode("ascii")
