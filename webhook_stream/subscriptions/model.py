"""The subscription (endpoint) model: what one endpoint is, its stored form and its secrets.

Built only by :mod:`~webhook_stream.subscriptions.validation`, which is the single gate
for input from the API and from ``webhooks.subscriptions``; the constructor trusts its input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.records import to_iso
from webhook_stream.core.settings import format_duration, parse_duration
from webhook_stream.subscriptions.filters import Filter
from webhook_stream.subscriptions.receiver_auth import ClientTls, ReceiverAuth
from webhook_stream.subscriptions.secrets import mask_header
from webhook_stream.subscriptions.signing_keys import (
    generate_signing_key,
    public_key_of,
    validate_signing_key,
)

__all__ = [
    "MAX_PREVIOUS_SECRETS",
    "SECRET_PREFIX",
    "Subscription",
    "generate_secret",
    "new_incarnation",
    "validate_secret",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_PREVIOUS_SECRETS = 10


def new_incarnation() -> str:
    """A fresh incarnation id for an endpoint being created."""
    return "inc_" + secrets.token_hex(8)


def generate_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def validate_secret(value: object, f: str) -> str:
    # Never echo the value: this message reaches API responses and logs.
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        raise InvalidSubscription(f, "must be 'whsec_' followed by base64")
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubscription(f, "must be 'whsec_' followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidSubscription(f, "must decode to 24-64 bytes")
    return value


@functools.lru_cache(maxsize=8192)
def _secret_key(secret: str) -> bytes:
    # Once per secret, not per delivery (a base64 decode was 1.5 % of the delivery loop).
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def _duration_text(seconds: float) -> str:
    text = format_duration(seconds)
    # format_duration rounds (``%g``); fall back to the exact value so the stored form
    # reads back to the same schedule.
    return text if parse_duration(text) == seconds else f"{seconds!r}s"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One endpoint. Build it with :func:`parse_subscription`; the constructor trusts its input."""

    id: str
    url: str
    event_types: tuple[str, ...]
    secret: str = field(repr=False)
    tenant_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    disabled: bool = False
    description: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    retry_schedule: tuple[float, ...] | None = None
    retry_status_codes: frozenset[int] = frozenset()
    rate_limit_per_s: float | None = None
    max_in_flight: int = 1
    #: ``strict``: no delivery is attempted while an earlier one is unfinished (FIFO
    #: across retries, ``max_in_flight`` 1); ``best_effort``: order holds while attempts succeed.
    ordering: str = "best_effort"
    #: ``(secret, expires_at unix seconds)``: rotated-out secrets still signing until expiry.
    previous_secrets: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    created_at: str | None = None
    updated_at: str | None = None
    #: Bumped by every write through the worker (API, auto-disable): the ETag and the
    #: compare-and-set token (:mod:`~webhook_stream.subscriptions.writes`).
    version: int = 0
    #: Set when the endpoint is created (``inc_`` + random): a deleted id created again is
    #: another incarnation, and its history (status, attempts, stats) starts empty.
    incarnation: str | None = None
    #: Content filter (:mod:`~webhook_stream.subscriptions.filters`), compiled once per
    #: version: tried only on events whose type and tenant match.
    filter: Filter | None = None
    #: ``hmac-sha256`` (``v1``), ``ed25519`` (``v1a``) or ``both``.
    signature_scheme: str = "hmac-sha256"
    #: The ed25519 private key (``whsk_``); its ``whpk_`` public key is what reads show.
    signing_key: str | None = field(default=None, repr=False)
    previous_signing_keys: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    auth: ReceiverAuth | None = field(default=None, repr=False)
    tls: ClientTls | None = field(default=None, repr=False)

    def to_dict(self, include_secrets: bool) -> dict[str, Any]:
        """JSON-ready form. With secrets: the stored form; without: what API reads show
        (no signing secret, header values masked)."""
        out: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "tenant_id": self.tenant_id,
        }
        if self.filter is None:
            out["filter"] = None
        else:  # the stored form holds JSON text (the Avro schema cannot hold any object)
            out["filter"] = self.filter.text() if include_secrets else self.filter.spec
        if include_secrets:
            out["secret"] = self.secret
        out.update(
            headers=dict(self.headers) if include_secrets else self.masked_headers(),
            disabled=self.disabled,
            description=self.description,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            retry_schedule=(
                None
                if self.retry_schedule is None
                else [_duration_text(step) for step in self.retry_schedule]
            ),
            retry_status_codes=sorted(self.retry_status_codes),
            rate_limit_per_s=self.rate_limit_per_s,
            max_in_flight=self.max_in_flight,
            ordering=self.ordering,
        )
        if include_secrets:
            out["previous_secrets"] = [
                {"secret": secret, "expires_at": to_iso(expires_at)}
                for secret, expires_at in self.previous_secrets
            ]
        out.update(self._receiver_dict(include_secrets))
        out["created_at"] = self.created_at
        out["updated_at"] = self.updated_at
        out["version"] = self.version
        out["incarnation"] = self.incarnation
        return out

    def _receiver_dict(self, include_secrets: bool) -> dict[str, Any]:
        auth = None if self.auth is None else self.auth.to_dict(include_secrets)
        tls = None if self.tls is None else self.tls.to_dict(include_secrets)
        if not include_secrets:
            return {
                "signature_scheme": self.signature_scheme,
                "public_key": self.public_key,
                "auth": auth,
                "tls": tls,
            }
        # The stored form names these only when set: an endpoint without them is stored
        # as before they existed (workers of an earlier version read it unchanged).
        out: dict[str, Any] = {}
        if self.signature_scheme != "hmac-sha256":
            out["signature_scheme"] = self.signature_scheme
        if self.signing_key is not None:
            out["signing_key"] = self.signing_key
        if self.previous_signing_keys:
            out["previous_signing_keys"] = [
                {"key": key, "expires_at": to_iso(expires_at)}
                for key, expires_at in self.previous_signing_keys
            ]
        if auth is not None:
            out["auth"] = auth
        if tls is not None:
            out["tls"] = tls
        return out

    def masked_headers(self) -> dict[str, str]:
        """Header values as API reads show them: ``****`` and at most the last 4 characters."""
        return {name: mask_header(value) for name, value in self.headers}

    @property
    def strict(self) -> bool:
        return self.ordering == "strict"

    @property
    def lane_width(self) -> int:
        """Attempts of this endpoint run at once: one for a strict endpoint."""
        return 1 if self.ordering == "strict" else self.max_in_flight

    def signing_keys(self, now: float) -> list[bytes]:
        """HMAC keys to sign with: the current secret first, then unexpired previous ones."""
        keys = [_secret_key(self.secret)]
        if self.previous_secrets:
            keys.extend(
                _secret_key(s) for s, expires_at in self.previous_secrets if expires_at > now
            )
        return keys

    @property
    def public_key(self) -> str | None:
        """``whpk_`` + base64 of the ed25519 public key receivers verify ``v1a`` with."""
        return None if self.signing_key is None else public_key_of(self.signing_key)

    def ed25519_keys(self, now: float) -> list[str]:
        """``whsk_`` keys to sign ``v1a`` with (current first); none under ``hmac-sha256``."""
        if self.signature_scheme == "hmac-sha256" or self.signing_key is None:
            return []
        keys = [self.signing_key]
        keys.extend(k for k, expires_at in self.previous_signing_keys if expires_at > now)
        return keys

    def rotate_secret(
        self,
        *,
        now: float,
        grace_s: float,
        new_secret: str | None = None,
        new_signing_key: str | None = None,
    ) -> Subscription:
        """A copy with a new secret (and a new ed25519 key when the scheme signs ``v1a``);
        the current ones keep signing for ``grace_s`` seconds."""
        secret = generate_secret() if new_secret is None else validate_secret(new_secret, "secret")
        previous = [(self.secret, now + grace_s), *self.previous_secrets]
        kept = tuple((s, exp) for s, exp in previous if exp > now)[:MAX_PREVIOUS_SECRETS]
        rotated = replace(self, secret=secret, previous_secrets=kept)
        if self.signature_scheme == "hmac-sha256" or self.signing_key is None:
            return rotated
        key = (
            generate_signing_key()
            if new_signing_key is None
            else validate_signing_key(new_signing_key, "signing_key")
        )
        old = [(self.signing_key, now + grace_s), *self.previous_signing_keys]
        old_kept = tuple((k, exp) for k, exp in old if exp > now)[:MAX_PREVIOUS_SECRETS]
        return replace(rotated, signing_key=key, previous_signing_keys=old_kept)
