"""What an attempt carries besides the body: signatures, receiver credentials, client TLS.

:func:`signature` is the ``webhook-signature`` header of an endpoint's scheme (``v1`` HMAC,
``v1a`` ed25519, or both). :class:`ReceiverCredentials` sends an attempt with the
endpoint's ``auth`` (Basic, or an OAuth2 bearer token fetched, cached and refreshed once on
a 401) and ``tls`` client certificate. A token endpoint that fails makes the attempt fail
with ``auth_failed`` (retried like any transport failure). The token request goes through
the same client as deliveries: the same SSRF rules and egress proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from webhook_stream.delivery.oauth2 import Token, TokenCache, read_token, token_request
from webhook_stream.delivery.signing import sign, sign_v1a
from webhook_stream.http.client import HttpResult
from webhook_stream.http.egress import Egress
from webhook_stream.http.errors import TransportError
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.receiver_auth import BasicAuth, OAuth2ClientCredentials
from webhook_stream.subscriptions.signing_keys import private_key

__all__ = ["AUTH_FAILED", "ReceiverCredentials", "signature"]

AUTH_FAILED = TransportError.AUTH_FAILED
#: Most bytes of a token response read (a JWT with many claims fits).
TOKEN_BODY_MAX = 65536


def signature(sub: Subscription, msg_id: str, timestamp: int, body: bytes, now: float) -> str:
    """The ``webhook-signature`` value: ``v1`` entries, ``v1a`` entries, or both."""
    parts = []
    if sub.signature_scheme != "ed25519":
        parts.append(sign(sub.signing_keys(now), msg_id, timestamp, body))
    keys = sub.ed25519_keys(now)
    if keys:
        parts.append(sign_v1a([private_key(k) for k in keys], msg_id, timestamp, body))
    return " ".join(parts)


class ReceiverCredentials:
    """Sends attempts with the endpoint's credentials; one per worker (its token cache)."""

    def __init__(self, http: Egress) -> None:
        self._http = http
        self._tokens = TokenCache()
        self._fetching: dict[tuple[str, str], asyncio.Lock] = {}

    async def post(
        self,
        sub: Subscription,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
        before_send: Callable[[], None] | None = None,
    ) -> HttpResult:
        auth = sub.auth
        if isinstance(auth, BasicAuth):
            headers["authorization"] = auth.header
        if not isinstance(auth, OAuth2ClientCredentials):
            return await self._http.post(url, body, headers, timeout, before_send, tls=sub.tls)
        started = time.perf_counter()
        key = (sub.id, auth.fingerprint)
        token = await self._token(key, auth, timeout)
        if token is None:
            return HttpResult(None, b"", AUTH_FAILED, None, time.perf_counter() - started)
        headers["authorization"] = "Bearer " + token.value
        result = await self._http.post(url, body, headers, timeout, before_send, tls=sub.tls)
        if result.status != 401:
            return result
        # Revoked or expired early: one fresh token, one more try.
        self._tokens.drop(key, token)
        token = await self._token(key, auth, timeout)
        if token is None:
            return HttpResult(None, b"", AUTH_FAILED, None, time.perf_counter() - started)
        headers["authorization"] = "Bearer " + token.value
        return await self._http.post(url, body, headers, timeout, before_send, tls=sub.tls)

    async def _token(
        self, key: tuple[str, str], auth: OAuth2ClientCredentials, timeout: float
    ) -> Token | None:
        token = self._tokens.get(key, time.monotonic())
        if token is not None:
            return token
        # One fetch per endpoint at a time: the lanes waiting share its token.
        if len(self._fetching) >= 10_000:
            self._fetching.clear()
        lock = self._fetching.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key, time.monotonic())
            if token is None:
                body, headers = token_request(auth)
                answer = await self._http.post(
                    auth.token_url, body, headers, timeout, body_max=TOKEN_BODY_MAX
                )
                token = read_token(answer.status, answer.body, time.monotonic())
                if token is not None:
                    self._tokens.put(key, token)
        return token
