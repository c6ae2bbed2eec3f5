"""The records of decided subscription writes: requests, results, and their sealing.

A :class:`WriteRequest` goes on ``webhooks.subscription_requests`` (key: endpoint id) and
a :class:`WriteResult` comes back on ``webhooks.subscription_results`` (key: request id);
:mod:`.writes` decides and waits. Neither carries a secret in clear: a request's body may
hold a signing secret (create, rotate) and header values (create, patch), so on the topic
those are sealed (:func:`seal_body`) with :func:`request_box`, and a result carries none.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from webhook_stream.core.errors import WriteRefused
from webhook_stream.core.sealing import SecretBox, SecretKeyError
from webhook_stream.core.settings import Settings
from webhook_stream.subscriptions.secrets import (
    SECRET_FIELDS,
    open_subscription_secrets,
    seal_subscription_secrets,
)

__all__ = ["OPS", "WriteRequest", "WriteResult", "open_body", "request_box", "seal_body"]

OPS = ("create", "patch", "delete", "rotate", "disable")

_HKDF_INFO = b"webhook-stream subscription write requests v1"


def request_box(settings: Settings) -> SecretBox | None:
    """The box that seals a request's secrets: ``WEBHOOK_STREAM_SECRET_KEY``'s, as on
    ``webhooks.subscriptions``; without one, a key derived (HKDF-SHA256) from the admin
    API token, which every worker of a deployment shares. None without either: then no
    request can carry a secret (the API, the only source of such requests, is off)."""
    box = SecretBox.from_setting(settings.secret_key)
    if box is not None or not settings.api_token:
        return box
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        str(settings.api_token).encode("utf-8")
    )
    return SecretBox([base64.urlsafe_b64encode(key).decode("ascii")])


def _carries_secrets(body: dict[str, Any]) -> bool:
    return any(body.get(name) for name in SECRET_FIELDS)


def seal_body(body: dict[str, Any] | None, box: SecretBox | None) -> dict[str, Any] | None:
    """``body`` with its secret, previous secrets and header values sealed for the topic."""
    if body is None or not _carries_secrets(body):
        return body
    if box is None:
        raise WriteRefused(503, "no key to seal the write with: set WEBHOOK_STREAM_SECRET_KEY")
    try:
        return seal_subscription_secrets(body, box)
    except (SecretKeyError, ValueError):
        # A value that looks sealed (enc:v1:...) but is not ours: never stored.
        raise WriteRefused(400, "a value looks sealed ('enc:v1:...'); send it in clear") from None


def open_body(body: dict[str, Any] | None, box: SecretBox | None) -> dict[str, Any] | None:
    """The inverse of :func:`seal_body`, on the deciding worker."""
    if body is None or not _carries_secrets(body):
        return body
    try:
        return open_subscription_secrets(body, box)
    except SecretKeyError:
        raise WriteRefused(
            503,
            "the write's sealed values cannot be opened here: the workers disagree on "
            "WEBHOOK_STREAM_SECRET_KEY / WEBHOOK_STREAM_API_TOKEN",
        ) from None


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write to decide. ``body``: create, the subscription with its secrets; patch,
    the changes; rotate, ``{"grace_s", "secret"}``; disable, ``{"reason",
    "consecutive_failures", "first_failure_at"}``. ``tenant``: the asking token's tenant
    (None: the admin, or the worker itself): a tenant may only write its own endpoints."""

    endpoint_id: str
    op: str
    if_version: int | None = None
    body: dict[str, Any] | None = None
    request_id: str = ""
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not self.request_id:
            object.__setattr__(self, "request_id", "req_" + secrets.token_hex(12))

    def encode(self, box: SecretBox | None) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "endpoint_id": self.endpoint_id,
                "op": self.op,
                "if_version": self.if_version,
                "tenant": self.tenant,
                "body": seal_body(self.body, box),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> WriteRequest:
        """The request as on the topic: its body still sealed (:func:`open_body`)."""
        d = orjson.loads(raw)
        if d.get("op") not in OPS or not isinstance(d.get("endpoint_id"), str):
            raise ValueError("not a subscription write request")
        body = d.get("body")
        if body is not None and not isinstance(body, dict):
            raise ValueError("the body of a write request must be an object")
        return cls(
            d["endpoint_id"], d["op"], d.get("if_version"), body, d["request_id"], d.get("tenant")
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The owner's decision, with the HTTP status it maps to (200, 201, 400, 403, 404,
    409, 412, 503) and, for a write, where the new record landed (read your writes)."""

    request_id: str
    status: int
    message: str = ""
    field: str | None = None
    version: int | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.status < 300

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "status": self.status,
                "message": self.message,
                "field": self.field,
                "version": self.version,
                "partition": self.partition,
                "offset": self.offset,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> WriteResult:
        d = orjson.loads(raw)
        return cls(
            d["request_id"],
            d["status"],
            d.get("message", ""),
            d.get("field"),
            d.get("version"),
            d.get("partition"),
            d.get("offset"),
        )
