"""What an endpoint's receiver demands besides the signature: ``auth``, ``tls``, ``v1a`` keys.

``auth`` is ``{"type": "basic", "username", "password"}`` or ``{"type":
"oauth2_client_credentials", "token_url", "client_id", "client_secret", "scope"?,
"audience"?, "client_auth": "basic"|"body"}``; ``tls`` is ``{"client_cert", "client_key",
"ca_cert"?}`` (PEM). The ``password``, ``client_secret`` and ``client_key`` are secrets:
stored sealed (:mod:`~webhook_stream.subscriptions.secrets`), read back as ``****``; sent
back as ``****`` (a PATCH, the console) they keep the current value (:func:`keep_masked`).

:func:`receiver_fields` validates these fields and ``signature_scheme``/``signing_key``/
``previous_signing_keys`` for :mod:`~webhook_stream.subscriptions.validation`. Error messages
never echo a value.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.http.urls import CONTROL, validate_url
from webhook_stream.subscriptions.secrets import MASK
from webhook_stream.subscriptions.signing_keys import (
    SCHEMES,
    generate_signing_key,
    validate_signing_key,
)

__all__ = [
    "RECEIVER_FIELDS",
    "BasicAuth",
    "ClientTls",
    "OAuth2ClientCredentials",
    "ReceiverAuth",
    "keep_masked",
    "receiver_fields",
    "refuse_auth_left_behind",
]

RECEIVER_FIELDS = frozenset(
    {"signature_scheme", "signing_key", "previous_signing_keys", "public_key", "auth", "tls"}
)
MAX_PREVIOUS_SIGNING_KEYS = 10
_MAX_PEM = 65536
_CLIENT_AUTHS = ("basic", "body")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP Basic credentials sent with every attempt."""

    username: str
    password: str = field(repr=False)
    #: The ``Authorization`` value, made once (sent with every attempt).
    header: str = field(init=False, repr=False, compare=False)

    type = "basic"

    def __post_init__(self) -> None:
        pair = f"{self.username}:{self.password}".encode()
        object.__setattr__(self, "header", "Basic " + base64.b64encode(pair).decode("ascii"))

    def to_dict(self, include_secrets: bool) -> dict[str, Any]:
        password = self.password if include_secrets else MASK
        return {"type": self.type, "username": self.username, "password": password}


@dataclass(frozen=True, slots=True)
class OAuth2ClientCredentials:
    """OAuth2 client credentials grant: the worker fetches and caches a bearer token."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None
    client_auth: str = "basic"
    #: Changes with any field (the secret too): a cached token belongs to one config.
    fingerprint: str = field(init=False, repr=False, compare=False)

    type = "oauth2_client_credentials"

    def __post_init__(self) -> None:
        parts = (self.token_url, self.client_id, self.client_secret, self.scope, self.audience)
        text = "\x00".join(p or "" for p in (*parts, self.client_auth))
        object.__setattr__(self, "fingerprint", hashlib.sha256(text.encode()).hexdigest()[:32])

    def to_dict(self, include_secrets: bool) -> dict[str, Any]:
        return {
            "type": self.type,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret if include_secrets else MASK,
            "scope": self.scope,
            "audience": self.audience,
            "client_auth": self.client_auth,
        }


ReceiverAuth = BasicAuth | OAuth2ClientCredentials


@dataclass(frozen=True, slots=True)
class ClientTls:
    """A client certificate (mutual TLS) and, optionally, the CAs to trust for this endpoint."""

    client_cert: str
    client_key: str = field(repr=False)
    ca_cert: str | None = None
    #: Connections are pooled per (host, identity): never shared between identities.
    identity: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = "\x00".join((self.client_cert, self.client_key, self.ca_cert or ""))
        object.__setattr__(self, "identity", hashlib.sha256(text.encode()).hexdigest()[:32])

    def to_dict(self, include_secrets: bool) -> dict[str, Any]:
        return {
            "client_cert": self.client_cert,
            "client_key": self.client_key if include_secrets else MASK,
            "ca_cert": self.ca_cert,
        }


def receiver_fields(data: Mapping[str, Any], allow_insecure: bool) -> dict[str, Any]:
    """The validated receiver fields of ``data`` as :class:`Subscription` keyword arguments.

    An ed25519 key is generated when the scheme needs one and none is given.
    """
    scheme = data.get("signature_scheme")
    if scheme is None:
        scheme = "hmac-sha256"
    elif scheme not in SCHEMES:
        raise InvalidSubscription("signature_scheme", "must be 'hmac-sha256', 'ed25519' or 'both'")
    key = data.get("signing_key")
    if key is not None:
        key = validate_signing_key(key, "signing_key")
    elif scheme != "hmac-sha256":
        key = generate_signing_key()
    return {
        "signature_scheme": scheme,
        "signing_key": key,
        "previous_signing_keys": _previous_keys(data.get("previous_signing_keys")),
        "auth": _auth(data.get("auth"), allow_insecure),
        "tls": _tls(data.get("tls")),
    }


def refuse_auth_left_behind(moved: bool, current: Mapping[str, Any], changes: Mapping) -> None:
    """A PATCH moving the endpoint to another origin (``moved``) must give ``auth`` again:
    like header values, a password or a token never follows the URL to another host."""
    if moved and current.get("auth") is not None and "auth" not in changes:
        raise InvalidSubscription(
            "auth", "the URL moves to another host: give auth again (null drops it)"
        )


def keep_masked(sent: Mapping[str, Any], current: Mapping[str, Any], moved: bool) -> dict:
    """``sent`` (a PATCH body) with ``****`` in ``auth``/``tls`` replaced by the current
    secret. Not when the URL moves to another origin (``moved``) or the token URL changes:
    the secret must then be given again, so it never follows to a host it was not meant for.
    """
    out = dict(sent)
    for name, secret_fields in (("auth", ("password", "client_secret")), ("tls", ("client_key",))):
        new, now = out.get(name), current.get(name)
        if not isinstance(new, Mapping) or not isinstance(now, Mapping):
            continue
        new = dict(new)
        same_type = name == "tls" or new.get("type") == now.get("type")
        same_token_url = new.get("token_url") == now.get("token_url")
        for secret in secret_fields:
            if new.get(secret) == MASK and same_type and same_token_url and not moved:
                new[secret] = now.get(secret)
        out[name] = new
    return out


def _text(value: object, f: str, max_len: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(f, "must be a non-empty string")
    if len(value) > max_len:
        raise InvalidSubscription(f, f"must be at most {max_len} characters")
    if CONTROL.search(value):
        raise InvalidSubscription(f, "must not contain control characters")
    return value


def _secret(value: object, f: str, max_len: int) -> str:
    # Never echoed: the value is a credential.
    text = _text(value, f, max_len)
    assert text is not None
    if text.startswith(MASK):
        raise InvalidSubscription(
            f, "looks like a masked value ('****'); send the real value to set it"
        )
    return text


def _only(value: Mapping[str, Any], f: str, allowed: tuple[str, ...]) -> None:
    for name in value:
        if name not in allowed:
            raise InvalidSubscription(f"{f}.{CONTROL.sub('?', str(name))[:64]}", "unknown field")


def _auth(value: object, allow_insecure: bool) -> ReceiverAuth | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidSubscription("auth", "must be an object with a 'type'")
    kind = value.get("type")
    if kind == "basic":
        _only(value, "auth", ("type", "username", "password"))
        username = _text(value.get("username"), "auth.username", 256)
        assert username is not None
        if ":" in username:
            raise InvalidSubscription("auth.username", "must not contain ':'")
        return BasicAuth(username, _secret(value.get("password"), "auth.password", 1024))
    if kind == "oauth2_client_credentials":
        fields = ("type", "token_url", "client_id", "client_secret", "scope", "audience")
        _only(value, "auth", (*fields, "client_auth"))
        try:
            token_url = validate_url(value.get("token_url"), allow_insecure)
        except InvalidSubscription as exc:
            raise InvalidSubscription("auth.token_url", exc.message) from None
        client_auth = value.get("client_auth") or "basic"
        if client_auth not in _CLIENT_AUTHS:
            raise InvalidSubscription("auth.client_auth", "must be 'basic' or 'body'")
        client_id = _text(value.get("client_id"), "auth.client_id", 256)
        assert client_id is not None
        return OAuth2ClientCredentials(
            token_url=token_url,
            client_id=client_id,
            client_secret=_secret(value.get("client_secret"), "auth.client_secret", 1024),
            scope=_text(value.get("scope"), "auth.scope", 1024, required=False),
            audience=_text(value.get("audience"), "auth.audience", 2048, required=False),
            client_auth=str(client_auth),
        )
    raise InvalidSubscription("auth.type", "must be 'basic' or 'oauth2_client_credentials'")


def _pem(value: object, f: str) -> str:
    if not isinstance(value, str) or "-----BEGIN " not in value:
        raise InvalidSubscription(f, "must be PEM text")
    if len(value) > _MAX_PEM:
        raise InvalidSubscription(f, f"must be at most {_MAX_PEM} characters")
    return value


def _certs(value: object, f: str) -> tuple[str, list[x509.Certificate]]:
    text = _pem(value, f)
    try:
        return text, x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeError, UnsupportedAlgorithm):
        raise InvalidSubscription(f, "must hold PEM certificates") from None


def _tls(value: object) -> ClientTls | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidSubscription("tls", "must be an object {client_cert, client_key, ca_cert?}")
    _only(value, "tls", ("client_cert", "client_key", "ca_cert"))
    cert_text, chain = _certs(value.get("client_cert"), "tls.client_cert")
    f = "tls.client_key"
    if isinstance(value.get("client_key"), str) and value["client_key"].startswith(MASK):
        raise InvalidSubscription(f, "looks like a masked value ('****'); send the PEM key")
    key_text = _pem(value.get("client_key"), f)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        key = serialization.load_pem_private_key(key_text.encode("ascii"), password=None)
        mine = key.public_key().public_bytes(der, public)
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm):
        # Never echo the key: an encrypted key or not a key at all.
        raise InvalidSubscription(f, "must be an unencrypted PEM private key") from None
    try:
        theirs = chain[0].public_key().public_bytes(der, public)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidSubscription("tls.client_cert", "has a key of an unsupported type") from None
    if mine != theirs:
        raise InvalidSubscription(f, "does not belong to the first certificate of client_cert")
    ca = value.get("ca_cert")
    ca_text = None if ca is None else _certs(ca, "tls.ca_cert")[0]
    return ClientTls(cert_text, key_text, ca_text)


def _timestamp(value: object, f: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise InvalidSubscription(f, "must be an ISO-8601 timestamp")


def _previous_keys(value: object) -> tuple[tuple[str, float], ...]:
    f = "previous_signing_keys"
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or len(value) > MAX_PREVIOUS_SIGNING_KEYS:
        raise InvalidSubscription(f, f"must be a list of at most {MAX_PREVIOUS_SIGNING_KEYS}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidSubscription(f"{f}[{i}]", "must be an object {key, expires_at}")
        _only(item, f"{f}[{i}]", ("key", "expires_at"))
        key = validate_signing_key(item.get("key"), f"{f}[{i}].key")
        out.append((key, _timestamp(item.get("expires_at"), f"{f}[{i}].expires_at")))
    return tuple(out)
