"""Mutual TLS toward a receiver that requires a client certificate, on the session worker.

The receiver trusts one client CA and refuses any connection without a certificate of it;
the endpoint's ``ca_cert`` is the only CA trusted for its own server certificate.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import httpx

from tests.oauth2_server import TokenServer
from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from tests.tls import make_client_pki, make_pki, server_context


async def attempts(w: Worker, endpoint_id: str) -> list[dict[str, Any]]:
    async with w.api() as c:
        r = await c.get(f"/subscriptions/{endpoint_id}/attempts", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_a_receiver_requiring_a_client_certificate(
    worker: Worker, kafka: Kafka, tmp_path: Path
) -> None:
    server = make_pki(tmp_path, "mtls-server")
    client = make_client_pki("wh-client")
    stranger = make_client_pki("stranger")
    receiver = await Receiver(tls=server_context(server, [client.ca])).start()
    server_ca = server.ca.read_text()
    tokens = await TokenServer("mtls-client", "mtls-token-secret", expires_in=600).start()
    etype = uid("mt") + ".x"
    try:
        # Without a certificate the receiver refuses; with the endpoint's it accepts.
        async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=server_ca)) as c:
            try:
                await c.post(receiver.url("/probe"), content=b"{}")
                refused = False
            except httpx.HTTPError:
                refused = True
        assert refused and receiver.at("/probe") == []

        ok = await worker.create_subscription(
            url=receiver.url("/ok"), event_types=[etype], tls=client.endpoint_tls(server_ca)
        )
        assert ok["tls"]["client_key"] == "****" and ok["tls"]["client_cert"] == client.cert
        # Combined with auth: a bearer token from the token endpoint, over the same identity.
        both = await worker.create_subscription(
            url=receiver.url("/both"),
            event_types=[etype],
            tls=client.endpoint_tls(server_ca),
            auth={
                "type": "oauth2_client_credentials",
                "token_url": tokens.url,
                "client_id": "mtls-client",
                "client_secret": "mtls-token-secret",
                "client_auth": "body",
            },
        )
        other = await worker.create_subscription(
            url=receiver.url("/stranger"),
            event_types=[etype],
            tls=stranger.endpoint_tls(server_ca),
            max_attempts=1,
        )
        # ca_cert is that endpoint's only: without it the test CA is not trusted.
        untrusted = await worker.create_subscription(
            url=receiver.url("/untrusted"),
            event_types=[etype],
            tls=client.endpoint_tls(),
            max_attempts=1,
        )
        await kafka.send("events.mt", event(etype, id=uid("e")))
        await receiver.wait_count("/ok", 1)
        (with_token,) = await receiver.wait_count("/both", 1)
        assert tokens.valid(with_token.headers["Authorization"])
        peer = with_token.request.transport.get_extra_info("peercert")  # type: ignore[union-attr]
        assert dict(x[0] for x in peer["subject"])["commonName"] == "wh-client"

        async def failed(endpoint_id: str) -> list[dict[str, Any]]:
            return [a for a in await attempts(worker, endpoint_id) if a["outcome"] == "failed"]

        (refused_attempt,) = await eventually(lambda: failed(other["id"]))
        # TLS 1.3: the server checks the client's certificate after the handshake.
        assert refused_attempt["error"] in ("tls", "connection_reset")
        (untrusted_attempt,) = await eventually(lambda: failed(untrusted["id"]))
        assert untrusted_attempt["error"] == "tls"
        assert receiver.at("/stranger") == [] and receiver.at("/untrusted") == []

        # The private key never shows: not in reads, the log or the attempt log.
        key_body = "".join(client.key.splitlines()[1:-1])
        async with worker.api() as c:
            read = await c.get(f"/subscriptions/{both['id']}")
        for text in (read.text, worker.log_text(), str(await attempts(worker, both["id"]))):
            assert key_body not in text and "mtls-token-secret" not in text
        assert base64.b64decode(key_body)  # the needle is real PEM content
    finally:
        await receiver.stop()
        await tokens.stop()


async def test_a_key_that_is_not_the_certificates_is_a_400(worker: Worker) -> None:
    one, two = make_client_pki("one"), make_client_pki("two")
    async with worker.api() as c:
        r = await c.post(
            "/subscriptions",
            json={
                "url": "https://hooks.example.com/x",
                "event_types": ["a"],
                "tls": {"client_cert": one.cert, "client_key": two.key},
            },
        )
    assert r.status_code == 400 and r.json()["error"]["field"] == "tls.client_key"
    assert "".join(two.key.splitlines()[1:-1]) not in r.text
