"""Smaller isolation rules of the API, on the shared worker.

- A PATCH that moves an endpoint to another host must give its header values again (or
  ``{}``): masked values are never carried to a new host.
- Validation refuses what delivery would refuse: header values outside Latin-1 (U+2028);
  ``HTTPS://`` is stored as ``https://``.
- Tenant ids that differ only by invisible characters (or by Unicode normalisation) are
  refused wherever the API takes one.
- 401s carry ``WWW-Authenticate: Bearer``; ``/docs`` has the console's security headers.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.support import SECRETS_USED, Receiver, Worker, uid
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.subscriptions.validation import parse_subscription

RECEIVER_SECRET = "Bearer receiver-credential-0123456789"


async def test_a_patch_to_another_host_must_give_the_header_values_again(
    worker: Worker, receiver: Receiver
) -> None:
    ep = uid("ep_move")
    # Another host: a receiver on another loopback address.
    elsewhere = await Receiver(host="127.0.0.2").start()
    try:
        async with worker.api() as client:
            r = await client.post(
                "/subscriptions",
                json={
                    "id": ep,
                    "url": receiver.url("/old"),
                    "event_types": ["mv.x"],
                    "headers": {"Authorization": RECEIVER_SECRET, "X-Team": "a"},
                },
            )
            assert r.status_code == 201, r.text
            SECRETS_USED.append(r.json()["secret"])
            masked = r.json()["headers"]
            assert RECEIVER_SECRET not in r.text
            new_url = elsewhere.url("/new")

            # Another host, headers not given: refused, naming them.
            r = await client.patch(f"/subscriptions/{ep}", json={"url": new_url})
            assert r.status_code == 400 and r.json()["error"]["field"] == "headers", r.text
            # Another host, headers sent back masked (as a GET shows them): refused.
            moved = {"url": new_url, "headers": masked}
            r = await client.patch(f"/subscriptions/{ep}", json=moved)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["field"] == "headers.Authorization", r.text
            # Same host, another path: the values stay (a mask means "keep").
            same = {"url": receiver.url("/old2"), "headers": masked}
            r = await client.patch(f"/subscriptions/{ep}", json=same)
            assert r.status_code == 200 and r.json()["headers"] == masked, r.text
            # Another host with {}: accepted, and nothing of the old values goes there.
            r = await client.patch(f"/subscriptions/{ep}", json={"url": new_url, "headers": {}})
            assert r.status_code == 200 and r.json()["headers"] == {}, r.text
            r = await client.post(f"/subscriptions/{ep}/test")
            assert r.status_code == 202, r.text
        [request] = await elsewhere.wait_count("/new", 1)
        assert "Authorization" not in request.headers and "X-Team" not in request.headers
        assert receiver.at("/old") == [] and receiver.at("/old2") == []
    finally:
        await elsewhere.stop()


@pytest.mark.parametrize("value", ["a\u2028b", "caf\u00e9 \u20ac", "\U0001f600"])
def test_header_values_delivery_cannot_send_are_refused(value: str) -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription(
            {
                "id": "ep",
                "url": "https://example.com/h",
                "event_types": ["a"],
                "headers": {"X-A": value},
            },
            allow_insecure=False,
        )
    assert refused.value.field == "headers.X-A"
    assert value not in refused.value.message
    ok = parse_subscription(
        {
            "id": "ep",
            "url": "https://example.com/h",
            "event_types": ["a"],
            "headers": {"X-A": "caf\u00e9"},
        },
        allow_insecure=False,
    )
    assert ok.headers == (("X-A", "caf\u00e9"),)


def test_an_https_url_in_capitals_is_stored_as_https() -> None:
    sub = parse_subscription(
        {"id": "ep", "url": "HTTPS://Example.com/Hook", "event_types": ["a"]}, allow_insecure=False
    )
    assert sub.url == "https://Example.com/Hook"
    with pytest.raises(InvalidSubscription):
        parse_subscription(
            {"url": "HTTP://example.com/", "event_types": ["a"]}, allow_insecure=False
        )


INVISIBLE = [
    "acme\u200b",  # zero-width space
    "ac\u200dme",  # zero-width joiner
    "\u2066acme",  # bidi isolate
    "acme\u00a0",  # no-break space
    "acme\ufeff",  # byte-order mark
    "cafe\u0301",  # e + combining accent: not NFC ("café" is)
    " acme",
]


@pytest.mark.parametrize("tenant", INVISIBLE)
def test_tenant_ids_with_invisible_characters_are_refused(tenant: str) -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription(
            {"id": "ep", "url": "https://example.com/h", "event_types": ["a"], "tenant_id": tenant},
            allow_insecure=False,
        )
    assert refused.value.field == "tenant_id"


async def test_the_api_refuses_look_alike_tenant_ids_everywhere(
    worker: Worker, receiver: Receiver
) -> None:
    async with worker.api() as client:
        for tenant in ("acme\u200b", "cafe\u0301"):
            r = await client.post(
                "/subscriptions",
                json={"url": receiver.url(), "event_types": ["a"], "tenant_id": tenant},
            )
            assert r.status_code == 400 and r.json()["error"]["field"] == "tenant_id", r.text
            path = f"/tenants/{quote(tenant, safe='')}/tokens"
            r = await client.post(path, json={})
            assert r.status_code == 400 and r.json()["error"]["field"] == "tenant_id", r.text
            r = await client.get(path)
            assert r.status_code == 400, r.text
        r = await client.post("/tenants/caf%C3%A9/tokens", json={})  # NFC "café" is fine
        assert r.status_code == 201, r.text


async def test_401s_carry_a_bearer_challenge_and_docs_has_security_headers(
    worker: Worker,
) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = await client.get("/subscriptions", headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="webhook-stream"'
        docs = await client.get("/docs")
        assert docs.status_code == 200
        csp = docs.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert docs.headers["X-Frame-Options"] == "DENY"
        assert docs.headers["X-Content-Type-Options"] == "nosniff"
        asset = await client.get("/docs/docs.js")
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
