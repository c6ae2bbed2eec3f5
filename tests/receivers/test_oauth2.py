"""OAuth2 client credentials and HTTP Basic toward the receiver, on the session worker.

The token endpoint is :class:`tests.oauth2_server.TokenServer` (Authlib), issuing tokens
that expire; the receiver accepts only an issued, unexpired token (else 401).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from tests.oauth2_server import TokenServer
from tests.support import Kafka, Received, Receiver, Worker, event, eventually, uid
from webhook_stream import verify

LIFETIME_S = 3


async def attempts(w: Worker, endpoint_id: str) -> list[dict[str, Any]]:
    async with w.api() as c:
        r = await c.get(f"/subscriptions/{endpoint_id}/attempts", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _count(w: Worker, endpoint_id: str, n: int) -> bool:
    return len(await attempts(w, endpoint_id)) >= n


def no_secret_anywhere(w: Worker, secrets: list[str], *responses: httpx.Response) -> None:
    log = w.log_text()
    for secret in secrets:
        assert secret not in log
        for response in responses:
            assert secret not in response.text


async def test_oauth2_tokens_cached_refreshed_on_expiry_and_401_and_outage_retried(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    client_secret = "oauth2-client-secret-" + uid("s")
    tokens = await TokenServer("wh-client", client_secret, expires_in=LIFETIME_S).start()
    path = "/" + uid("oauth")

    def protected(got: Received) -> int:
        return 200 if tokens.valid(got.headers.get("Authorization")) else 401

    receiver.script[path] = protected
    etype = uid("oa") + ".x"
    try:
        sub = await worker.create_subscription(
            url=receiver.url(path),
            event_types=[etype],
            auth={
                "type": "oauth2_client_credentials",
                "token_url": tokens.url,
                "client_id": "wh-client",
                "client_secret": client_secret,
                "scope": "webhooks:write",
                "audience": "https://receiver.example.com",
            },
        )
        assert sub["auth"]["client_secret"] == "****"
        ep = sub["id"]

        # Two deliveries, one token (cached).
        for _ in range(2):
            await kafka.send("events.oa", event(etype, id=uid("e")))
        got = await receiver.wait_count(path, 2)
        assert all(protected(g) == 200 for g in got[:1])
        assert len(tokens.issued) == 1
        assert tokens.requests[0]["scope"] == "webhooks:write"
        assert tokens.requests[0]["audience"] == "https://receiver.example.com"
        assert "client_id" not in tokens.requests[0]  # client_auth basic: in the header
        verify(sub["secret"], got[0].headers, got[0].body)

        # Expired: fetched again before use (no 401 on the way).
        first = tokens.issued[0]["access_token"]
        issued_at = time.time()
        await eventually(lambda: time.time() > issued_at + LIFETIME_S, timeout=LIFETIME_S + 3)
        await kafka.send("events.oa", event(etype, id=uid("e")))
        got = await receiver.wait_count(path, 3)
        assert len(tokens.issued) == 2
        assert got[2].headers["Authorization"] != f"Bearer {first}"
        await eventually(lambda: _count(worker, ep, 3))
        assert all(a["status_code"] == 200 for a in await attempts(worker, ep))

        # Revoked early: the 401 fetches a token once more and the attempt goes again.
        tokens.revoke()
        await kafka.send("events.oa", event(etype, id=uid("e")))
        got = await receiver.wait_count(path, 5)
        assert [protected(g) for g in got[3:5]] == [401, 200]
        assert got[3].headers["webhook-id"] == got[4].headers["webhook-id"]
        assert len(tokens.issued) == 3
        await eventually(lambda: _count(worker, ep, 4))
        assert all(a["status_code"] == 200 for a in await attempts(worker, ep))

        # The token endpoint down: auth_failed, retried like any failure, then delivered.
        tokens.outage = True
        tokens.revoke()
        await kafka.send("events.oa", event(etype, id=(last := uid("e"))))

        async def failed_once() -> bool:
            return any(a["error"] == "auth_failed" for a in await attempts(worker, ep))

        await eventually(failed_once, timeout=20)
        failed = [a for a in await attempts(worker, ep) if a["error"] == "auth_failed"]
        assert failed[0]["outcome"] == "retrying" and failed[0]["status_code"] is None
        assert failed[0]["response_body"] == ""
        tokens.outage = False
        await eventually(lambda: any(g.json["id"] == last for g in receiver.at(path)), timeout=20)

        # A PATCH that sends the masked secret back keeps it.
        async with worker.api() as c:
            read = await c.get(f"/subscriptions/{ep}")
            assert read.json()["auth"]["client_secret"] == "****"
            patched = await c.patch(
                f"/subscriptions/{ep}",
                json={"auth": {**read.json()["auth"], "client_auth": "body"}},
            )
            assert patched.status_code == 200, patched.text
        before = len(tokens.requests)
        await kafka.send("events.oa", event(etype, id=(after_patch := uid("e"))))
        await eventually(
            lambda: any(g.json["id"] == after_patch for g in receiver.at(path)), timeout=20
        )
        assert tokens.requests[before]["client_id"] == "wh-client"  # client_auth body now
        tokens_seen = [t["access_token"] for t in tokens.issued]
        no_secret_anywhere(worker, [client_secret, *tokens_seen], read, patched)
        for a in await attempts(worker, ep):
            assert all(t not in str(a) for t in tokens_seen)
    finally:
        await tokens.stop()


async def test_a_token_url_on_a_forbidden_address_is_refused(worker: Worker) -> None:
    body = {
        "url": "https://hooks.example.com/x",
        "event_types": ["a"],
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": "ftp://tokens.example.com/t",
            "client_id": "c",
            "client_secret": "s-should-not-echo",
        },
    }
    async with worker.api() as c:
        r = await c.post("/subscriptions", json=body)
    assert r.status_code == 400 and r.json()["error"]["field"] == "auth.token_url"
    assert "s-should-not-echo" not in r.text


async def test_basic_auth(worker: Worker, kafka: Kafka, receiver: Receiver) -> None:
    path, etype = "/" + uid("basic"), uid("ba") + ".x"
    password = "basic-pass-" + uid("p")
    expected = "Basic " + base64.b64encode(f"hooks:{password}".encode()).decode()
    receiver.script[path] = lambda got: 200 if got.headers.get("Authorization") == expected else 401
    sub = await worker.create_subscription(
        url=receiver.url(path),
        event_types=[etype],
        auth={"type": "basic", "username": "hooks", "password": password},
    )
    assert sub["auth"] == {"type": "basic", "username": "hooks", "password": "****"}
    await kafka.send("events.ba", event(etype, id=uid("e")))
    (got,) = await receiver.wait_count(path, 1)
    assert got.headers["Authorization"] == expected
    async with worker.api() as c:
        # A masked password is refused on create: the real value was not sent.
        r = await c.post(
            "/subscriptions",
            json={**{k: sub[k] for k in ("url", "event_types", "auth")}},
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "auth.password"
    no_secret_anywhere(worker, [password, expected.split()[1]], r)
