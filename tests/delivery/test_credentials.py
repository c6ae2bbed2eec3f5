"""Receiver credentials without a broker: the pure OAuth2 parts, the model's validation,
and :class:`ReceiverCredentials` against a real Authlib token endpoint, direct and through
a real forward proxy."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.oauth2_server import TokenServer
from tests.support import ForwardProxy, Receiver, eventually
from tests.tls import make_client_pki
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.sealing import SecretBox
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.credentials import AUTH_FAILED, ReceiverCredentials, signature
from webhook_stream.delivery.oauth2 import TokenCache, read_token, token_request
from webhook_stream.delivery.signing import WebhookVerificationError, verify
from webhook_stream.http.client import HttpClient
from webhook_stream.http.egress import Egress
from webhook_stream.http.proxied import HttpxClient
from webhook_stream.subscriptions.receiver_auth import (
    OAuth2ClientCredentials,
    keep_masked,
    refuse_auth_left_behind,
)
from webhook_stream.subscriptions.secrets import (
    open_subscription_secrets,
    seal_subscription_secrets,
)
from webhook_stream.subscriptions.validation import parse_subscription

BASE: dict[str, Any] = {"id": "ep", "url": "https://hooks.example.com/x", "event_types": ["a"]}
OAUTH2 = {
    "type": "oauth2_client_credentials",
    "token_url": "https://login.example.com/token",
    "client_id": "id with space",
    "client_secret": "s:e/c",
}


def sub(**fields: Any) -> Any:
    return parse_subscription({**BASE, **fields}, allow_insecure=True)


def test_token_request_authenticates_the_client_as_asked() -> None:
    auth = sub(auth=OAUTH2).auth
    body, headers = token_request(auth)
    assert b"grant_type=client_credentials" in body and b"client_secret" not in body
    user, _, password = base64.b64decode(headers["authorization"][6:]).decode().partition(":")
    assert (user, password) == ("id+with+space".replace("+", "%20"), "s%3Ae%2Fc")
    body, headers = token_request(sub(auth={**OAUTH2, "client_auth": "body"}).auth)
    assert b"client_secret=s%3Ae%2Fc" in body and "authorization" not in headers


@pytest.mark.parametrize(
    ("status", "answer", "lifetime"),
    [
        (200, {"access_token": "t", "token_type": "Bearer", "expires_in": 100}, 90.0),
        (200, {"access_token": "t", "token_type": "bearer", "expires_in": 3600}, 3570.0),
        (200, {"access_token": "t"}, 270.0),  # no expires_in: 5 minutes
        (200, {"access_token": "t", "expires_in": "60"}, 54.0),
        (200, {"access_token": "t", "token_type": "mac"}, None),
        (200, {"access_token": "", "token_type": "Bearer"}, None),
        (200, {"access_token": "a\r\nb"}, None),
        (200, ["t"], None),
        (401, {"access_token": "t"}, None),
        (None, {}, None),
    ],
)
def test_a_token_answer_is_read_or_refused(status: Any, answer: Any, lifetime: Any) -> None:
    token = read_token(status, orjson.dumps(answer), now=1000.0)
    if lifetime is None:
        assert token is None
    else:
        assert token is not None and token.use_until == pytest.approx(1000.0 + lifetime)
    assert read_token(200, b"not json", now=0.0) is None


def test_the_cache_forgets_expired_and_refused_tokens_only() -> None:
    cache = TokenCache(limit=2)
    token = read_token(200, b'{"access_token":"t","expires_in":100}', now=0.0)
    assert token is not None
    cache.put(("ep", "f"), token)
    assert cache.get(("ep", "f"), 50.0) is token and cache.get(("ep", "f"), 95.0) is None
    cache.put(("ep", "f"), token)
    other = read_token(200, b'{"access_token":"u","expires_in":100}', now=0.0)
    assert other is not None
    cache.drop(("ep", "f"), other)  # not the cached one: kept
    assert cache.get(("ep", "f"), 1.0) is token
    cache.drop(("ep", "f"), token)
    assert cache.get(("ep", "f"), 1.0) is None


def test_a_config_change_is_another_cache_key() -> None:
    a = sub(auth=OAUTH2).auth
    assert isinstance(a, OAuth2ClientCredentials)
    assert a.fingerprint == sub(auth=OAUTH2).auth.fingerprint
    assert a.fingerprint != sub(auth={**OAUTH2, "client_secret": "other"}).auth.fingerprint
    assert a.fingerprint != sub(auth={**OAUTH2, "scope": "x"}).auth.fingerprint


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "digest"}, "auth.type"),
        ({"type": "basic", "username": "a:b", "password": "p"}, "auth.username"),
        ({"type": "basic", "username": "a", "password": "****"}, "auth.password"),
        ({"type": "basic", "username": "a"}, "auth.password"),
        ({**OAUTH2, "token_url": "https://127.0.0.1/t"}, "auth.token_url"),
        ({**OAUTH2, "client_auth": "jwt"}, "auth.client_auth"),
        ({**OAUTH2, "extra": 1}, "auth.extra"),
        ([], "auth"),
    ],
)
def test_bad_auth_names_the_field_and_never_echoes_a_secret(auth: Any, field: str) -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription({**BASE, "auth": auth}, allow_insecure=False)
    assert refused.value.field == field
    assert "s:e/c" not in str(refused.value)


def test_bad_tls_is_refused_naming_the_field() -> None:
    pki = make_client_pki("t")
    good = pki.endpoint_tls()
    assert sub(tls=good).tls.client_cert == pki.cert
    cases = [
        ({**good, "client_cert": "nope"}, "tls.client_cert"),
        ({**good, "client_key": make_client_pki("u").key}, "tls.client_key"),
        (
            {**good, "client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
            "tls.client_key",
        ),
        ({**good, "client_key": "****"}, "tls.client_key"),
        ({**good, "ca_cert": "-----BEGIN CERTIFICATE-----\nxx"}, "tls.ca_cert"),
        ({"client_cert": pki.cert}, "tls.client_key"),
    ]
    for tls, field in cases:
        with pytest.raises(InvalidSubscription) as refused:
            sub(tls=tls)
        assert refused.value.field == field
        assert pki.key.splitlines()[1] not in str(refused.value)


def test_masks_keep_secrets_unless_the_secret_would_follow_elsewhere() -> None:
    current = sub(auth=OAUTH2, tls=make_client_pki("m").endpoint_tls()).to_dict(True)
    sent = {
        "auth": {**OAUTH2, "client_secret": "****"},
        "tls": {**current["tls"], "client_key": "****"},
    }
    kept = keep_masked(sent, current, moved=False)
    assert kept["auth"]["client_secret"] == "s:e/c"
    assert kept["tls"]["client_key"] == current["tls"]["client_key"]
    assert keep_masked(sent, current, moved=True)["auth"]["client_secret"] == "****"
    moved_token = {"auth": {**sent["auth"], "token_url": "https://evil.example.com/t"}}
    assert keep_masked(moved_token, current, moved=False)["auth"]["client_secret"] == "****"
    basic = {"auth": {"type": "basic", "username": "u", "password": "****"}}
    assert keep_masked(basic, current, moved=False)["auth"]["password"] == "****"


def test_every_receiver_secret_is_sealed_in_the_stored_form() -> None:
    box = SecretBox([SecretBox.generate_key()])
    s = sub(
        auth=OAUTH2, tls=make_client_pki("s").endpoint_tls(), signature_scheme="both"
    ).rotate_secret(now=time.time(), grace_s=60)
    stored = seal_subscription_secrets(s.to_dict(include_secrets=True), box)
    raw = orjson.dumps(stored)
    for needle in (b"s:e/c", b"whsk_", b"PRIVATE KEY"):
        assert needle not in raw
    assert open_subscription_secrets(stored, box) == s.to_dict(include_secrets=True)
    basic = sub(auth={"type": "basic", "username": "u", "password": "pw-123"}).to_dict(True)
    assert b"pw-123" not in orjson.dumps(seal_subscription_secrets(basic, box))


def test_signature_schemes() -> None:
    now = time.time()
    ts = int(now)
    for scheme, versions in (
        ("hmac-sha256", ["v1"]),
        ("ed25519", ["v1a"]),
        ("both", ["v1", "v1a"]),
    ):
        s = sub(signature_scheme=scheme)
        value = signature(s, "msg_1", ts, b"{}", now)
        assert [e.split(",")[0] for e in value.split()] == versions
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": value}
        if s.public_key is not None:
            verify(s.public_key, headers, b"{}")
            with pytest.raises(WebhookVerificationError):
                verify(s.public_key, headers, b"{ }")
            with pytest.raises(WebhookVerificationError):
                verify(sub(signature_scheme="ed25519").public_key, headers, b"{}")
        if scheme != "ed25519":
            verify(s.secret, headers, b"{}")
    with pytest.raises(WebhookVerificationError):
        verify("whpk_notbase64!", headers, b"{}")


@pytest.fixture
async def tokens() -> AsyncIterator[TokenServer]:
    server = await TokenServer("c", "s3", expires_in=600).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForwardProxy]:
    p = await ForwardProxy(tmp_path_factory.mktemp("proxy")).start()
    yield p
    await p.stop()


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "proxied"])
async def test_oauth2_through_each_client(
    proxied: bool, proxy: ForwardProxy, tokens: TokenServer, receiver: Receiver
) -> None:
    env = {"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1"}
    if proxied:
        env["WEBHOOK_STREAM_EGRESS_PROXY"] = proxy.url()
    settings = Settings.from_env(env)
    http: Egress = HttpxClient(settings) if proxied else HttpClient(settings)
    receiver.script["/r"] = lambda got: (
        200 if tokens.valid(got.headers.get("Authorization")) else 401
    )
    auth = {**OAUTH2, "token_url": tokens.url, "client_id": "c", "client_secret": "s3"}
    s = sub(url=receiver.url("/r"), auth=auth)
    credentials = ReceiverCredentials(http)
    await http.start()
    try:
        for _ in range(3):
            result = await credentials.post(s, s.url, b"{}", {}, 5.0)
            assert (result.status, result.error) == (200, None)
        assert len(tokens.issued) == 1  # cached
        tokens.revoke()
        result = await credentials.post(s, s.url, b"{}", {}, 5.0)
        assert result.status == 200 and len(tokens.issued) == 2
        assert [g.headers.get("Authorization") is not None for g in receiver.at("/r")] == [True] * 5
        tokens.outage = True
        tokens.revoke()
        result = await credentials.post(s, s.url, b"{}", {}, 5.0)
        assert (result.status, result.error, result.body) == (None, AUTH_FAILED, b"")
    finally:
        await http.close()
    if proxied:
        await eventually(lambda: f"127.0.0.1:{tokens.port}/token" in proxy.log_text(), timeout=10)


def test_auth_is_given_again_when_the_url_moves_to_another_host() -> None:
    current = sub(auth={"type": "basic", "username": "u", "password": "pw"}).to_dict(True)
    refuse_auth_left_behind(False, current, {"url": "https://hooks.example.com/other"})
    refuse_auth_left_behind(True, current, {"url": "https://other.example.com/", "auth": None})
    with pytest.raises(InvalidSubscription) as refused:
        refuse_auth_left_behind(True, current, {"url": "https://other.example.com/"})
    assert refused.value.field == "auth" and "pw" not in str(refused.value)
    refuse_auth_left_behind(True, sub().to_dict(True), {"url": "https://other.example.com/"})


async def test_the_token_url_passes_the_ssrf_guard_of_deliveries() -> None:
    """A token URL on a loopback address is refused at send time like a delivery URL
    (the stored form is validated without the address policy): no token, auth_failed."""
    tokens = await TokenServer("c", "s3").start()
    http = HttpClient(Settings.from_env({}), require_https=False)  # the production policy
    auth = {**OAUTH2, "token_url": tokens.url, "client_id": "c", "client_secret": "s3"}
    s = sub(url="https://hooks.example.com/x", auth=auth)
    await http.start()
    try:
        result = await ReceiverCredentials(http).post(s, s.url, b"{}", {}, 2.0)
    finally:
        await http.close()
        await tokens.stop()
    assert (result.status, result.error) == (None, AUTH_FAILED)
    assert tokens.requests == []  # never reached
