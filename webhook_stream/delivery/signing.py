"""Standard Webhooks signatures: signing (sender) and :func:`verify` (receiver).

Dependency-free so receivers can copy it. The signed content is
``"<webhook-id>.<webhook-timestamp>.<body>"``; the signature header carries one
``v1,<base64 HMAC-SHA256>`` per valid secret, space-separated (secret rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

from webhook_stream.core.errors import WebhookStreamError

__all__ = ["SECRET_PREFIX", "WebhookVerificationError", "decode_secret", "sign", "verify"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
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


def sign(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body``, one ``v1,`` entry per key."""
    prefix = f"{msg_id}.{timestamp}.".encode()
    parts = []
    for key in keys:
        mac = hmac.new(key, prefix, hashlib.sha256)
        mac.update(body)
        parts.append("v1," + base64.b64encode(mac.digest()).decode())
    return " ".join(parts)


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`WebhookVerificationError` if it is not genuine.

    Usage::

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
    expected = sign([decode_secret(secret)], msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookVerificationError("no matching signature")
