"""A real worker delivering through a real forward proxy (``proxy.py``) with credentials.

Each test has a broker of its own (its records are searched for the proxy's password).
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

from tests.http.test_client import _certificates
from tests.support import (
    PROXY_PASSWORD,
    PROXY_USER,
    ForwardProxy,
    Kafka,
    Receiver,
    Worker,
    event,
    eventually,
    free_port,
    json_of,
    uid,
)
from webhook_stream import verify
from webhook_stream.broker import EmbeddedBroker

TOPICS = ("webhooks.deliveries", "webhooks.attempts", "webhooks.deadletter", "webhooks.retry.1s")
#: Long enough a window of retries (about 15 s) to outlast a proxy restart.
ENV = {"WEBHOOK_STREAM_RETRY_SCHEDULE": "1s,2s,2s,2s,2s,2s,2s,2s"}


async def assert_no_proxy_credentials(worker: Worker, kafka: Kafka) -> None:
    needles = [
        PROXY_PASSWORD.encode(),
        base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()),  # Proxy-Authorization
    ]
    log = worker.log_text().encode()
    assert all(needle not in log for needle in needles)
    for topic in TOPICS:
        for rec in await kafka.read_all(topic):
            raw = (rec.key or b"") + (rec.value or b"") + b"".join(v for _, v in rec.headers or ())
            assert all(needle not in raw for needle in needles), topic


async def test_deliveries_go_through_the_proxy_and_survive_it_going_down(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    proxy = await ForwardProxy(tmp_path).start()
    w = Worker(
        own_broker.url, tmp_path / "w", env={**ENV, "WEBHOOK_STREAM_EGRESS_PROXY": proxy.url()}
    ).start()
    try:
        await w.wait_ready()
        sub = await w.create_subscription(id="ep", url=receiver.url("/via"), event_types=["px.a"])
        first = [uid("e") for _ in range(5)]
        for event_id in first:
            await own_kafka.send("events.px", event("px.a", id=event_id))
        got = await receiver.wait_count("/via", 5)
        for request in got:
            verify(sub["secret"], request.headers, request.body)
            assert "Proxy-Authorization" not in request.headers
        await eventually(
            lambda: proxy.log_text().count(f"POST 127.0.0.1:{receiver.port}/via - 200 OK") >= 5
        )

        # The proxy goes away: attempts fail as the proxy's failure and are retried.
        await proxy.stop()
        second = [uid("e") for _ in range(5)]
        for event_id in second:
            await own_kafka.send("events.px", event("px.a", id=event_id))
        failed = await own_kafka.wait_records(
            "webhooks.attempts",
            lambda r: json_of(r)["event_id"] in second and json_of(r)["outcome"] == "retrying",
            count=5,
        )
        assert {json_of(r)["error"] for r in failed} == {"proxy_connect"}
        assert {json_of(r)["status_code"] for r in failed} == {None}

        # Back on the same port: every delivery arrives, none lost, none dead-lettered.
        await proxy.start()
        await eventually(
            lambda: {r.json["id"] for r in receiver.at("/via")} >= set(first + second),
            timeout=45,
        )
        assert await own_kafka.read_all("webhooks.deadletter") == []
        await assert_no_proxy_credentials(w, own_kafka)
    finally:
        w.stop()
        await proxy.stop()


async def test_https_through_a_connect_tunnel_to_a_tls_receiver(
    own_broker: EmbeddedBroker, own_kafka: Kafka, tmp_path: Path
) -> None:
    ca, cert, key = _certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    receiver = await Receiver(tls=server_tls).start()
    proxy = await ForwardProxy(tmp_path).start()
    env = {
        **ENV,
        "WEBHOOK_STREAM_EGRESS_PROXY": proxy.url(),
        "SSL_CERT_FILE": str(ca),  # the worker's default trust store: the test CA only
    }
    w = Worker(own_broker.url, tmp_path / "w", env=env).start()
    try:
        await w.wait_ready()
        url = f"https://localhost:{receiver.port}/tls"  # the name the certificate has
        sub = await w.create_subscription(id="tls", url=url, event_types=["px.tls"])
        await own_kafka.send("events.px", event("px.tls", id=uid("e")))
        (got,) = await receiver.wait_count("/tls", 1)
        verify(sub["secret"], got.headers, got.body)
        await eventually(lambda: f"CONNECT localhost:{receiver.port}" in proxy.log_text())
        (attempt,) = await own_kafka.wait_records(
            "webhooks.attempts", lambda r: json_of(r)["endpoint_id"] == "tls"
        )
        assert (json_of(attempt)["status_code"], json_of(attempt)["error"]) == (200, None)
        await assert_no_proxy_credentials(w, own_kafka)
    finally:
        w.stop()
        await proxy.stop()
        await receiver.stop()


async def test_a_proxy_that_is_down_never_disables_an_endpoint(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """Dead letters the proxy caused say nothing about the receiver: not counted to disable."""
    env = {
        "WEBHOOK_STREAM_EGRESS_PROXY": f"http://127.0.0.1:{free_port()}",  # nothing listens
        "WEBHOOK_STREAM_HEALTH_DISABLE_AFTER_DEAD_LETTERS": "2",
    }
    w = Worker(own_broker.url, tmp_path / "w", env=env).start()
    try:
        await w.wait_ready()
        await w.create_subscription(
            id="down", url=receiver.url("/down"), event_types=["px.down"], max_attempts=1
        )
        for _ in range(4):
            await own_kafka.send("events.px", event("px.down", id=uid("e")), key="k")
        dls = await own_kafka.wait_records(
            "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == "down", count=4
        )
        assert {json_of(r)["reason"] for r in dls} == {"exhausted"}
        attempts = await own_kafka.read_all("webhooks.attempts")
        assert {json_of(r)["error"] for r in attempts} == {"proxy_connect"}
        assert await own_kafka.read_all("webhooks.endpoint_status") == []
        async with w.api() as client:
            assert (await client.get("/subscriptions/down")).json()["disabled"] is False
    finally:
        w.stop()
