"""Standard Webhooks signatures: signing (sender) and :func:`verify` (receiver).

Dependency-free for HMAC so receivers can copy it. The signed content is
``"<webhook-id>.<webhook-timestamp>.<body>"``; the signature header carries one
``v1,<base64 HMAC-SHA256>`` per valid secret and, for an endpoint whose
``signature_scheme`` is ``ed25519`` or ``both``, one ``v1a,<base64 ed25519 signature>`` per
valid private key, space-separated (rotation). ed25519 (signing, and :func:`verify` given a
``whpk_`` public key) needs the ``cryptography`` package, imported only then.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any

from webhook_stream.core.errors import WebhookStreamError

__all__ = [
    "PUBLIC_KEY_PREFIX",
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "decode_secret",
    "sign",
    "sign_v1a",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
PUBLIC_KEY_PREFIX = "whpk_"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(WebhookStreamError):
    """A received webhook failed verification (bad signature, stale timestamp, missing header)."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    body = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise WebhookVerificationError("secret is not valid base64") from None


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What both schemes sign: ``<webhook-id>.<webhook-timestamp>.<body>``."""
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body``, one ``v1,`` entry per key."""
    content = _signed_content(msg_id, timestamp, body)
    # hmac.digest: one call into OpenSSL, no HMAC object per request.
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, content, "sha256")).decode() for key in keys
    )


def sign_v1a(keys: Iterable[Any], msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1a,`` entries (space-separated) for ``body``, one per ed25519 private key object
    (:class:`~cryptography.hazmat.primitives.asymmetric.ed25519.Ed25519PrivateKey`)."""
    content = _signed_content(msg_id, timestamp, body)
    return " ".join("v1a," + base64.b64encode(key.sign(content)).decode() for key in keys)


def _verify_v1a(public_key: str, signatures: str, content: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(public_key[len(PUBLIC_KEY_PREFIX) :], validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise WebhookVerificationError("public key is not 'whpk_' + base64 of 32 bytes") from None
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value, validate=True), content)
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`WebhookVerificationError` if it is not genuine.

    ``secret`` is the endpoint's ``whsec_`` secret (checks ``v1`` signatures) or its
    ``whpk_`` public key (checks ``v1a`` ed25519 signatures). Usage::

        from webhook_stream import verify
        verify("whsec_...", request.headers, await request.body())  # raises on failure
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        ts_text = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise WebhookVerificationError("invalid webhook-timestamp") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > current + tolerance_s:
        raise WebhookVerificationError("message timestamp too new")
    if secret.startswith(PUBLIC_KEY_PREFIX):
        if _verify_v1a(secret, signatures, _signed_content(msg_id, timestamp, body)):
            return
        raise WebhookVerificationError("no matching signature")
    expected = sign([decode_secret(secret)], msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookVerificationError("no matching signature")
