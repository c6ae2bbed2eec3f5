"""OAuth2 client credentials toward a receiver: the token request and its cache, as pure parts.

:func:`token_request` builds the form POST (RFC 6749 section 4.4; the client authenticates with
HTTP Basic or in the body, ``client_auth``); :func:`read_token` reads the answer;
:class:`TokenCache` keeps one token per (endpoint, auth config) until shortly before it
expires. The I/O is :class:`~webhook_stream.delivery.credentials.ReceiverCredentials`'.
Tokens and client secrets are never logged nor put in an error message.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import orjson

from webhook_stream.subscriptions.receiver_auth import OAuth2ClientCredentials

__all__ = ["Token", "TokenCache", "read_token", "token_request"]

#: A token without ``expires_in`` is kept this long (and refreshed on a 401 anyway).
DEFAULT_LIFETIME_S = 300.0
#: Refreshed this much before it expires: at most 30 s, at most a tenth of its lifetime.
MAX_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the (monotonic) time after which it is not used any more."""

    value: str = field(repr=False)
    use_until: float


def token_request(auth: OAuth2ClientCredentials) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the token POST."""
    form = {"grant_type": "client_credentials"}
    if auth.scope:
        form["scope"] = auth.scope
    if auth.audience:
        form["audience"] = auth.audience
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "accept": "application/json",
    }
    if auth.client_auth == "body":
        form["client_id"] = auth.client_id
        form["client_secret"] = auth.client_secret
    else:
        # RFC 6749 2.3.1: both form-urlencoded before the Basic encoding.
        pair = f"{quote(auth.client_id, safe='')}:{quote(auth.client_secret, safe='')}"
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return urlencode(form).encode("ascii"), headers


def read_token(status: int | None, body: bytes, now: float) -> Token | None:
    """The token of a successful answer, or None (any failure: ``auth_failed``)."""
    if status is None or not 200 <= status < 300:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    value = doc.get("access_token")
    kind = doc.get("token_type", "bearer")
    if not isinstance(value, str) or not value or not isinstance(kind, str):
        return None
    if kind.lower() != "bearer" or any(ch in value for ch in "\r\n"):
        return None
    lifetime = doc.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME_S
    margin = min(MAX_MARGIN_S, lifetime / 10)
    return Token(value, now + lifetime - margin)


class TokenCache:
    """One token per key (endpoint id, auth fingerprint), bounded."""

    __slots__ = ("_limit", "_tokens")

    def __init__(self, limit: int = 10_000) -> None:
        self._tokens: dict[tuple[str, str], Token] = {}
        self._limit = limit

    def get(self, key: tuple[str, str], now: float) -> Token | None:
        token = self._tokens.get(key)
        if token is not None and token.use_until <= now:
            del self._tokens[key]
            return None
        return token

    def put(self, key: tuple[str, str], token: Token) -> None:
        if len(self._tokens) >= self._limit:
            self._tokens.clear()
        self._tokens[key] = token

    def drop(self, key: tuple[str, str], token: Token) -> None:
        """Forget ``token`` (refused by the receiver) unless another already replaced it."""
        if self._tokens.get(key) is token:
            del self._tokens[key]
